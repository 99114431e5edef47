/**
 * `npm run prewarm`, `npm run verify` and `pullthrough:prewarm` on the real engine: the CLI runs
 * as a user runs it (tsx, exit codes, --json), against caches the program declared.
 */
import { parseImageReference } from "../../core/image-reference";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { hostPlatform } from "../../core/images";
import { Containerd } from "../../harness/containerd";
import {
    countLogLines,
    docker,
    dockerApi,
    freePort,
    waitFor,
    waitUntilRestartedHealthy,
} from "../../harness/docker";
import { ImageArtifact, image, layer } from "../../harness/oci";
import { TestStack } from "../../harness/stack";
import { talosctlStandIn } from "../../harness/talosctl";
import {
    FixtureImage,
    byDigest,
    byTag,
    fixtureImages,
    nodeImageThroughCache,
    talosLikeImages,
    talosNodeImage,
} from "../../harness/upstreams";
import { ToolRun, runTool } from "../../harness/tools";
import { SimulatedWan } from "../../harness/wan";

jest.setTimeout(300_000);

const registries = ["docker.io", "registry.k8s.io", "ghcr.io"];
const fixtures = fixtureImages();
const talosImages = talosLikeImages();
const nodeImage = talosNodeImage("v1.12.1");
/** 3 × 24 MB, read through a 200 Mbit/s link: seconds of transfer, so a crash lands mid-way. */
const big: FixtureImage = {
    registry: "docker.io",
    repository: "library/big",
    tag: "v1",
    artifact: image([1, 2, 3].map((n) => layer(`big-${n}`, 24 << 20))),
};
const measured: Record<string, number> = {};

let stack: TestStack;
let upstreams: TestStack["upstreams"];
let workDir: string;

const cacheName = (registry: string) => stack.cacheName(registry);
const current = () => stack.run;

/** Runs `npm run <command>` as a user would, against the current stack's outputs and `images`. */
function cli(command: "prewarm" | "verify", images: string[], ...args: string[]): Promise<ToolRun> {
    const outputs = { mirrors: current().outputs.mirrors, prewarmImages: images };
    return runTool(command, outputs, workDir, ...args);
}

const json = (run: ToolRun) => JSON.parse(run.stdout);

/** Runs `work` while the stack outputs send this host to `endpoint` for `registry`'s cache. */
async function withHostEndpoint<T>(
    registry: string,
    endpoint: string,
    work: () => Promise<T>,
): Promise<T> {
    const mirror = (current().outputs.mirrors as Record<string, { hostEndpoint: string }>)[
        registry
    ];
    const saved = mirror.hostEndpoint;
    mirror.hostEndpoint = endpoint;
    try {
        return await work();
    } finally {
        mirror.hostEndpoint = saved;
    }
}
const totalBlobRequests = (since?: Date) =>
    Object.values(upstreams.blobRequestsByRegistry(since)).reduce((a, b) => a + b, 0);
const blobsServedUpstream = () =>
    new Set(registries.flatMap((registry) => [...upstreams.blobsServed(registry)]));
const totalContentRequests = () =>
    registries.reduce((sum, registry) => sum + upstreams.contentRequests(registry), 0);

/** Distinct blobs an image needs on `architecture` (config and layers of the matching manifest). */
function blobsOn(artifact: ImageArtifact, architecture: string): string[] {
    if (artifact.children.length === 0) return artifact.blobs.map((blob) => blob.digest);
    const child = artifact.children.find(
        (candidate) =>
            JSON.parse(candidate.blobs[0].bytes.toString()).architecture === architecture,
    )!;
    return child.blobs.map((blob) => blob.digest);
}

const refs = fixtures.map(byTag);
const canonical = (ref: string) => parseImageReference(ref)!.canonical;

