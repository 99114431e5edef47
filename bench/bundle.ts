/**
 * `npm run bench -- --bundle`: what carrying the caches costs, for the Talos-shaped set
 * (bench/image-set.ts), against the floors a user could reach by hand:
 *
 * - export against `tar -c` of the same cache volumes plus one `sha256sum` over the same files:
 *   the floor of a verified copy;
 * - import (into new, empty caches) against `tar -x` of that archive into them, plus the same
 *   `sha256sum`;
 * - the fixed cost: export and import of the set's smallest image alone;
 * - the bundle's size against the set's distinct blob bytes;
 * - `verify --deep`'s re-hash against one `sha256sum` over the same stored files.
 *
 * Each is timed in-process (what `npm run export` and the others do after starting up), page
 * cache warm for both sides. Results go to bench/results-bundle.json and the console.
 */
import { readFrontAccess } from "../tools/front";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Front } from "../core/front";
import { hostPlatform } from "../core/images";
import { Cache, CacheEndpoint } from "../core/plan";
import { docker, fixtureRegistryImage, freePort, prepareTestHost } from "../harness/docker";
import { allBlobs } from "../harness/oci";
import { FixtureUpstreams, byTag } from "../harness/upstreams";
import { withCacheViews } from "../tools/cache-view";
import { exportImages } from "../tools/export";
import { ociBundle } from "../host/oci-layout";
import { importBundle } from "../tools/import";
import { deepCheck } from "../tools/integrity";
import { RoutedImage } from "../tools/types";
import { prewarmUntilStored, routeImages, verify } from "../tools/warm";
import { benchImages } from "./image-set";
import {
    benchId,
    blobFile,
    cleanUp,
    machineDescription,
    median,
    planBenchCaches,
    startCaches,
    toolsDocker,
} from "./stack";

interface BundleSample {
    tarExport: number;
    export: number;
    tarImport: number;
    import: number;
    sha256sum: number;
    deep: number;
    /** The whole `verify --deep`: views, manifests and the re-hash. */
    verifyDeep: number;
    bundleBytes: number;
    /** Export and import of the smallest image alone: what a run costs whatever it carries. */
    fixedExport: number;
    fixedImport: number;
}

const seconds = (since: number) => (performance.now() - since) / 1000;

/** Runs `work` and returns its wall time in seconds. */
async function timed(work: () => unknown): Promise<number> {
    const started = performance.now();
    await work();
    return seconds(started);
}

/** The caches of a bundle run, and what they hold once warm. */
interface BundleBench {
    registries: string[];
    caches: Cache[];
    front: Front;
    endpoints: CacheEndpoint[];
    routed: RoutedImage[];
    upstreams: FixtureUpstreams;
    workDir: string;
    /** The set's blobs and manifests, each once, with the registry that stores it. */
    stored: Map<string, { registry: string; size: number }>;
}

