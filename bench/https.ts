/**
 * `npm run bench -- --https`: what HTTPS and pull credentials cost a warm pull. One set of warm
 * caches behind three fronts at once, as the program declares them: plain HTTP, HTTPS with the
 * stack's kind of CA and certificate (made by the TLS provider stand-in), and HTTPS with pull
 * credentials (bcrypt, checked by nginx on every request). N fresh nodes pull the whole set
 * through each, in an order that rotates every run. See BENCHMARKS.md.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Front } from "../core/front";
import { Cache } from "../core/plan";
import { htpasswdFile } from "../core/pull-auth";
import { ClientAccess, containerdHosts } from "../core/render";
import { withClosedFallback, writeHostsDir } from "../harness/containerd";
import { DockerProviderStandIn } from "../harness/docker-provider-stand-in";
import { fixtureRegistryImage, freePort, prepareTestHost } from "../harness/docker";
import { stackCertificates } from "../harness/tls-provider-stand-in";
import { FixtureUpstreams, byTag } from "../harness/upstreams";
import { readFrontAccess } from "../tools/front";
import { withCacheViews } from "../tools/cache-view";
import { hostPlatform } from "../core/images";
import { prewarmUntilStored, routeImages } from "../tools/warm";
import { benchImages, pullSteps } from "./image-set";
import {
    benchId,
    bootNodes,
    cleanUp,
    machineDescription,
    median,
    planBenchCaches,
    startCaches,
    toolsDocker,
} from "./stack";

const registries = ["docker.io", "registry.k8s.io", "ghcr.io"];
const user = { username: "nodes", password: "bench-pull-password" };

/** One way into the same warm caches. */
interface Way {
    name: "http" | "https" | "httpsCredentials";
    what: string;
    hostsDir: string;
    user?: string;
}

export async function benchHttps(options: {
    scale: number;
    repeat: number;
    nodes: number;
    out: string;
}) {
    prepareTestHost();
    const images = benchImages(options.scale);
    const refs = images.map(byTag);
    cleanUp();
    const upstreams = await FixtureUpstreams.start(benchId, registries);
    const workDir = await mkdtemp(path.join(tmpdir(), "pt-bench-https-"));
    try {
        await upstreams.seed(images);
        const ways = await warmCachesBehindThreeFronts(upstreams, workDir, refs);
        const seconds: Record<string, number[]> = Object.fromEntries(
            ways.map((way) => [way.name, []]),
        );
        for (let run = 0; run < options.repeat; run++) {
            const order = ways.map((_, index) => ways[(index + run) % ways.length]);
            for (const way of order) {
                const took = await bootNodes(
                    options.nodes,
                    pullSteps(images, "serial"),
                    way.hostsDir,
                    { user: way.user },
                );
                seconds[way.name].push(took);
                console.log(`run ${run + 1}: ${way.name.padEnd(16)} ${took.toFixed(2)} s`);
            }
        }
        writeResults(options, ways, seconds, refs);
    } finally {
        cleanUp();
        await upstreams.remove();
        await rm(workDir, { recursive: true, force: true });
    }
}

/**
 * The caches over plain HTTP, warmed by prewarm's own code, then two more fronts over the same
 * registries: HTTPS, and HTTPS with pull credentials. Each with its nodes' hosts.toml.
 */
