/**
 * `npm run bench`: how fast a cluster's images arrive through Pullthrough, against pulling
 * direct and against the local-copy floor, over a simulated WAN; with `--bundle`, what carrying
 * the caches costs (bench/bundle.ts); with `--https`, what HTTPS and pull credentials cost a warm
 * pull (bench/https.ts); with `--soak N`, what N pulls leave behind (bench/soak.ts).
 * See BENCHMARKS.md.
 *
 * Everything is local: fixture upstream registries seeded with a generated Talos-shaped image set
 * (bench/image-set.ts), a user-space WAN link in front of them (harness/wan.ts), caches run from
 * the program's own container definition, and N private containerd daemons ("nodes") that pull
 * the set through `hosts.toml` in the order a Talos node boots (bench/image-set.ts `BootStep`;
 * `--pull-order serial`: one image after another). Each scenario below is data: what it measures,
 * and how; one loop runs them all (or those `--scenarios` names), `--repeat` times.
 */
import { readFrontAccess } from "../tools/front";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { hostPlatform } from "../core/images";
import { Cache, CacheEndpoint } from "../core/plan";
import { Front } from "../core/front";
import { containerdHosts, hostsToml } from "../core/render";
import { closedLoopbackServer, withClosedFallback, writeHostsDir } from "../harness/containerd";
import {
    blobBytesServed as logBytes,
    countLogLines,
    fixtureFrontImage,
    fixtureRegistry2Image,
    fixtureRegistryImage,
    docker,
    freePort,
    prepareTestHost,
} from "../harness/docker";
import { allBlobs } from "../harness/oci";
import { FixtureImage, FixtureUpstreams, byTag } from "../harness/upstreams";
import { TokenAuth } from "../harness/token-auth";
import { SimulatedWan } from "../harness/wan";
import { withCacheViews } from "../tools/cache-view";
import { prewarmUntilStored, routeImages } from "../tools/warm";
import { benchBundles } from "./bundle";
import { benchHttps } from "./https";
import { benchSoak } from "./soak";
import { BenchImage, PullOrder, benchImages, pullSteps } from "./image-set";
import {
    benchId,
    blobFile,
    bootNodes,
    cleanUp,
    containerAddress,
    machineDescription,
    median,
    planBenchCaches,
    startCaches,
    toolsDocker,
} from "./stack";

const { values: flags } = parseArgs({
    options: {
        scale: { type: "string", default: "1" },
        mbit: { type: "string", default: "100" },
        rtt: { type: "string", default: "40" },
        nodes: { type: "string", default: "3" },
        repeat: { type: "string", default: "3" },
        "registry-version": { type: "string", default: "3" },
        bundle: { type: "boolean", default: false },
        https: { type: "boolean", default: false },
        soak: { type: "string" },
        scenarios: { type: "string" },
        "pull-order": { type: "string", default: "talos" },
        "upstream-auth": { type: "string", default: "token" },
        out: { type: "string" },
    },
});
const scale = Number(flags.scale);
const mbit = Number(flags.mbit);
const rttMs = Number(flags.rtt);
const nodes = Number(flags.nodes);
const repeat = Number(flags.repeat);
const registryVersion = flags["registry-version"]!;
const pullOrders: readonly PullOrder[] = ["talos", "serial"];
const pullOrder = flags["pull-order"] as PullOrder;
if (!pullOrders.includes(pullOrder))
    throw new Error(`--pull-order: ${pullOrder} is not one of ${pullOrders.join(", ")}`);
/**
 * `token`: each fixture upstream behind a token auth, as the real upstreams answer
 * (harness/token-auth.ts); `none`: the fixture registries as they are, taking every request and
 * sending no auth challenge (this bench before 2026-12-07).
 */
const upstreamAuth = flags["upstream-auth"]!;
if (!["none", "token"].includes(upstreamAuth))
    throw new Error(`--upstream-auth: ${upstreamAuth} is not one of none, token`);
