/**
 * `npm run bench -- --bundle`: what carrying the caches costs, for the Talos-shaped set
 * (bench/image-set.ts), against the floors a user could reach by hand:
 *
 * - export against `tar -c` of the same cache volumes;
 * - import (into new, empty caches) against `tar -x` of that archive into them;
 * - the bundle's size against the set's distinct blob bytes;
 * - `verify --deep`'s re-hash against one `sha256sum` over the same stored files.
 *
 * Each is timed in-process (what `npm run export` and the others do after starting up), page
 * cache warm for both sides. Results go to bench/results-bundle.json and the console.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import * as path from "node:path";
import { hostPlatform } from "../core/images";
import { docker, fixtureRegistryImage, freePort, prepareTestHost } from "../harness/engine";
import { allBlobs } from "../harness/oci";
import { FixtureUpstreams, byTag } from "../harness/upstreams";
import { withCacheViews } from "../tools/cache-view";
import { dockerCli } from "../tools/docker";
import { exportBundle } from "../tools/export";
import { importBundle } from "../tools/import";
import { deepCheck } from "../tools/integrity";
import { registryStoragePath, registryStorageRoot } from "../core/container-facts";
import { storagePaths } from "../core/storage-layout";
import { prewarmUntilStored, routeImages, verify } from "../tools/warm";
import { benchImages } from "./image-set";
import { benchId, cleanUp, median, planBenchCaches, startCaches } from "./stack";

/** The tools' docker CLI, on this machine's engine. */
const toolsDocker = dockerCli();

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
}

const seconds = (since: number) => (performance.now() - since) / 1000;

/** Runs `work` and returns its wall time in seconds. */
async function timed(work: () => unknown): Promise<number> {
    const started = performance.now();
    await work();
    return seconds(started);
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
        const emptyCaches = () => startCaches(caches, front, upstreams.network);
        const routed = routeImages(refs, endpoints);
        const volumeOf = (registry: string) =>
            docker(
                ...["volume", "inspect", "--format", "{{.Mountpoint}}"],
                caches.find((cache) => cache.registry === registry)!.name,
            );
        // What the caches store: the set's blobs and manifests, each once.
        const stored = new Map(
            images.flatMap((image) =>
                [image.artifact.manifest, ...allBlobs(image.artifact)].map((blob) => [
                    blob.digest,
                    { registry: image.registry, size: blob.bytes.length },
                ]),
            ),
        );
        const setBytes = [...stored.values()].reduce((sum, blob) => sum + blob.size, 0);
        console.log(
            `Image set: ${images.length} images, ${(setBytes / 1e6).toFixed(1)} MB of distinct blobs and manifests (scale ${options.scale}); ${options.repeat} runs.`,
        );
        const samples: BundleSample[] = [];
        for (let run = 1; run <= options.repeat; run++) {
            await emptyCaches();
            const warmed = await withCacheViews(toolsDocker, endpoints, (views) =>
                prewarmUntilStored(routed, { platforms: [hostPlatform()], concurrency: 4 }, views),
            );
            if (!warmed.every((result) => result.ok)) throw new Error("prewarm failed");

            const perVolume = registries.map((registry) => path.join(workDir, `${registry}.tar`));
            const tarExport = await timed(() =>
                registries.forEach((registry, index) =>
                    // The registry's storage: the volume's root also holds the supervisor's probe.
                    execFileSync("tar", [
                        "-cf",
                        perVolume[index],
                        "-C",
                        volumeOf(registry),
                        "docker",
                    ]),
                ),
            );
            const bundle = path.join(workDir, "talos-set.tar");
            const exportSeconds = await timed(() =>
                withCacheViews(toolsDocker, endpoints, (views) =>
                    exportBundle(bundle, routed, views),
                ),
            );

            const relativeRoot = path.relative(registryStoragePath, registryStorageRoot);
            const files = [...stored].map(([digest, { registry }]) =>
                path.join(volumeOf(registry), relativeRoot, storagePaths.blobData(digest)),
            );
            const sha256sum = await timed(() => execFileSync("sha256sum", files));
            let deep = 0;
            const verifyDeep = await timed(async () => {
                const results = await withCacheViews(toolsDocker, endpoints, (views) =>
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
            const importSeconds = await timed(() => importBundle(toolsDocker, bundle, endpoints));
            samples.push({
                tarExport,
                export: exportSeconds,
                tarImport,
                import: importSeconds,
                sha256sum,
                deep,
                verifyDeep,
                bundleBytes: statSync(bundle).size,
            });
            console.log(
                `run ${run}: export ${exportSeconds.toFixed(2)} s (tar ${tarExport.toFixed(2)} s), import ${importSeconds.toFixed(2)} s (tar ${tarImport.toFixed(2)} s), deep ${deep.toFixed(2)} s (sha256sum ${sha256sum.toFixed(2)} s)`,
            );
            for (const file of [bundle, ...perVolume]) rmSync(file, { force: true });
        }
        const of = (field: keyof BundleSample) => median(samples.map((sample) => sample[field]));
        const ratios = {
            exportOverTar: of("export") / of("tarExport"),
            importOverTar: of("import") / of("tarImport"),
            bundleOverDistinctBlobs: of("bundleBytes") / setBytes,
            deepOverSha256sum: of("deep") / of("sha256sum"),
        };
        const markdown = [
            "| step | Pullthrough s (median) | floor | floor s (median) | ratio | target |",
            "|---|---:|---|---:|---:|---|",
            `| export | ${of("export").toFixed(2)} | \`tar -c\` of the cache volumes | ${of("tarExport").toFixed(2)} | ${ratios.exportOverTar.toFixed(2)}× | ≤ 1.5× |`,
            `| import into empty caches | ${of("import").toFixed(2)} | \`tar -x\` into the volumes | ${of("tarImport").toFixed(2)} | ${ratios.importOverTar.toFixed(2)}× | ≤ 1.5× |`,
            `| \`verify --deep\` re-hash | ${of("deep").toFixed(2)} | one \`sha256sum\` over the same files | ${of("sha256sum").toFixed(2)} | ${ratios.deepOverSha256sum.toFixed(2)}× | ≤ 2× |`,
            `| whole \`verify --deep\` | ${of("verifyDeep").toFixed(2)} | | | | (views, manifests, re-hash) |`,
            "",
            `Bundle ${(of("bundleBytes") / 1e6).toFixed(1)} MB for ${(setBytes / 1e6).toFixed(1)} MB of distinct blobs: ${ratios.bundleOverDistinctBlobs.toFixed(4)}× (target ≤ 1.02×).`,
        ].join("\n");
        const machine = `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
        const command = `npm run bench -- --bundle --scale ${options.scale} --repeat ${options.repeat}`;
        writeFileSync(
            options.out,
            `${JSON.stringify({ date: new Date().toISOString(), machine, command, setBytes, images: refs, samples, ratios, markdown }, null, 2)}\n`,
        );
        console.log(
            `\n${markdown}\n\nMachine: ${machine}\nCommand: ${command}\nJSON: ${options.out}`,
        );
    } finally {
        cleanUp();
        await upstreams.remove();
        rmSync(workDir, { recursive: true, force: true });
    }
}
