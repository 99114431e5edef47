/**
 * `npm run bench`: how fast a cluster's images arrive through Pullthrough, against pulling
 * direct and against the local-copy floor, over a simulated WAN; with `--bundle`, what carrying
 * the caches costs (bench/bundle.ts). See BENCHMARKS.md.
 *
 * Everything is local: fixture upstream registries seeded with a generated Talos-shaped image set
 * (bench/image-set.ts), a user-space WAN link in front of them (tests/support/wan.ts), caches
 * run from the program's own container definition, and N private containerd daemons ("nodes")
 * that pull the set one image after another, as kubelet does, through `hosts.toml`.
 */
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { hostPlatform } from "../core/images";
import { containerdHosts } from "../core/render";
import {
    Containerd,
    closedLoopbackServer,
    withClosedFallback,
    writeHostsDir,
} from "../harness/containerd";
import {
    blobBytesServed as logBytes,
    fixtureFrontImage,
    fixtureRegistry2Image,
    fixtureRegistryImage,
    docker,
    freePort,
    prepareTestHost,
} from "../harness/engine";
import { allBlobs } from "../harness/oci";
import { FixtureUpstreams, byTag } from "../harness/upstreams";
import { SimulatedWan } from "../harness/wan";
import { withCacheViews } from "../tools/cache-view";
import { dockerCli } from "../tools/docker";
import { prewarmUntilStored, routeImages } from "../tools/warm";
import { benchBundles } from "./bundle";
import { benchImages } from "./image-set";
import { benchId, cleanUp, containerAddress, median, planBenchCaches, startCaches } from "./stack";

/** The tools' docker CLI, on this machine's engine. */
const toolsDocker = dockerCli();

const { values: flags } = parseArgs({
    options: {
        scale: { type: "string", default: "1" },
        mbit: { type: "string", default: "100" },
        rtt: { type: "string", default: "40" },
        nodes: { type: "string", default: "3" },
        repeat: { type: "string", default: "3" },
        engine: { type: "string", default: "3" },
        bundle: { type: "boolean", default: false },
        out: { type: "string" },
    },
});
const scale = Number(flags.scale);
const mbit = Number(flags.mbit);
const rttMs = Number(flags.rtt);
const nodes = Number(flags.nodes);
const repeat = Number(flags.repeat);
/** The caches' registry: distribution 3.0.0 (registry:3) or Debian's 2.8 (registry:2). */
const cacheImages: Record<string, string> = {
    "3": fixtureRegistryImage,
    "2.8": fixtureRegistry2Image,
};
const cacheImage = cacheImages[flags.engine!];
if (!cacheImage)
    throw new Error(
        `--engine: ${flags.engine} is not one of ${Object.keys(cacheImages).join(", ")}`,
    );
const out =
    flags.out ??
    (flags.bundle ? "bench/results-bundle.json" : `bench/results-registry-${flags.engine}.json`);

const registries = ["docker.io", "registry.k8s.io", "ghcr.io"];

interface Sample {
    seconds: number;
    /** Blob bytes the upstreams served (their access logs). */
    upstreamBytes: number;
    /** Everything that crossed the WAN toward this side: blobs, manifests, pings. */
    wanBytes: number;
    /** Blob bytes the caches (or, direct, the upstreams) served to the nodes. */
    servedBytes: number;
    /** Time spent prewarming before the boot (prewarmed scenario only). */
    prewarmSeconds?: number;
}