beforeAll(async () => {
    stack = await TestStack.start("prewarm", registries, [
        ...fixtures,
        ...talosImages,
        nodeImage,
        big,
    ]);
    upstreams = stack.upstreams;
    workDir = mkdtempSync(path.join(tmpdir(), "pt-prewarm-"));
    await stack.up();
});

afterAll(async () => {
    await stack?.remove();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    console.log(`prewarm measurements: ${JSON.stringify(measured)}`);
});

test("verify on a half-warm cache names exactly the missing images, exits 1, and never asks the upstream", async () => {
    const [warm, cold] = [refs.slice(0, 2), refs.slice(2)];
    expect((await cli("prewarm", warm)).code).toBe(0);
    const requestsBefore = totalContentRequests();
    const result = await cli("verify", refs, "--json");
    expect(result.code).toBe(1);
    const report = json(result);
    expect(report.ok).toBe(false);
    const status = Object.fromEntries(
        report.images.map((entry: { image: string; present: boolean }) => [
            entry.image,
            entry.present,
        ]),
    );
    expect(status).toEqual(
        Object.fromEntries([
            ...warm.map((ref) => [canonical(ref), true]),
            ...cold.map((ref) => [canonical(ref), false]),
        ]),
    );
    for (const entry of report.images.filter((item: { present: boolean }) => !item.present))
        expect(entry.reason).toMatch(/tag \S+: not in the cache/);
    expect(totalContentRequests()).toBe(requestsBefore);
    // Its read-only views are gone.
    const views: { Labels: Record<string, string> }[] = await dockerApi(
        "GET",
        `/containers/json?all=true&filters=${encodeURIComponent(JSON.stringify({ label: ["pullthrough.view-of"] }))}`,
    );
    expect(
        views.filter((view) =>
            registries.map(cacheName).includes(view.Labels["pullthrough.view-of"]),
        ),
    ).toEqual([]);
});

test("prewarm fetches exactly the host platform's blobs from upstream, and a re-run fetches none", async () => {
    const architecture = hostPlatform().architecture;
    const started = Date.now();
    const first = await cli("prewarm", [...refs, byDigest(fixtures[0])], "--json");
    measured.prewarmSeconds = (Date.now() - started) / 1000;
    expect(first.code).toBe(0);
    expect(json(first).images.every((entry: { ok: boolean }) => entry.ok)).toBe(true);
    expect(blobsServedUpstream()).toEqual(
        new Set(fixtures.flatMap((fixture) => blobsOn(fixture.artifact, architecture))),
    );

    const before = totalBlobRequests();
    const second = await cli("prewarm", refs);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(`Warmed ${refs.length} of ${refs.length} images`);
    expect(totalBlobRequests()).toBe(before);

    const verified = await cli("verify", refs);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toContain(`All ${refs.length} images are in the caches.`);
});

test("--platform warms another architecture of a multi-arch image", async () => {
    const multi = fixtures.find((fixture) => fixture.artifact.children.length > 0)!;
    const other = hostPlatform().architecture === "arm64" ? "amd64" : "arm64";
    expect((await cli("verify", [byTag(multi)], "--platform", `linux/${other}`)).code).toBe(1);
    const before = blobsServedUpstream();
    expect((await cli("prewarm", [byTag(multi)], "--platform", `linux/${other}`)).code).toBe(0);
    expect([...blobsServedUpstream()].filter((digest) => !before.has(digest)).sort()).toEqual(
        blobsOn(multi.artifact, other).sort(),
    );
    expect((await cli("verify", [byTag(multi)], "--platform", `linux/${other}`)).code).toBe(0);
});

test("an unreachable cache or an image without a cache is a clear error (exit 2)", async () => {
    const quay = await cli("verify", ["quay.io/cilium/cilium:v1.16.0"]);
    expect(quay).toMatchObject({
        code: 2,
        stderr: expect.stringContaining("no cache serves quay.io"),
    });

    const down = await withHostEndpoint("docker.io", `http://127.0.0.1:${await freePort()}`, () =>
        cli("prewarm", refs),
    );
    expect(down).toMatchObject({
        code: 2,
        stderr: expect.stringMatching(
            /the docker\.io cache: http:\/\/127\.0\.0\.1:\d+ is unreachable \(ECONNREFUSED\)/,
        ),
    });
});