export async function benchBundles(options: { scale: number; repeat: number; out: string }) {
    prepareTestHost();
    const images = benchImages(options.scale);
    const refs = images.map(byTag);
    const registries = [...new Set(images.map((image) => image.registry))];
    cleanUp();
    const upstreams = await FixtureUpstreams.start(benchId, registries);
    const workDir = mkdtempSync(path.join(tmpdir(), "pt-bench-bundle-"));
    try {
        await upstreams.seed(images);
        const ports = Object.fromEntries(
            await Promise.all(registries.map(async (registry) => [registry, await freePort()])),
        );
        const remotes = Object.fromEntries(
            registries.map((registry) => [registry, upstreams.get(registry).remote]),
        );
        const { caches, front, endpoints } = planBenchCaches(remotes, ports, fixtureRegistryImage);
        const stored = new Map(
            images.flatMap((image) =>
                [image.artifact.manifest, ...allBlobs(image.artifact)].map((blob) => [
                    blob.digest,
                    { registry: image.registry, size: blob.bytes.length },
                ]),
            ),
        );
        const routed = routeImages(refs, endpoints);
        const bench = { registries, caches, front, endpoints, routed, upstreams, workDir, stored };
        const setBytes = [...stored.values()].reduce((sum, blob) => sum + blob.size, 0);
        console.log(
            `Image set: ${images.length} images, ${(setBytes / 1e6).toFixed(1)} MB of distinct blobs and manifests (scale ${options.scale}); ${options.repeat} runs.`,
        );
        const samples: BundleSample[] = [];
        for (let run = 1; run <= options.repeat; run++) {
            const sample = await sampleBundles(bench);
            samples.push(sample);
            console.log(
                `run ${run}: export ${sample.export.toFixed(2)} s (tar ${sample.tarExport.toFixed(2)} s), import ${sample.import.toFixed(2)} s (tar ${sample.tarImport.toFixed(2)} s), deep ${sample.deep.toFixed(2)} s (sha256sum ${sample.sha256sum.toFixed(2)} s), fixed ${sample.fixedExport.toFixed(2)} / ${sample.fixedImport.toFixed(2)} s`,
            );
        }
        writeBundleResults(samples, setBytes, refs, options);
    } finally {
        cleanUp();
        await upstreams.remove();
        rmSync(workDir, { recursive: true, force: true });
    }
}

/** One run: warm caches, then export, deep check and import, each beside its floor. */
async function sampleBundles(bench: BundleBench): Promise<BundleSample> {
    const { registries, endpoints, routed, workDir } = bench;
    const emptyCaches = () => startCaches(bench.caches, bench.front, bench.upstreams.network);
    const volumeOf = (registry: string) =>
        docker(
            ...["volume", "inspect", "--format", "{{.Mountpoint}}"],
            bench.caches.find((cache) => cache.registry === registry)!.name,
        );
    await emptyCaches();
    const front = await readFrontAccess(toolsDocker, endpoints);
    const warmed = await withCacheViews(toolsDocker, endpoints, front, (views) =>
        prewarmUntilStored(routed, { platforms: [hostPlatform()], concurrency: 4, front }, views),
    );
    if (!warmed.every((result) => result.ok)) throw new Error("prewarm failed");

    const perVolume = registries.map((registry) => path.join(workDir, `${registry}.tar`));
    const tarExport = await timed(() =>
        registries.forEach((registry, index) =>
            // The registry's storage: the volume's root also holds the supervisor's probe.
            execFileSync("tar", ["-cf", perVolume[index], "-C", volumeOf(registry), "docker"]),
        ),
    );
    const bundle = path.join(workDir, "talos-set.tar");
    const exportSeconds = await timed(() =>
        exportImages(toolsDocker, bundle, routed, ociBundle(bundle)),
    );

    const files = [...bench.stored].map(([digest, { registry }]) =>
        blobFile(volumeOf(registry), digest),
    );
    const sha256sum = await timed(() => execFileSync("sha256sum", files));
    let deep = 0;
    const verifyDeep = await timed(async () => {
        const results = await withCacheViews(toolsDocker, endpoints, front, (views) =>
            verify(routed, views, [hostPlatform()], 4),
        );
        const started = performance.now();
        const checked = await deepCheck(toolsDocker, results, endpoints);
        deep = seconds(started);
        if (checked.findings.length > 0) throw new Error("the deep check found damage");
    });

    await emptyCaches();
    const tarImport = await timed(() =>
        registries.forEach((registry, index) =>
            execFileSync("tar", ["-xf", perVolume[index], "-C", volumeOf(registry)]),
        ),
    );
    await emptyCaches();
    const importSeconds = await timed(() =>
        importBundle(toolsDocker, bundle, endpoints, { dryRun: false }),
    );
    const bundleBytes = statSync(bundle).size;
    // The set's smallest image: what a run costs whatever it carries.
    const smallest = routed.find((image) => image.image.repository === "pause")!;
    const small = path.join(workDir, "smallest.tar");
    const fixedExport = await timed(() =>
        exportImages(toolsDocker, small, [smallest], ociBundle(small)),
    );
    await emptyCaches();
    const fixedImport = await timed(() =>
        importBundle(toolsDocker, small, endpoints, { dryRun: false }),
    );
    for (const file of [bundle, small, ...perVolume]) rmSync(file, { force: true });
    return {
        tarExport,
        export: exportSeconds,
        tarImport,
        import: importSeconds,
        sha256sum,
        deep,
        verifyDeep,
        bundleBytes,
        fixedExport,
        fixedImport,
    };
}