async function main() {
    prepareTestHost();
    const images = benchImages(scale);
    const refs = images.map(byTag);
    const imageBytes = new Set(
        images.flatMap((fixture) =>
            allBlobs(fixture.artifact).map((blob) => `${blob.digest} ${blob.bytes.length}`),
        ),
    );
    const setBytes = [...imageBytes].reduce((sum, entry) => sum + Number(entry.split(" ")[1]), 0);
    console.log(
        `Image set: ${images.length} images, ${(setBytes / 1e6).toFixed(1)} MB of distinct blobs (scale ${scale}); WAN ${mbit} Mbit/s, ${rttMs} ms RTT; ${nodes} nodes; ${repeat} runs each.`,
    );

    cleanUp();
    const upstreams = await FixtureUpstreams.start(benchId, registries);
    const wan = new SimulatedWan({ bitsPerSecond: mbit * 1e6, roundTripMs: rttMs });
    const workDir = await mkdtemp(path.join(tmpdir(), "pt-bench-"));
    try {
        await upstreams.seed(images);
        const gateway = upstreams.gateway();
        const remotes: Record<string, string> = {};
        for (const registry of registries) {
            const upstream = new URL(upstreams.get(registry).hostUrl);
            remotes[registry] =
                `http://${gateway}:${await wan.route(gateway, upstream.hostname, Number(upstream.port))}`;
        }
        const ports = Object.fromEntries(
            await Promise.all(registries.map(async (registry) => [registry, await freePort()])),
        );
        const { caches, front, endpoints } = planBenchCaches(remotes, ports, cacheImage);

        const viaCaches = writeHostsDir(
            path.join(workDir, "via-caches"),
            withClosedFallback(containerdHosts(caches)),
        );
        // The upstream as a host, not as `server`: the fallback stays a closed loopback port.
        const hostsFor = (name: string, urls: Record<string, string>) =>
            writeHostsDir(
                path.join(workDir, name),
                Object.fromEntries(
                    registries.map((registry) => [
                        registry,
                        `server = "${closedLoopbackServer}"\n\n[host."${urls[registry]}"]\n  capabilities = ["pull", "resolve"]\n`,
                    ]),
                ),
            );
        const direct = hostsFor("direct", remotes);
        // The second floor: a plain registry holding the set, at its container address (no proxy,
        // no front, no docker-proxy, no WAN): the fixture upstreams themselves.
        const localRegistry = hostsFor(
            "local-registry",
            Object.fromEntries(
                registries.map((registry) => [
                    registry,
                    `http://${containerAddress(upstreams.get(registry).container, benchId)}:5000`,
                ]),
            ),
        );

        /**
         * N fresh nodes pull every image, one after another each, all nodes at once. `images pull`
         * unpacks each layer as a node does; `content fetch` only downloads (a diagnostic).
         */
        async function boot(
            hostsDir: string,
            how: "images pull" | "content fetch" = "images pull",
        ): Promise<number> {
            const daemons = await Promise.all(
                Array.from({ length: nodes }, () => Containerd.start()),
            );
            try {
                const started = performance.now();
                await Promise.all(
                    daemons.map(async (daemon) => {
                        for (const ref of refs)
                            await daemon.ctr(
                                "default",
                                ...how.split(" "),
                                "--hosts-dir",
                                hostsDir,
                                ref,
                            );
                    }),
                );
                return (performance.now() - started) / 1000;
            } finally {
                await Promise.all(daemons.map((daemon) => daemon.stop()));
            }
        }

        /** Who served the nodes: the front, the cache registries themselves, or the upstreams. */
        type Server = "front" | "registries" | "upstreams";
        async function measure(work: () => Promise<number>, server: Server): Promise<Sample> {
            const since = new Date();
            const wanBefore = wan.bytesDown;
            const seconds = await work();
            const upstreamBytes = registries.reduce(
                (sum, registry) => sum + logBytes(upstreams.get(registry).container, since),
                0,
            );
            const servedBytes = {
                front: () => logBytes(front.name, since),
                registries: () =>
                    caches.reduce((sum, cache) => sum + logBytes(cache.name, since), 0),
                upstreams: () => upstreamBytes,
            }[server]();
            return { seconds, upstreamBytes, wanBytes: wan.bytesDown - wanBefore, servedBytes };
        }

        const routed = routeImages(refs, endpoints);
        async function prewarm(): Promise<number> {
            const started = performance.now();
            const results = await withCacheViews(toolsDocker, endpoints, (views) =>
                prewarmUntilStored(routed, { platforms: [hostPlatform()], concurrency: 4 }, views),
            );
            const failed = results.filter((result) => !result.ok);
            if (failed.length > 0)
                throw new Error(
                    `prewarm failed: ${failed.map((result) => `${result.image}: ${result.error}`).join("; ")}`,
                );
            return (performance.now() - started) / 1000;
        }

        /** The floor: every node's copy of the set's blobs, read from a cache volume, no registry. */
        async function localCopy(): Promise<number> {
            const files = images.flatMap((fixture) => {
                const cache = caches.find((candidate) => candidate.registry === fixture.registry)!;
                const root = path.join(
                    docker("volume", "inspect", "--format", "{{.Mountpoint}}", cache.name),
                    "docker/registry/v2/blobs/sha256",
                );
                return allBlobs(fixture.artifact).map((blob) =>
                    path.join(root, blob.digest.slice(7, 9), blob.digest.slice(7), "data"),
                );
            });
            const targets = await Promise.all(
                Array.from({ length: nodes }, async (_, node) => {
                    const dir = path.join(workDir, `copy-${node}`);
                    await mkdir(dir, { recursive: true });
                    return dir;
                }),
            );
            const started = performance.now();
            await Promise.all(
                targets.map(async (dir) => {
                    for (const [index, file] of files.entries())
                        await copyFile(file, path.join(dir, String(index)));
                }),
            );
            const seconds = (performance.now() - started) / 1000;
            await Promise.all(targets.map((dir) => rm(dir, { recursive: true, force: true })));
            return seconds;
        }

        const samples: Record<string, Sample[]> = {
            direct: [],
            cold: [],
            warm: [],
            warmFetchOnly: [],
            warmNoFront: [],
            prewarmed: [],
            localRegistry: [],
            limit: [],
        };
        for (let run = 1; run <= repeat; run++) {
            console.log(`run ${run} of ${repeat}`);
            samples.direct.push(await measure(() => boot(direct), "upstreams"));
            console.log(`  direct      ${samples.direct.at(-1)!.seconds.toFixed(1)} s`);

            await startCaches(caches, front, upstreams.network);
            samples.cold.push(await measure(() => boot(viaCaches), "front"));
            console.log(`  cold        ${samples.cold.at(-1)!.seconds.toFixed(1)} s`);
            // Warm means the caches hold everything: a 2.x proxy may have dropped some of what it served.
            await prewarm();
            samples.warm.push(await measure(() => boot(viaCaches), "front"));
            console.log(`  warm        ${samples.warm.at(-1)!.seconds.toFixed(1)} s`);
            samples.warmFetchOnly.push(
                await measure(() => boot(viaCaches, "content fetch"), "front"),
            );
            console.log(
                `  warm, fetch ${samples.warmFetchOnly.at(-1)!.seconds.toFixed(1)} s (no unpack)`,
            );
            // What the front costs: the same warm caches, asked at their container addresses.
            const registriesDirect = hostsFor(
                "registries-direct",
                Object.fromEntries(
                    caches.map((cache) => [
                        cache.registry,
                        `http://${containerAddress(cache.name, benchId)}:5000`,
                    ]),
                ),
            );
            samples.warmNoFront.push(await measure(() => boot(registriesDirect), "registries"));
            console.log(`  warm, no front ${samples.warmNoFront.at(-1)!.seconds.toFixed(1)} s`);

            await startCaches(caches, front, upstreams.network);
            const prewarmSince = new Date();
            const prewarmSeconds = await prewarm();
            const prewarmUpstream = registries.reduce(
                (sum, registry) => sum + logBytes(upstreams.get(registry).container, prewarmSince),
                0,
            );
            const prewarmed = await measure(() => boot(viaCaches), "front");
            samples.prewarmed.push({ ...prewarmed, prewarmSeconds });
            console.log(
                `  prewarmed   ${prewarmed.seconds.toFixed(1)} s boot after ${prewarmSeconds.toFixed(1)} s prewarm (${(prewarmUpstream / 1e6).toFixed(1)} MB upstream)`,
            );

            samples.localRegistry.push(await measure(() => boot(localRegistry), "upstreams"));
            console.log(`  local reg.  ${samples.localRegistry.at(-1)!.seconds.toFixed(1)} s`);

            samples.limit.push({
                seconds: await localCopy(),
                upstreamBytes: 0,
                wanBytes: 0,
                servedBytes: 0,
            });
            console.log(`  limit       ${samples.limit.at(-1)!.seconds.toFixed(2)} s`);
        }

        const report = summarise(samples, setBytes);
        const machine = `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, caches ${cacheImage}, front ${fixtureFrontImage}`;
        const command = `npm run bench -- --engine ${flags.engine} --scale ${scale} --mbit ${mbit} --rtt ${rttMs} --nodes ${nodes} --repeat ${repeat}`;
        writeFileSync(
            out,
            JSON.stringify(
                {
                    date: new Date().toISOString(),
                    machine,
                    command,
                    setBytes,
                    images: refs,
                    samples,
                    ...report,
                },
                null,
                2,
            ) + "\n",
        );
        console.log(
            `\n${report.markdown}\n\nMachine: ${machine}\nCommand: ${command}\nJSON: ${out}`,
        );
    } finally {
        await wan.close();
        cleanUp();
        await upstreams.remove();
        await rm(workDir, { recursive: true, force: true });
    }
}