/** The caches' registry: distribution 3.0.0 (registry:3) or Debian's 2.8 (registry:2). */
const cacheImages: Record<string, string> = {
    "3": fixtureRegistryImage,
    "2.8": fixtureRegistry2Image,
};
const cacheImage = cacheImages[registryVersion];
if (!cacheImage)
    throw new Error(
        `--registry-version: ${registryVersion} is not one of ${Object.keys(cacheImages).join(", ")}`,
    );
const out =
    flags.out ??
    (flags.bundle
        ? "bench/results-bundle.json"
        : flags.https
          ? "bench/results-https.json"
          : flags.soak
            ? "bench/results-soak.json"
            : `bench/results-registry-${registryVersion}.json`);

const registries = ["docker.io", "registry.k8s.io", "ghcr.io"];

interface Sample {
    seconds: number;
    /** Blob bytes the upstreams served (their access logs). */
    upstreamBytes: number;
    /** Requests the upstreams answered: manifests, blobs and `GET /v2/` pings. */
    upstreamRequests: number;
    /**
     * The pings (`GET /v2/`), with token auth those its stand-in answered too: a registry proxy
     * sends one per request to an upstream that sends no auth challenge.
     */
    upstreamPings: number;
    /** Tokens the upstreams' auth handed out (`--upstream-auth token`). */
    upstreamTokens: number;
    /** Everything that crossed the WAN toward this side: blobs, manifests, pings. */
    wanBytes: number;
    /** Blob bytes the caches (or, direct, the upstreams) served to the nodes. */
    servedBytes: number;
    /** Time spent prewarming before the boot (prewarmed scenario only). */
    prewarmSeconds?: number;
}

/** What every scenario works with: the image set, the upstreams behind the WAN, the caches. */
interface Bench {
    images: BenchImage[];
    refs: string[];
    /** What a node pulls, step by step (`--pull-order`). */
    steps: string[][];
    /** The upstreams' token auth, with `--upstream-auth token`. */
    auths: TokenAuth[];
    upstreams: FixtureUpstreams;
    wan: SimulatedWan;
    workDir: string;
    caches: Cache[];
    front: Front;
    endpoints: CacheEndpoint[];
    /** Nodes' hosts.toml directories: through the caches, straight to the upstreams over the WAN. */
    hosts: { viaCaches: string; direct: string };
}

/** Who served the nodes: the front, the cache registries themselves, or the upstreams. */
type Server = "front" | "registries" | "upstreams";

/** One way of getting the image set onto the nodes. */
interface Scenario {
    name: string;
    /** What it measures, as the results table says it. */
    what: string;
    /** Starts from empty caches and a fresh front; `prefetch: true` turns its prefetch on. */
    freshCaches?: boolean;
    prefetch?: true;
    measure(bench: Bench): Promise<Sample>;
}