test("a cache killed mid-prewarm: the re-run completes and verify passes", async () => {
    const cache = cacheName("docker.io");
    const bigRef = byTag(big);
    const { RestartCount: restartsBefore } = await dockerApi("GET", `/containers/${cache}/json`);
    const manifestServed = () =>
        countLogLines(cache, /"GET \/v2\/library\/big\/manifests\/v1\S* HTTP\/1.1" 200/);
    const link = new SimulatedWan({ bitsPerSecond: 200e6, roundTripMs: 2 });
    const linkPort = await link.route("127.0.0.1", "127.0.0.1", stack.ports["docker.io"]);
    let finished = false;
    const interrupted = withHostEndpoint("docker.io", `http://127.0.0.1:${linkPort}`, () =>
        cli("prewarm", [bigRef]),
    ).finally(() => (finished = true));
    try {
        // The manifest has been served, so the blobs are on their way: crash the cache now.
        await waitFor("prewarm to reach the big image's blobs", 60_000, async () =>
            manifestServed() > 0 ? true : undefined,
        );
        process.kill((await dockerApi("GET", `/containers/${cache}/json`)).State.Pid, "SIGKILL");
        expect(finished).toBe(false);
        // Its retries may carry it through the restart, or it reports the failure: either will do.
        measured.interruptedRunExit = (await interrupted).code;
    } finally {
        await link.close();
    }
    await waitUntilRestartedHealthy(cache, restartsBefore);
    const rerun = await cli("prewarm", [bigRef], "--json");
    expect(rerun.code).toBe(0);
    const [rerunImage] = json(rerun).images;
    Object.assign(measured, {
        rerunBytes: rerunImage.transferred,
        rerunSeconds: rerunImage.seconds,
    });
    const verified = await cli("verify", [bigRef, ...refs], "--json");
    expect(verified.code).toBe(0);
    expect(json(verified).images.map((entry: { present: boolean }) => entry.present)).toEqual(
        Array(refs.length + 1).fill(true),
    );
});

test("with prewarm: [talos], up warms the caches before the cluster boots; the boot makes zero upstream blob requests", async () => {
    const containerd = await Containerd.start();
    const state = path.join(workDir, "talos-state");
    try {
        const talosctl = talosctlStandIn("v1.12.1", {
            containerd: containerd.address,
            images: talosImages.map(byTag),
        });
        await stack.destroy();
        const before = totalBlobRequests();
        const cluster = {
            enabled: true,
            provisioner: "docker",
            name: `${stack.id}-talos`,
            state,
            talosctl,
        };
        await stack.up({ prewarm: ["talos"], cluster });
        // The set, and the node image this host's Docker daemon pulls for docker nodes.
        expect(current().outputs.prewarmImages).toEqual(
            [...talosImages, nodeImage].map((fixture) => canonical(byTag(fixture))),
        );

        const [prewarmRun, clusterRun] = stack.commands.runs.slice(-2);
        expect(prewarmRun.command).toBe("npm run --silent prewarm -- --outputs -");
        expect(clusterRun.command).toMatch(/ cluster create docker /);
        expect(clusterRun.stdout.match(/^pulled /gm)).toHaveLength(talosImages.length);
        expect(totalBlobRequests() - before).toBeGreaterThan(0);
        expect(totalBlobRequests(clusterRun.startedAt)).toBe(0);
    } finally {
        await stack.destroy();
        await containerd.stop();
        const pulled = nodeImageThroughCache(stack.ports["ghcr.io"], nodeImage.tag);
        if (docker("images", "--quiet", pulled)) docker("rmi", "--force", pulled);
    }
});