function summarise(samples: Record<string, Sample[]>, setBytes: number) {
    const stat = (scenario: string, field: keyof Sample) =>
        samples[scenario].map((sample) => sample[field] ?? 0);
    const seconds = (scenario: string) => median(stat(scenario, "seconds"));
    const spread = (scenario: string) =>
        `${Math.min(...stat(scenario, "seconds")).toFixed(2)}–${Math.max(...stat(scenario, "seconds")).toFixed(2)}`;
    const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
    const rows = [
        ["direct", "every node pulls from the upstream over the WAN"],
        ["cold", "through empty caches"],
        ["warm", "through caches that hold everything"],
        ["warmFetchOnly", "warm, but `ctr content fetch`: download without unpacking (diagnostic)"],
        [
            "warmNoFront",
            "warm, the registries asked at their container addresses: what the front costs (diagnostic)",
        ],
        ["prewarmed", "first boot after `prewarm` (prewarm time in the note column)"],
        [
            "localRegistry",
            "a plain local registry at its container address: no proxy, no front, no docker-proxy",
        ],
        ["limit", "the blobs copied from a cache volume, no registry"],
    ].map(([scenario, what]) => [
        scenario,
        what,
        seconds(scenario).toFixed(2),
        spread(scenario),
        mb(median(stat(scenario, "upstreamBytes"))),
        mb(median(stat(scenario, "wanBytes"))),
        mb(median(stat(scenario, "servedBytes"))),
        scenario === "prewarmed"
            ? `prewarm ${median(stat(scenario, "prewarmSeconds")).toFixed(1)} s`
            : "",
    ]);
    const ratios = {
        directOverWarm: seconds("direct") / seconds("warm"),
        directOverCold: seconds("direct") / seconds("cold"),
        coldOverWarm: seconds("cold") / seconds("warm"),
        warmOverLocalRegistry: seconds("warm") / seconds("localRegistry"),
        warmOverWarmNoFront: seconds("warm") / seconds("warmNoFront"),
        warmOverLimit: seconds("warm") / seconds("limit"),
        warmFetchOnlyOverLimit: seconds("warmFetchOnly") / seconds("limit"),
        coldUpstreamOverImageBytes: median(stat("cold", "upstreamBytes")) / setBytes,
    };
    const markdown = [
        "| scenario | what | wall s (median) | spread s | upstream blob MB | WAN MB | served to nodes MB | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
        ...rows.map((row) => `| ${row.join(" | ")} |`),
        "",
        "| ratio | value | target |",
        "|---|---:|---|",
        `| direct / warm | ${ratios.directOverWarm.toFixed(1)}× | ≥ 10× |`,
        `| direct / cold | ${ratios.directOverCold.toFixed(2)}× | ≥ 2× |`,
        `| cold / warm | ${ratios.coldOverWarm.toFixed(1)}× | |`,
        `| warm / local registry | ${ratios.warmOverLocalRegistry.toFixed(2)}× | ≤ 1.5× |`,
        `| warm / warm without the front | ${ratios.warmOverWarmNoFront.toFixed(2)}× | (diagnostic: ≈ 1, the front costs the warm path nothing) |`,
        `| warm / limit | ${ratios.warmOverLimit.toFixed(1)}× | ≤ 3× |`,
        `| warm fetch only / limit | ${ratios.warmFetchOnlyOverLimit.toFixed(1)}× | (diagnostic) |`,
        `| cold upstream bytes / image bytes | ${ratios.coldUpstreamOverImageBytes.toFixed(2)} | ≤ 1.05 |`,
        `| warm, prewarmed upstream blob bytes | ${mb(median(stat("warm", "upstreamBytes")))} MB, ${mb(median(stat("prewarmed", "upstreamBytes")))} MB | 0 |`,
    ].join("\n");
    return { ratios, markdown };
}

// --bundle: export, import and verify --deep against their floors (bench/bundle.ts).
(flags.bundle ? benchBundles({ scale, repeat, out }) : main()).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
});