/** In the order they run: each warm scenario finds what the one before it left in the caches. */
const scenarios: Scenario[] = [
    {
        name: "direct",
        what: "every node pulls from the upstream over the WAN",
        measure: (bench) => measure(bench, () => boot(bench, bench.hosts.direct), "upstreams"),
    },
    {
        name: "cold",
        what: "through empty caches",
        freshCaches: true,
        measure: (bench) => measure(bench, () => boot(bench, bench.hosts.viaCaches), "front"),
    },
    {
        name: "coldPrefetch",
        what: "through empty caches, `prefetch: true`",
        freshCaches: true,
        prefetch: true,
        measure: (bench) => measure(bench, () => boot(bench, bench.hosts.viaCaches), "front"),
    },
    {
        name: "warm",
        what: "through caches that hold everything",
        measure: async (bench) => {
            // Warm means the caches hold everything: a 2.x proxy may have dropped some of what it served.
            await prewarmCaches(bench);
            return measure(bench, () => boot(bench, bench.hosts.viaCaches), "front");
        },
    },
    {
        name: "warmFetchOnly",
        what: "warm, but `ctr content fetch`: download without unpacking (diagnostic)",
        measure: (bench) =>
            measure(bench, () => boot(bench, bench.hosts.viaCaches, "content fetch"), "front"),
    },
    {
        name: "warmNoFront",
        what: "warm, the registries asked at their container addresses: what the front costs (diagnostic)",
        measure: (bench) => {
            const addresses = bench.caches.map((cache) => [
                cache.registry,
                `http://${containerAddress(cache.name, benchId)}:5000`,
            ]);
            const hosts = hostsDir(bench, "registries-direct", Object.fromEntries(addresses));
            return measure(bench, () => boot(bench, hosts), "registries");
        },
    },
    {
        name: "prewarmed",
        what: "first boot after `prewarm` (prewarm time in the note column)",
        freshCaches: true,
        measure: async (bench) => {
            const prewarmSeconds = await prewarmCaches(bench);
            const booted = await measure(bench, () => boot(bench, bench.hosts.viaCaches), "front");
            return { ...booted, prewarmSeconds };
        },
    },
    {
        name: "localRegistry",
        what: "a plain local registry at its container address: no proxy, no front, no docker-proxy",
        measure: (bench) => {
            // The fixture upstreams themselves, at their container addresses: no WAN.
            const addresses = registries.map((registry) => [
                registry,
                `http://${containerAddress(bench.upstreams.get(registry).container, benchId)}:5000`,
            ]);
            const hosts = hostsDir(bench, "local-registry", Object.fromEntries(addresses));
            return measure(bench, () => boot(bench, hosts), "upstreams");
        },
    },
    {
        name: "oneNodeDirect",
        what: "one node pulls from the upstream over the WAN",
        measure: (bench) =>
            measure(bench, () => boot(bench, bench.hosts.direct, "images pull", 1), "upstreams"),
    },
    {
        name: "oneNodeCold",
        what: "one node through empty caches",
        freshCaches: true,
        measure: (bench) =>
            measure(bench, () => boot(bench, bench.hosts.viaCaches, "images pull", 1), "front"),
    },
    {
        name: "oneNodeColdPrefetch",
        what: "one node through empty caches, `prefetch: true`",
        freshCaches: true,
        prefetch: true,
        measure: (bench) =>
            measure(bench, () => boot(bench, bench.hosts.viaCaches, "images pull", 1), "front"),
    },
    {
        name: "limit",
        what: "the blobs copied from a cache volume, no registry",
        measure: async (bench) => ({
            seconds: await localCopy(bench),
            upstreamBytes: 0,
            upstreamRequests: 0,
            upstreamPings: 0,
            upstreamTokens: 0,
            wanBytes: 0,
            servedBytes: 0,
        }),
    },
];

/** `--scenarios a,b`: only those, in the table's order; by default every one. */
const chosen = (() => {
    if (flags.scenarios === undefined) return scenarios;
    const names = flags.scenarios.split(",");
    const unknown = names.filter((name) => !scenarios.some((scenario) => scenario.name === name));
    if (unknown.length > 0)
        throw new Error(
            `--scenarios: ${unknown.join(", ")} is not one of ${scenarios.map((scenario) => scenario.name).join(", ")}`,
        );
    return scenarios.filter((scenario) => names.includes(scenario.name));
})();

async function main() {
    prepareTestHost();
    const images = benchImages(scale);
    const setBytes = distinctBytes(images);
    console.log(
        `Image set: ${images.length} images, ${(setBytes / 1e6).toFixed(1)} MB of distinct blobs (scale ${scale}); WAN ${mbit} Mbit/s, ${rttMs} ms RTT; ${nodes} nodes; ${repeat} runs each.`,
    );
    cleanUp();
    const upstreams = await FixtureUpstreams.start(benchId, registries);
    const wan = new SimulatedWan({ bitsPerSecond: mbit * 1e6, roundTripMs: rttMs });
    const workDir = await mkdtemp(path.join(tmpdir(), "pt-bench-"));
    const auths: TokenAuth[] = [];
    try {
        const bench = await setUp(images, upstreams, wan, workDir, auths);
        const samples: Record<string, Sample[]> = Object.fromEntries(
            chosen.map((scenario) => [scenario.name, []]),
        );
        for (let run = 1; run <= repeat; run++) {
            console.log(`run ${run} of ${repeat}`);
            for (const scenario of chosen) {
                if (scenario.freshCaches)
                    await startCaches(
                        bench.caches,
                        { ...bench.front, prefetch: scenario.prefetch === true },
                        upstreams.network,
                    );
                const sample = await scenario.measure(bench);
                samples[scenario.name].push(sample);
                const note = sample.prewarmSeconds
                    ? ` after ${sample.prewarmSeconds.toFixed(1)} s prewarm`
                    : "";
                console.log(`  ${scenario.name.padEnd(14)} ${sample.seconds.toFixed(2)} s${note}`);
            }
        }
        writeResults(samples, setBytes, bench.refs);
    } finally {
        await wan.close();
        await Promise.all(auths.map((auth) => auth.close()));
        cleanUp();
        await upstreams.remove();
        await rm(workDir, { recursive: true, force: true });
    }
}