async function warmCachesBehindThreeFronts(
    upstreams: FixtureUpstreams,
    workDir: string,
    refs: string[],
): Promise<Way[]> {
    const ports = async () =>
        Object.fromEntries(
            await Promise.all(registries.map(async (registry) => [registry, await freePort()])),
        );
    const remotes = Object.fromEntries(
        registries.map((registry) => [registry, upstreams.get(registry).remote]),
    );
    const plain = planBenchCaches(remotes, await ports(), fixtureRegistryImage);
    await startCaches(plain.caches, plain.front, upstreams.network);
    const front = await readFrontAccess(toolsDocker, plain.endpoints);
    const warmed = await withCacheViews(toolsDocker, plain.endpoints, front, (views) =>
        prewarmUntilStored(
            routeImages(refs, plain.endpoints),
            { platforms: [hostPlatform()], concurrency: 4, front },
            views,
        ),
    );
    if (!warmed.every((result) => result.ok)) throw new Error("prewarm failed");

    const tls = await stackCertificates(["127.0.0.1"]);
    const docker = new DockerProviderStandIn(upstreams.network);
    const overHttps = async (name: string, pullAuth: boolean) => {
        const caches = httpsCaches(plain.caches, await ports());
        const httpsFront: Front = {
            ...plain.front,
            name: `${benchId}-${name}`,
            ledgerVolume: `${benchId}-${name}-ledger`,
            anyRegistryPort: await freePort(),
            tls: true,
            pullAuth,
        };
        const users = pullAuth
            ? htpasswdFile([user], { project: "pullthrough", stack: "bench" })
            : undefined;
        await docker.createFront(httpsFront, caches, { ...tls, users });
        const access: ClientAccess = { ca: tls.ca, credential: pullAuth ? user : undefined };
        const hosts = withClosedFallback(containerdHosts(caches, access));
        return writeHostsDir(path.join(workDir, name), hosts, tls.ca);
    };
    return [
        {
            name: "http",
            what: "warm, plain HTTP",
            hostsDir: writeHostsDir(
                path.join(workDir, "http"),
                withClosedFallback(containerdHosts(plain.caches)),
            ),
        },
        {
            name: "https",
            what: "warm, HTTPS (the stack's CA)",
            hostsDir: await overHttps("https", false),
        },
        {
            name: "httpsCredentials",
            what: "warm, HTTPS and pull credentials",
            hostsDir: await overHttps("https-credentials", true),
            user: `${user.username}:${user.password}`,
        },
    ];
}

/** The same caches on other ports of another front, over HTTPS. */
const httpsCaches = (caches: readonly Cache[], ports: Record<string, number>): Cache[] =>
    caches.map((cache) => ({
        ...cache,
        port: ports[cache.registry],
        endpoint: `https://127.0.0.1:${ports[cache.registry]}`,
        hostEndpoint: `https://127.0.0.1:${ports[cache.registry]}`,
    }));

function writeResults(
    options: { scale: number; repeat: number; nodes: number; out: string },
    ways: readonly Way[],
    seconds: Record<string, number[]>,
    refs: string[],
) {
    const medianOf = (name: string) => median(seconds[name]);
    const ratios = {
        httpsOverHttp: medianOf("https") / medianOf("http"),
        httpsCredentialsOverHttp: medianOf("httpsCredentials") / medianOf("http"),
    };
    const markdown = [
        "| way in | wall s (median) | spread s |",
        "|---|---:|---:|",
        ...ways.map(
            (way) =>
                `| ${way.what} | ${medianOf(way.name).toFixed(2)} | ${Math.min(...seconds[way.name]).toFixed(2)}–${Math.max(...seconds[way.name]).toFixed(2)} |`,
        ),
        "",
        "| ratio | value | target |",
        "|---|---:|---|",
        `| HTTPS / HTTP | ${ratios.httpsOverHttp.toFixed(2)}× | ≤ 1.15× |`,
        `| HTTPS and credentials / HTTP | ${ratios.httpsCredentialsOverHttp.toFixed(2)}× | |`,
    ].join("\n");
    const machine = `${machineDescription()}, caches ${fixtureRegistryImage}`;
    const command = `npm run bench -- --https --scale ${options.scale} --nodes ${options.nodes} --repeat ${options.repeat}`;
    const results = { date: new Date().toISOString(), machine, command, images: refs };
    writeFileSync(
        options.out,
        `${JSON.stringify({ ...results, seconds, ratios, markdown }, null, 2)}\n`,
    );
    console.log(`\n${markdown}\n\nMachine: ${machine}\nCommand: ${command}\nJSON: ${options.out}`);
}
