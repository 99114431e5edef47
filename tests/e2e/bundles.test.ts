/**
 * Bundles and integrity on the real engine (the registry:3 fixture, Debian's nginx, containerd and
 * skopeo). Warm caches export a Talos-like set that skopeo, which Pullthrough does not contain,
 * copies out digest for digest; a corrupt stored layer is named by `verify --deep` and healed by
 * `--repair`. Then the stack is destroyed with its volumes, every upstream stopped, and `up` with
 * `importFrom` and `mode: offline` serves every image to new nodes without one upstream request.
 * A layout skopeo made imports too; bad bundles and a killed import leave the caches as they were.
 */
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import {
    cpSync,
    existsSync,
    mkdirSync,
    mkdtempSync,
    readFileSync,
    readdirSync,
    rmSync,
    statSync,
    truncateSync,
    writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { frontCacheFile } from "../../core/front";
import { registryStoragePath, registryStorageRoot } from "../../core/container-facts";
import { docker, sleep, waitFor } from "../../harness/docker";
import { Containerd, closedLoopbackServer, writeHostsDir } from "../../harness/containerd";
import { TalosCacheServe } from "../../harness/talos-cache-serve";
import { hostPlatform } from "../../core/images";
import { ImageArtifact, allBlobs, image, index, layer, sha256 } from "../../harness/oci";
import { TestStack } from "../../harness/stack";
import { parseViewListing, viewListing } from "../../tools/cache-view";
import { ToolRun, runTool } from "../../harness/tools";
import { FixtureImage, byTag, talosLikeImages } from "../../harness/upstreams";
import { SimulatedWan } from "../../harness/wan";

jest.setTimeout(600_000);

const repoRoot = path.resolve(__dirname, "../..");
const multi: FixtureImage = {
    registry: "ghcr.io",
    repository: "pullthrough/multi",
    tag: "v1",
    artifact: index({
        amd64: image([layer("bundle-multi-amd64", 64 << 10)], { oci: true }),
        arm64: image([layer("bundle-multi-arm64", 64 << 10)], {
            oci: true,
            architecture: "arm64",
        }),
    }),
};
/** The set the air-gapped host needs: what a Talos cluster pulls, and a multi-arch image. */
const shipped = [...talosLikeImages(), multi];
/** A second bundle's image, for bad inputs and a killed import: the caches lack it in the air gap. */
const extra: FixtureImage = {
    registry: "registry.k8s.io",
    repository: "pullthrough/extra",
    tag: "v1",
    artifact: image([layer("bundle-extra", 4 << 20), layer("bundle-extra-b", 64 << 10)]),
};
/** Does not fit the air-gapped ghcr.io cache's 16 MiB volume. */
const big: FixtureImage = {
    registry: "ghcr.io",
    repository: "pullthrough/big",
    tag: "v1",
    artifact: image([layer("bundle-big", 24 << 20)]),
};
/** Only upstream, never cached: what skopeo copies into a layout of its own. */
const skopeoMade: FixtureImage = {
    registry: "docker.io",
    repository: "pullthrough/skopeo-made",
    tag: "v1",
    artifact: image([layer("bundle-skopeo", 96 << 10)]),
};
/** Pulled through a slow link while an import is tried. */
const slow: FixtureImage = {
    registry: "registry.k8s.io",
    repository: "pullthrough/slow",
    tag: "v1",
    artifact: image([layer("bundle-slow", 8 << 20)]),
};
/** Carried into the air gap only in a flat Talos image cache. */
const talosOnly: FixtureImage = {
    registry: "docker.io",
    repository: "pullthrough/talos-only",
    tag: "v1",
    artifact: image([layer("bundle-talos-only", 96 << 10)], { oci: true }),
};
const registries = ["ghcr.io", "registry.k8s.io", "docker.io"];

let stack: TestStack;
let wan: SimulatedWan;
let workDir: string;
let upstreams: { registry: string; remote: string; port: number }[];
const bundleTar = () => path.join(workDir, "talos-set.tar");
const everythingDir = () => path.join(workDir, "everything");
const extraDir = () => path.join(workDir, "extra");
const skopeoDir = () => path.join(workDir, "skopeo-layout");
const talosCacheDir = () => path.join(workDir, "talos-cache");
const talosExtraDir = () => path.join(workDir, "talos-cache-extra");
const talosOciDir = () => path.join(workDir, "talos-cache-oci");
const hostArchitecture = () => hostPlatform().architecture;

const outputs = () => ({ mirrors: stack.run.outputs.mirrors, prewarmImages: [] });
const tool = (name: string, ...args: string[]): Promise<ToolRun> =>
    runTool(name, outputs(), workDir, ...args);
const json = (run: ToolRun) => JSON.parse(run.stdout);

/** The top manifest digest a node resolves a fixture to (the index, for an index). */
const digestOf = (fixture: FixtureImage) => fixture.artifact.manifest.digest;

/** What a cache stores for a fixture pulled on amd64: its manifests, configs and layers. */
function storedBlobs(artifact: ImageArtifact): { digest: string; bytes: Buffer }[] {
    const amd64 = artifact.children[0];
    return amd64
        ? [artifact.manifest, amd64.manifest, ...allBlobs(amd64)]
        : [artifact.manifest, ...allBlobs(artifact)];
}

/** Every file of a cache's storage (or of `under` it), with size and mtime. */
const storageListing = (registry: string, under = ".") =>
    docker(
        ...["exec", stack.cacheName(registry), "sh", "-c"],
        `cd ${registryStorageRoot} 2>/dev/null || exit 0; find ${under} -type f -exec stat -c '%n %s %Y' {} + | sort`,
    );

/** Where an import stages what it writes (tools/import.ts), beside the storage. */
const importStaging = `${registryStoragePath}/pullthrough/imports`;

const runCommand = (command: string, args: string[]) =>
    execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

const storageListings = () => registries.map((registry) => storageListing(registry));

beforeAll(async () => {
    stack = await TestStack.start("bundle", registries, [
        ...shipped,
        extra,
        big,
        talosOnly,
        skopeoMade,
        slow,
    ]);
    workDir = mkdtempSync(path.join(tmpdir(), "pt-bundle-"));
    // registry.k8s.io's upstream sits behind a 16 Mbit/s link: the slow image takes seconds.
    wan = new SimulatedWan({ bitsPerSecond: 16e6, roundTripMs: 20 });
    const gateway = stack.upstreams.gateway();
    const k8s = new URL(stack.upstreams.get("registry.k8s.io").hostUrl);
    const slowRemote = `http://${gateway}:${await wan.route(gateway, k8s.hostname, Number(k8s.port))}`;
    upstreams = stack.upstreams
        .upstreamsOn(stack.ports)
        .map((upstream) =>
            upstream.registry === "registry.k8s.io"
                ? { ...upstream, remote: slowRemote }
                : upstream,
        );
    await stack.up(
        { keepCache: false, prewarm: [...shipped, extra, big, talosOnly].map(byTag) },
        upstreams,
    );
    const upstream = new URL(stack.upstreams.get("docker.io").hostUrl);
    runCommand("skopeo", [
        ...["copy", "--quiet", "--src-tls-verify=false"],
        `docker://${upstream.host}/${skopeoMade.repository}:${skopeoMade.tag}`,
        `oci:${skopeoDir()}:${byTag(skopeoMade)}`,
    ]);
});

afterAll(async () => {
    await wan?.close();
    if (stack) {
        // Views the killed import left behind (this stack's only: other suites run alongside).
        const views = parseViewListing(docker(...viewListing)).filter((view) =>
            view.of.startsWith(`${stack.id}-`),
        );
        for (const { id: view } of views) {
            try {
                docker("rm", "--force", "--volumes", view);
            } catch (error) {
                // Its lease ran out meanwhile, and Docker is removing it already.
                if (!/already in progress|No such container/.test(String(error))) throw error;
            }
        }
        await stack.remove();
    }
    if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe("on the connected machine", () => {
    test("export writes one OCI layout that skopeo copies every image out of, digest for digest, each blob once", async () => {
        const exported = await tool(
            "export",
            bundleTar(),
            "--images",
            shipped.map(byTag).join(","),
        );
        if (exported.code !== 0) console.log(exported.stdout, exported.stderr);
        expect(exported.code).toBe(0);
        console.log(`$ npm run export -- talos-set.tar --images …\n${exported.stdout}`);
        const everything = await tool("export", everythingDir(), "--json");
        expect(everything.code).toBe(0);
        const report = json(everything);

        // Every image the caches hold, by its full reference.
        const layout = JSON.parse(readFileSync(path.join(everythingDir(), "index.json"), "utf8"));
        const warm = [...shipped, extra, big, talosOnly];
        expect(
            layout.manifests.map(
                (entry: any) => entry.annotations["org.opencontainers.image.ref.name"],
            ),
        ).toEqual(warm.map(byTag).sort());
        // One file per distinct blob, across images and registries; nothing else.
        const distinct = new Map(
            warm.flatMap((f) => storedBlobs(f.artifact)).map((b) => [b.digest, b.bytes.length]),
        );
        const files = readdirSync(path.join(everythingDir(), "blobs", "sha256"));
        expect(files.sort()).toEqual([...distinct.keys()].map((d) => d.slice(7)).sort());
        const distinctBytes = [...distinct.values()].reduce((a, b) => a + b, 0);
        expect(report.blobBytes).toBe(distinctBytes);
        // No partial bundle left beside the finished ones.
        expect(readdirSync(workDir).filter((name) => name.includes(".partial-"))).toEqual([]);

        // skopeo's oci: transport lists only entries typed as OCI manifests or indexes
        // (containers/image oci/layout/oci_transport.go); Docker schema 2 entries are ctr's below.
        const ociTyped = shipped.filter((fixture) => fixture.artifact.mediaType.includes(".oci."));
        expect(ociTyped.length).toBeGreaterThan(2);
        for (const fixture of ociTyped) {
            const raw = runCommand("skopeo", [
                ...["inspect", "--raw"],
                `oci:${everythingDir()}:${byTag(fixture)}`,
            ]);
            expect(sha256(Buffer.from(raw))).toBe(digestOf(fixture));
            const out = path.join(workDir, "skopeo-out");
            runCommand("skopeo", [
                ...["copy", "--quiet"],
                `oci-archive:${bundleTar()}:${byTag(fixture)}`,
                `dir:${out}`,
            ]);
            // skopeo checked each blob against its digest; the platform manifest is the same bytes.
            const platformManifest =
                fixture.artifact.children[0]?.manifest ?? fixture.artifact.manifest;
            expect(readFileSync(path.join(out, "manifest.json"))).toEqual(platformManifest.bytes);
            rmSync(out, { recursive: true, force: true });
        }
        // containerd imports every image of the tar under its full name, checking each blob.
        const containerd = await Containerd.start();
        try {
            await containerd.ctr("default", "images", "import", bundleTar());
            const listed = (await containerd.ctr("default", "images", "ls"))
                .split("\n")
                .slice(1)
                .filter(Boolean)
                .map((line) => line.trim().split(/\s+/))
                .map(([name, , digest]) => `${name} ${digest}`);
            expect(listed.sort()).toEqual(
                shipped.map((fixture) => `${byTag(fixture)} ${digestOf(fixture)}`).sort(),
            );
        } finally {
            await containerd.stop();
        }
    });

    test("export --format talos-cache: Talos's cache-serve lookup serves each image by tag, with ns and without, digest for digest", async () => {
        const talosImages = [multi, ...shipped.filter((fixture) => fixture !== multi).slice(0, 3)];
        const run = await tool(
            "export",
            talosCacheDir(),
            "--format",
            "talos-cache",
            "--images",
            talosImages.map(byTag).join(","),
        );
        expect(run.code).toBe(0);
        console.log(
            `$ npm run export -- talos-cache --format talos-cache --images …\n${run.stdout}`,
        );
        // The flat layout: configs and layers by digest; manifests by tag and by digest. Of the
        // multi-platform index, this machine's platform only (as cache-create --platform).
        const amd64 = multi.artifact.children[0];
        const arm64 = multi.artifact.children[1];
        const repository = path.join(
            talosCacheDir(),
            "manifests",
            multi.registry,
            multi.repository,
        );
        expect(readFileSync(path.join(repository, "reference", multi.tag))).toEqual(
            multi.artifact.manifest.bytes,
        );
        expect(readdirSync(path.join(repository, "digest")).sort()).toEqual(
            [multi.artifact.manifest.digest, amd64.manifest.digest]
                .map((digest) => digest.replace("sha256:", "sha256-"))
                .sort(),
        );
        const blobFiles = readdirSync(path.join(talosCacheDir(), "blob"));
        expect(blobFiles).toContain(amd64.blobs[0].digest.replace("sha256:", "sha256-"));
        expect(blobFiles).not.toContain(arm64.blobs[0].digest.replace("sha256:", "sha256-"));

        const serve = await TalosCacheServe.start(talosCacheDir());
        const containerd = await Containerd.start();
        try {
            // containerd asks a mirror with ?ns=<registry>, as a Talos node asks its registryd.
            const hostsDir = writeHostsDir(
                path.join(workDir, "talos-hosts"),
                Object.fromEntries(
                    registries.map((registry) => [
                        registry,
                        `server = "${closedLoopbackServer}"\n\n[host."${serve.url}"]\n  capabilities = ["pull", "resolve"]\n`,
                    ]),
                ),
            );
            for (const fixture of talosImages) {
                const pulled = await containerd.pull("default", byTag(fixture), hostsDir);
                expect(pulled.digest).toBe(digestOf(fixture));
            }
            expect(serve.requests).toContain(
                `HEAD /v2/${multi.repository}/manifests/${multi.tag}?ns=${multi.registry} 200`,
            );
            // Without ns, registryd finds the registry folder that holds the name.
            const [first] = talosImages;
            const response = await fetch(
                `${serve.url}/v2/${first.repository}/manifests/${first.tag}`,
            );
            expect(response.status).toBe(200);
            expect(response.headers.get("docker-content-digest")).toBe(digestOf(first));
            console.log(
                `talosctl image cache-serve (stand-in) of the export: ${byTag(first)} -> ${response.headers.get("docker-content-digest")}; containerd pulled ${talosImages.length} images through it, digest for digest`,
            );
        } finally {
            await containerd.stop();
            await serve.stop();
        }
        // For the air gap below: a Talos cache of an image its caches will lack.
        expect(
            (
                await tool(
                    "export",
                    talosExtraDir(),
                    "--format",
                    "talos-cache",
                    "--images",
                    byTag(talosOnly),
                )
            ).code,
        ).toBe(0);
    });

    test("export --format talos-cache-oci: one image for this platform whose gzipped layer is the flat tree", async () => {
        const run = await tool(
            "export",
            talosOciDir(),
            "--format",
            "talos-cache-oci",
            "--images",
            byTag(multi),
        );
        expect(run.code).toBe(0);
        const layout = JSON.parse(readFileSync(path.join(talosOciDir(), "index.json"), "utf8"));
        expect(layout.manifests).toHaveLength(1);
        expect(layout.manifests[0].platform).toEqual({
            os: "linux",
            architecture: hostArchitecture(),
        });
        const blob = (digest: string) =>
            readFileSync(path.join(talosOciDir(), "blobs", "sha256", digest.slice(7)));
        const manifest = JSON.parse(blob(layout.manifests[0].digest).toString("utf8"));
        expect(manifest.layers).toHaveLength(1);
        expect(manifest.layers[0].mediaType).toBe("application/vnd.oci.image.layer.v1.tar+gzip");
        const tree = path.join(workDir, "talos-oci-tree");
        mkdirSync(tree);
        const layerFile = path.join(workDir, "talos-oci-layer.tar.gz");
        writeFileSync(layerFile, blob(manifest.layers[0].digest));
        runCommand("tar", ["-xzf", layerFile, "-C", tree]);
        const config = JSON.parse(blob(manifest.config.digest).toString("utf8"));
        expect(config.rootfs.diff_ids).toEqual([
            sha256(execFileSync("gzip", ["-dc", layerFile], { maxBuffer: 1 << 30 })),
        ]);
        const serve = await TalosCacheServe.start(tree);
        try {
            const response = await fetch(
                `${serve.url}/v2/${multi.repository}/manifests/${multi.tag}?ns=${multi.registry}`,
            );
            expect(response.headers.get("docker-content-digest")).toBe(digestOf(multi));
            const child = multi.artifact.children[0];
            const layer = await fetch(
                `${serve.url}/v2/${multi.repository}/blobs/${child.blobs[0].digest}?ns=${multi.registry}`,
            );
            expect(sha256(Buffer.from(await layer.arrayBuffer()))).toBe(child.blobs[0].digest);
        } finally {
            await serve.stop();
        }
    });

    test("an image the caches do not hold is not exported, and nothing is written", async () => {
        const file = path.join(workDir, "missing.tar");
        const run = await tool("export", file, "--images", byTag(skopeoMade));
        expect(run.code).toBe(1);
        expect(run.stderr).toContain(`${byTag(skopeoMade)}: not in the cache; nothing was written`);
        expect(existsSync(file)).toBe(false);
        expect(readdirSync(workDir).filter((name) => name.includes(".partial-"))).toEqual([]);
        // Bundles of images the air-gapped caches will lack, for the bad inputs there.
        expect((await tool("export", extraDir(), "--images", byTag(extra))).code).toBe(0);
        expect((await tool("export", path.join(workDir, "big"), "--images", byTag(big))).code).toBe(
            0,
        );
    });

    test("verify --deep names a corrupt layer and the image it breaks; --repair lets the next pull fetch it whole", async () => {
        const [flannel] = shipped;
        const own = flannel.artifact.blobs.at(-1)!;
        const cache = stack.cacheName(flannel.registry);
        const hex = own.digest.slice(7);
        // 16 bytes overwritten in place, as a bad sector would.
        docker(
            ...["exec", cache, "sh", "-c"],
            `printf 'corrupt-16-bytes' | dd of=${registryStorageRoot}/blobs/sha256/${hex.slice(0, 2)}/${hex}/data bs=1 seek=4096 conv=notrunc 2>/dev/null`,
        );
        // The front's copy from prewarm expires (it keeps one a minute); from then on every pull fails.
        const frontCopy = frontCacheFile(
            stack.ports[flannel.registry],
            `/v2/${flannel.repository}/blobs/${own.digest}`,
        );
        docker("exec", stack.frontName, "rm", "-f", frontCopy);
        await expect(stack.pullOnNewNode([byTag(flannel)])).rejects.toThrow(/digest/i);
        // What the front keeps now is the corrupt copy.
        expect(() => docker("exec", stack.frontName, "ls", frontCopy)).not.toThrow();

        const checked = await tool("verify", "--deep", "--images", byTag(flannel));
        expect(checked.code).toBe(1);
        expect(checked.stdout.split("\n")[0]).toBe(
            `CORRUPT  ${own.digest}  in the ghcr.io cache; breaks ${byTag(flannel)}`,
        );
        console.log(`$ npm run verify -- --deep --images ${byTag(flannel)}\n${checked.stdout}`);

        const servedBefore = stack.upstreams.timesServed(flannel.registry).get(own.digest) ?? 0;
        const repaired = await tool("verify", "--deep", "--repair", "--images", byTag(flannel));
        expect(repaired.code).toBe(1);
        expect(repaired.stdout).toContain(
            `Removed 1 corrupt blob from the ghcr.io cache; ${byTag(flannel)} will be fetched again from`,
        );
        console.log(`$ npm run verify -- --deep --repair --images …\n${repaired.stdout}`);
        expect(() => docker("exec", stack.frontName, "ls", frontCopy)).toThrow();

        expect(await stack.pullOnNewNode([byTag(flannel)])).toEqual([digestOf(flannel)]);
        expect(stack.upstreams.timesServed(flannel.registry).get(own.digest)).toBe(
            servedBefore + 1,
        );
        const whole = await tool("verify", "--deep", "--images", byTag(flannel), "--json");
        expect(whole.code).toBe(0);
        expect(json(whole).deep.findings).toEqual([]);
        const statusRun = await tool("status", "--json");
        // The whole run on a mismatch: stderr says why when stdout is empty.
        expect(statusRun).toMatchObject({ code: 0, stdout: expect.stringContaining('"caches"') });
        const status = json(statusRun);
        const ghcr = status.caches.find((c: any) => c.registry === "ghcr.io");
        expect(ghcr.lastCheck).toMatchObject({ corrupt: [], missing: [], repaired: [] });
    });

    test("import refuses, before writing, while a cache is storing a pull in flight", async () => {
        const cache = stack.cacheName("registry.k8s.io");
        const pull = stack.pullOnNewNode([byTag(slow)]);
        await waitFor("a live partial upload", 30_000, async () =>
            docker(
                "exec",
                cache,
                "find",
                registryStorageRoot,
                "-path",
                "*/_uploads/*",
                "-name",
                "data",
            )
                ? true
                : undefined,
        );
        const before = storageListing("registry.k8s.io");
        const run = await tool("import", extraDir());
        if (run.code !== 2) console.log(run);
        expect(run.code).toBe(2);
        expect(run.stderr).toMatch(
            new RegExp(
                `^error: ${extraDir()}: the registry.k8s.io cache is storing a pull in flight \\(.*\\); import once it is done\\n$`,
            ),
        );
        expect(await pull).toEqual([digestOf(slow)]);
        // The pull stored its image; nothing else changed.
        expect(storageListing("registry.k8s.io")).toContain(before.split("\n")[0]);
    });
});

describe("on a host that has never had a network", () => {
    beforeAll(async () => {
        await stack.destroy();
        expect(docker("volume", "ls", "--quiet", "--filter", `name=${stack.id}-`)).toBe("");
        for (const registry of registries) stack.upstreams.stop(registry);
        // The ghcr.io cache gets a 16 MiB disk.
        docker(
            ...["volume", "create", "--driver", "local", "--opt", "type=tmpfs"],
            ...["--opt", "device=tmpfs", "--opt", "o=size=16m", stack.cacheName("ghcr.io")],
        );
    });

    let requestsBefore: number[];

    test("up with importFrom and mode offline: new nodes pull every image, and no upstream sees a request", async () => {
        requestsBefore = registries.map((registry) => stack.upstreams.requests(registry));
        await stack.up({ keepCache: false, mode: "offline", importFrom: bundleTar() }, upstreams);
        const imported = stack.commands.runs.filter((run) =>
            run.command.includes("npm run --silent import"),
        );
        expect(imported).toHaveLength(1);
        expect(imported[0].stdout).toContain(
            `Imported ${shipped.length} of ${shipped.length} images`,
        );
        console.log(`pulumi up (import-bundle):\n${imported[0].stdout}`);
        // status and prune see imported images as they see pulled ones.
        const status = json(await tool("status", "--json"));
        expect(status.caches.reduce((sum: number, c: any) => sum + c.images, 0)).toBe(
            shipped.length,
        );
        const pruned = json(await tool("prune", "--dry-run", "--to", "0B", "--json"));
        expect(pruned.removed.map((r: any) => r.image).sort()).toEqual(shipped.map(byTag).sort());

        expect(await stack.pullOnNewNode(shipped.map(byTag))).toEqual(shipped.map(digestOf));
        expect(registries.map((registry) => stack.upstreams.requests(registry))).toEqual(
            requestsBefore,
        );
        const deep = await tool("verify", "--deep", "--images", "all", "--json");
        expect(deep.code).toBe(0);
        expect(json(deep).images).toHaveLength(shipped.length);
    });

    test("importing the same bundle again changes nothing, and up does not run it again", async () => {
        const before = storageListings();
        const again = await tool("import", bundleTar());
        expect(again.code).toBe(0);
        expect(again.stdout).toContain(`Imported 0 of ${shipped.length} images`);
        expect(storageListings()).toEqual(before);
        const runs = stack.commands.runs.length;
        await stack.up({ keepCache: false, mode: "offline", importFrom: bundleTar() }, upstreams);
        expect(stack.commands.runs.length).toBe(runs);
    });

    test("import --dry-run lists what it would write, and writes nothing", async () => {
        const before = storageListings();
        const run = await tool("import", skopeoDir(), "--dry-run", "--json");
        expect(run.code).toBe(0);
        const report = json(run);
        expect(report).toMatchObject({ ok: true, dryRun: true });
        expect(report.images).toEqual([
            expect.objectContaining({ image: byTag(skopeoMade), status: "imported" }),
        ]);
        expect(report.sentBytes).toBeGreaterThan(0);
        expect(storageListings()).toEqual(before);
        const table = await tool("import", skopeoDir(), "--dry-run");
        expect(table.stdout).toContain(`would import  ${byTag(skopeoMade)}`);
        expect(table.stdout).toContain("nothing was written (--dry-run)");
    });

    test("a layout skopeo made imports, and serves by tag", async () => {
        const run = await tool("import", skopeoDir());
        expect(run.code).toBe(0);
        const layout = JSON.parse(readFileSync(path.join(skopeoDir(), "index.json"), "utf8"));
        expect(await stack.pullOnNewNode([byTag(skopeoMade)])).toEqual([
            layout.manifests[0].digest,
        ]);
        expect(registries.map((registry) => stack.upstreams.requests(registry))).toEqual(
            requestsBefore,
        );
    });

    /** A copy of the extra bundle, changed by `spoil`. */
    function spoiled(name: string, spoil: (dir: string) => void): string {
        const dir = path.join(workDir, name);
        cpSync(extraDir(), dir, { recursive: true });
        spoil(dir);
        return dir;
    }
    const layerFile = (dir: string) =>
        path.join(dir, "blobs", "sha256", extra.artifact.blobs[1].digest.slice(7));

    test.each([
        ["a missing bundle", () => path.join(workDir, "nowhere.tar"), "no such file or directory"],
        [
            "a truncated tar",
            () => {
                const file = path.join(workDir, "truncated.tar");
                runCommand("tar", ["-cf", file, "-C", extraDir(), "."]);
                truncateSync(file, Math.floor(statSync(file).size / 2));
                return file;
            },
            "truncated tar",
        ],
        [
            "a blob whose digest does not match",
            () =>
                spoiled("bad-digest", (dir) => {
                    const bytes = readFileSync(layerFile(dir));
                    bytes.write("corrupt-16-bytes", 4096);
                    writeFileSync(layerFile(dir), bytes);
                }),
            `blob ${extra.artifact.blobs[1].digest} does not match its digest`,
        ],
        [
            "an index naming a blob that is not there",
            () => spoiled("missing-blob", (dir) => rmSync(layerFile(dir))),
            `${byTag(extra)}: blob ${extra.artifact.blobs[1].digest} is named but not in the bundle`,
        ],
        [
            "an image for a registry without a cache",
            () =>
                spoiled("no-cache", (dir) => {
                    const file = path.join(dir, "index.json");
                    writeFileSync(
                        file,
                        readFileSync(file, "utf8").replaceAll("registry.k8s.io/", "quay.io/"),
                    );
                }),
            "quay.io/pullthrough/extra:v1 is for quay.io, which has no cache",
        ],
        [
            "a bundle bigger than the free disk",
            () => path.join(workDir, "big"),
            "the ghcr.io cache would need",
        ],
    ])(
        "%s: one line naming the file and the cause; the caches serve what they served",
        async (_, make, cause) => {
            const file = make();
            const before = storageListings();
            const run = await tool("import", file);
            expect(run.code).toBe(2);
            console.log(`$ npm run import -- ${path.basename(file)}\n${run.stderr}`);
            const lines = run.stderr.trimEnd().split("\n");
            expect(lines).toHaveLength(1);
            expect(lines[0]).toContain(`error: ${file}: `);
            expect(lines[0]).toContain(cause);
            expect(storageListings()).toEqual(before);
            expect(await stack.pullOnNewNode([byTag(shipped[0])])).toEqual([digestOf(shipped[0])]);
        },
    );

    test("a killed import leaves the caches serving what they served; the next one completes", async () => {
        // A docker CLI first on PATH that holds back the import's move into place: the import is
        // killed with every byte staged in the volumes and nothing moved yet.
        const wrapperDir = path.join(workDir, "held-docker");
        mkdirSync(wrapperDir, { recursive: true });
        const realDocker = runCommand("sh", ["-c", "command -v docker"]).trim();
        writeFileSync(
            path.join(wrapperDir, "docker"),
            `#!/bin/sh\ncase "$*" in *"place()"*) sleep 120 ;; esac\nexec ${realDocker} "$@"\n`,
            { mode: 0o755 },
        );
        const file = path.join(workDir, "outputs.json");
        writeFileSync(file, JSON.stringify(outputs()));
        const before = registries.map((registry) => storageListing(registry, "repositories"));
        const blobsBefore = storageListing("registry.k8s.io", "blobs");
        const child: ChildProcess = spawn(
            "npx",
            ["tsx", "tools/cli.ts", "import", "--outputs", file, extraDir()],
            {
                cwd: repoRoot,
                detached: true,
                stdio: "ignore",
                env: { ...process.env, PATH: `${wrapperDir}:${process.env.PATH}` },
            },
        );
        const cache = stack.cacheName("registry.k8s.io");
        await waitFor("the import's blobs to be staged", 60_000, async () =>
            docker("exec", cache, "find", importStaging, "-name", "data").split("\n").length >= 2
                ? true
                : undefined,
        );
        // The stream is whole once its last file, the tag's index link, is there.
        await waitFor("the whole stream", 60_000, async () =>
            docker("exec", cache, "find", importStaging, "-path", "*/tags/*/index/*/link")
                ? true
                : undefined,
        );
        process.kill(-child.pid!, "SIGKILL");
        await sleep(500);
        // Every repository is as it was: nothing the killed import sent is served.
        expect(registries.map((registry) => storageListing(registry, "repositories"))).toEqual(
            before,
        );
        await expect(stack.pullOnNewNode([byTag(extra)])).rejects.toThrow();

        const done = await tool("import", extraDir());
        expect(done.code).toBe(0);
        expect(await stack.pullOnNewNode([byTag(extra)])).toEqual([digestOf(extra)]);
        expect(docker("exec", cache, "find", importStaging, "-mindepth", "1")).toBe("");
        // The blob store gained the image's blobs and nothing else.
        const gained = storageListing("registry.k8s.io", "blobs")
            .split("\n")
            .filter((line) => !blobsBefore.includes(line.split(" ")[0]))
            .map((line) => `sha256:${line.split("/")[3]}`);
        expect(gained.sort()).toEqual(
            [extra.artifact.manifest, ...extra.artifact.blobs].map((blob) => blob.digest).sort(),
        );
    });

    test("a flat Talos image cache imports, and serves by tag", async () => {
        const run = await tool("import", talosExtraDir());
        expect(run.code).toBe(0);
        expect(run.stdout).toContain(`imported  ${byTag(talosOnly)}`);
        expect(await stack.pullOnNewNode([byTag(talosOnly)])).toEqual([digestOf(talosOnly)]);
        expect(registries.map((registry) => stack.upstreams.requests(registry))).toEqual(
            requestsBefore,
        );
    });
});