/** Seeds the upstreams, routes them through the WAN, and plans the caches in front of them. */
async function setUp(
    images: BenchImage[],
    upstreams: FixtureUpstreams,
    wan: SimulatedWan,
    workDir: string,
    auths: TokenAuth[],
): Promise<Bench> {
    await upstreams.seed(images);
    const gateway = upstreams.gateway();
    const remotes: Record<string, string> = {};
    for (const registry of registries) {
        let upstream = new URL(upstreams.get(registry).hostUrl);
        if (upstreamAuth === "token") {
            const auth = await TokenAuth.start(upstream.href);
            auths.push(auth);
            upstream = new URL(`http://127.0.0.1:${auth.port}`);
        }
        remotes[registry] =
            `http://${gateway}:${await wan.route(gateway, upstream.hostname, Number(upstream.port))}`;
    }
    const ports = Object.fromEntries(
        await Promise.all(registries.map(async (registry) => [registry, await freePort()])),
    );
    const { caches, front, endpoints } = planBenchCaches(remotes, ports, cacheImage);
    const bench = {
        images,
        refs: images.map(byTag),
        steps: pullSteps(images, pullOrder),
        auths,
        upstreams,
        wan,
        workDir,
        caches,
        front,
        endpoints,
    };
    const viaCaches = writeHostsDir(
        path.join(workDir, "via-caches"),
        withClosedFallback(containerdHosts(caches)),
    );
    return { ...bench, hosts: { viaCaches, direct: hostsDir(bench, "direct", remotes) } };
}

/** A hosts.toml directory with each registry's `url` as its mirror; the fallback a closed port. */
function hostsDir(bench: Pick<Bench, "workDir">, name: string, urls: Record<string, string>) {
    const hosts = registries.map((registry) => [
        registry,
        hostsToml(closedLoopbackServer, urls[registry]),
    ]);
    return writeHostsDir(path.join(bench.workDir, name), Object.fromEntries(hosts));
}

/** `count` fresh nodes (`--nodes`) pull every image of the set; resolves to the seconds they took. */
const boot = (
    bench: Bench,
    hostsDir: string,
    how?: "images pull" | "content fetch",
    count = nodes,
) => bootNodes(count, bench.steps, hostsDir, { how });