function writeBundleResults(
    samples: readonly BundleSample[],
    setBytes: number,
    refs: string[],
    options: { scale: number; repeat: number; out: string },
) {
    const of = (field: keyof BundleSample) => median(samples.map((sample) => sample[field]));
    const exportFloor = of("tarExport") + of("sha256sum");
    const importFloor = of("tarImport") + of("sha256sum");
    // Each run against its own floor, measured back to back: the page cache and the disk's
    // writeback weigh on both alike.
    const perRun = (step: "export" | "import", tar: "tarExport" | "tarImport") =>
        median(samples.map((sample) => sample[step] / (sample[tar] + sample.sha256sum)));
    const ratios = {
        exportOverFloor: perRun("export", "tarExport"),
        importOverFloor: perRun("import", "tarImport"),
        bundleOverDistinctBlobs: of("bundleBytes") / setBytes,
        deepOverSha256sum: of("deep") / of("sha256sum"),
    };
    const mb = (setBytes / 1e6).toFixed(1);
    const markdown = [
        `Scale ${options.scale} (${mb} MB):`,
        "",
        "| step | Pullthrough s (median) | floor | floor s (median) | ratio (median of runs) | target |",
        "|---|---:|---|---:|---:|---|",
        `| export | ${of("export").toFixed(2)} | \`tar -c\` of the cache volumes (${of("tarExport").toFixed(2)}) + \`sha256sum\` (${of("sha256sum").toFixed(2)}) | ${exportFloor.toFixed(2)} | ${ratios.exportOverFloor.toFixed(2)}× | ≤ 1.5× |`,
        `| import into empty caches | ${of("import").toFixed(2)} | \`tar -x\` into the volumes (${of("tarImport").toFixed(2)}) + \`sha256sum\` | ${importFloor.toFixed(2)} | ${ratios.importOverFloor.toFixed(2)}× | ≤ 1.5× |`,
        `| fixed cost: export of pause alone | ${of("fixedExport").toFixed(2)} | | | | ≤ 0.5 s |`,
        `| fixed cost: import of it into empty caches | ${of("fixedImport").toFixed(2)} | | | | ≤ 0.5 s |`,
        `| \`verify --deep\` re-hash | ${of("deep").toFixed(2)} | one \`sha256sum\` over the same files | ${of("sha256sum").toFixed(2)} | ${ratios.deepOverSha256sum.toFixed(2)}× | ≤ 2× |`,
        `| whole \`verify --deep\` | ${of("verifyDeep").toFixed(2)} | | | | (views, manifests, re-hash) |`,
        "",
        `Bundle ${(of("bundleBytes") / 1e6).toFixed(1)} MB for ${mb} MB of distinct blobs: ${ratios.bundleOverDistinctBlobs.toFixed(4)}× (target ≤ 1.02×).`,
    ].join("\n");
    const machine = machineDescription();
    const command = `npm run bench -- --bundle --scale ${options.scale} --repeat ${options.repeat}`;
    writeFileSync(
        options.out,
        `${JSON.stringify({ date: new Date().toISOString(), machine, command, setBytes, images: refs, samples, ratios, markdown }, null, 2)}\n`,
    );
    console.log(`\n${markdown}\n\nMachine: ${machine}\nCommand: ${command}\nJSON: ${options.out}`);
}