/** Runs `work` (resolving to seconds), and counts the bytes upstream, over the WAN and served. */
async function measure(bench: Bench, work: () => Promise<number>, server: Server): Promise<Sample> {
    const since = new Date();
    const wanBefore = bench.wan.bytesDown;
    const authCount = (field: "tokensIssued" | "pings") =>
        bench.auths.reduce((sum, auth) => sum + auth[field], 0);
    const [tokensBefore, authPingsBefore] = [authCount("tokensIssued"), authCount("pings")];
    const seconds = await work();
    const upstreamBytes = registries.reduce(
        (sum, registry) => sum + logBytes(bench.upstreams.get(registry).container, since),
        0,
    );
    const upstreamLines = (pattern: RegExp) =>
        registries.reduce(
            (sum, registry) =>
                sum + countLogLines(bench.upstreams.get(registry).container, pattern, since),
            0,
        );
    const servedBytes = {
        front: () => logBytes(bench.front.name, since),
        registries: () => bench.caches.reduce((sum, cache) => sum + logBytes(cache.name, since), 0),
        upstreams: () => upstreamBytes,
    }[server]();
    return {
        seconds,
        upstreamBytes,
        upstreamRequests: upstreamLines(/"(GET|HEAD) \/v2\//),
        // With token auth, the stand-in answers a ping without a token itself.
        upstreamPings: upstreamLines(/"GET \/v2\/ HTTP/) + authCount("pings") - authPingsBefore,
        upstreamTokens: authCount("tokensIssued") - tokensBefore,
        wanBytes: bench.wan.bytesDown - wanBefore,
        servedBytes,
    };
}

/** `npm run prewarm`'s own code over the whole set; resolves to its seconds. */
async function prewarmCaches(bench: Bench): Promise<number> {
    const started = performance.now();
    const routed = routeImages(bench.refs, bench.endpoints);
    const front = await readFrontAccess(toolsDocker, bench.endpoints);
    const results = await withCacheViews(toolsDocker, bench.endpoints, front, (views) =>
        prewarmUntilStored(routed, { platforms: [hostPlatform()], concurrency: 4, front }, views),
    );
    const failed = results.filter((result) => !result.ok);
    if (failed.length > 0)
        throw new Error(
            `prewarm failed: ${failed.map((result) => `${result.image}: ${result.error}`).join("; ")}`,
        );
    return (performance.now() - started) / 1000;
}

/** The floor: every node's copy of the set's blobs, read from a cache volume, no registry. */
async function localCopy(bench: Bench): Promise<number> {
    const files = bench.images.flatMap((fixture) => {
        const cache = bench.caches.find((candidate) => candidate.registry === fixture.registry)!;
        const volume = docker("volume", "inspect", "--format", "{{.Mountpoint}}", cache.name);
        return allBlobs(fixture.artifact).map((blob) => blobFile(volume, blob.digest));
    });
    const targets = await Promise.all(
        Array.from({ length: nodes }, async (_, node) => {
            const dir = path.join(bench.workDir, `copy-${node}`);
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

/** The set's distinct blobs, in bytes. */
function distinctBytes(images: readonly FixtureImage[]): number {
    const blobs = new Map(
        images.flatMap((fixture) =>
            allBlobs(fixture.artifact).map((blob) => [blob.digest, blob.bytes.length]),
        ),
    );
    return [...blobs.values()].reduce((sum, size) => sum + size, 0);
}

function writeResults(samples: Record<string, Sample[]>, setBytes: number, refs: string[]) {
    const report = summarise(samples, setBytes);
    const machine = `${machineDescription()}, caches ${cacheImage}, front ${fixtureFrontImage}`;
    const command = `npm run bench -- --registry-version ${registryVersion} --scale ${scale} --mbit ${mbit} --rtt ${rttMs} --nodes ${nodes} --pull-order ${pullOrder} --upstream-auth ${upstreamAuth} --repeat ${repeat}${flags.scenarios ? ` --scenarios ${flags.scenarios}` : ""}`;
    const results = { date: new Date().toISOString(), machine, command, setBytes, images: refs };
    writeFileSync(out, JSON.stringify({ ...results, samples, ...report }, null, 2) + "\n");
    console.log(`\n${report.markdown}\n\nMachine: ${machine}\nCommand: ${command}\nJSON: ${out}`);
}

/**
 * The ratios of wall times the targets speak of, `[key, scenario, over, target]`: a scenario over
 * another, or over the link floor.
 */
const timeRatios: [string, string, string, string][] = [
    ["coldOverLinkFloor", "cold", "link floor", "≤ 1.2×"],
    ["coldPrefetchOverLinkFloor", "coldPrefetch", "link floor", "(diagnostic)"],
    ["oneNodeColdOverDirect", "oneNodeCold", "oneNodeDirect", "≤ 1.0×"],
    ["oneNodeColdPrefetchOverDirect", "oneNodeColdPrefetch", "oneNodeDirect", "(diagnostic)"],
    ["directOverWarm", "direct", "warm", "≥ 10×"],
    ["directOverCold", "direct", "cold", "≥ 2×"],
    ["coldOverWarm", "cold", "warm", ""],
    ["warmOverLocalRegistry", "warm", "localRegistry", "≤ 1.5×"],
    [
        "warmOverWarmNoFront",
        "warm",
        "warmNoFront",
        "(diagnostic: ≈ 1, the front costs the warm path nothing)",
    ],
    ["warmOverLimit", "warm", "limit", "≤ 3×"],
    ["warmFetchOnlyOverLimit", "warmFetchOnly", "limit", "(diagnostic)"],
];

/** The results table and the ratios the targets speak of, of the scenarios that ran. */
function summarise(samples: Record<string, Sample[]>, setBytes: number) {
    const stat = (scenario: string, field: keyof Sample) =>
        samples[scenario].map((sample) => sample[field] ?? 0);
    const seconds = (scenario: string) => median(stat(scenario, "seconds"));
    const spread = (scenario: string) =>
        `${Math.min(...stat(scenario, "seconds")).toFixed(2)}–${Math.max(...stat(scenario, "seconds")).toFixed(2)}`;
    const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
    const rows = chosen.map(({ name: scenario, what }) => [
        scenario,
        what,
        seconds(scenario).toFixed(2),
        spread(scenario),
        mb(median(stat(scenario, "upstreamBytes"))),
        `${median(stat(scenario, "upstreamRequests"))} (${median(stat(scenario, "upstreamPings"))}${upstreamAuth === "token" ? `; ${median(stat(scenario, "upstreamTokens"))} tokens` : ""})`,
        mb(median(stat(scenario, "wanBytes"))),
        mb(median(stat(scenario, "servedBytes"))),
        scenario === "prewarmed"
            ? `prewarm ${median(stat(scenario, "prewarmSeconds")).toFixed(1)} s`
            : "",
    ]);
    const linkFloor = (setBytes * 8) / (mbit * 1e6);
    const ran = (...names: string[]) => names.every((name) => name in samples);
    const measured = timeRatios
        .filter(([, a, b]) => ran(a) && (b === "link floor" || ran(b)))
        .map(([key, a, b, target]) => ({
            key,
            target,
            what:
                b === "link floor"
                    ? `${a} / link floor (${linkFloor.toFixed(1)} s)`
                    : `${a} / ${b}`,
            value: seconds(a) / (b === "link floor" ? linkFloor : seconds(b)),
        }));
    if (ran("cold"))
        measured.push({
            key: "coldUpstreamOverImageBytes",
            what: "cold upstream bytes / image bytes",
            target: "≤ 1.05",
            value: median(stat("cold", "upstreamBytes")) / setBytes,
        });
    const ratios = Object.fromEntries(measured.map(({ key, value }) => [key, value]));
    const markdown = [
        `| scenario | what | wall s (median) | spread s | upstream blob MB | upstream requests (pings${upstreamAuth === "token" ? "; tokens" : ""}) | WAN MB | served to nodes MB | note |`,
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
        ...rows.map((row) => `| ${row.join(" | ")} |`),
        "",
        "| ratio | value | target |",
        "|---|---:|---|",
        ...measured.map(
            ({ what, value, target }) => `| ${what} | ${value.toFixed(2)}× | ${target} |`,
        ),
        ...(ran("warm", "prewarmed")
            ? [
                  `| warm, prewarmed upstream blob bytes | ${mb(median(stat("warm", "upstreamBytes")))} MB, ${mb(median(stat("prewarmed", "upstreamBytes")))} MB | 0 |`,
              ]
            : []),
    ].join("\n");
    return { ratios, markdown };
}

// --bundle: export, import and verify --deep against their floors (bench/bundle.ts); --https:
// a warm pull over HTTP, HTTPS and HTTPS with credentials (bench/https.ts); --soak N: N pulls
// through the front, and what the tools and logs make of them (bench/soak.ts).
const soakTotal = flags.soak === undefined ? undefined : Number(flags.soak);
if (soakTotal !== undefined && !(Number.isInteger(soakTotal) && soakTotal >= 1))
    throw new Error(`--soak: ${flags.soak} is not a positive whole number of requests`);
(flags.bundle
    ? benchBundles({ scale, repeat, out })
    : flags.https
      ? benchHttps({ scale, repeat, nodes, out })
      : soakTotal
        ? benchSoak({ total: soakTotal, out })
        : main()
).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
});
