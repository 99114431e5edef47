/**
 * The program's caches on the real Docker engine, serving a real containerd client.
 *
 * index.ts runs under Pulumi mocks whose Docker resources are applied to the local engine by
 * DockerProviderStandIn. Upstreams are local fixture registries; containerd's `server` fallback
 * points at a closed loopback port, so a broken mirror fails instead of reaching out.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Containerd, withClosedFallback, writeHostsDir } from "./support/containerd";
import { DockerProviderStandIn } from "./support/docker-provider-stand-in";
import { countLogLines, engine, freePort, prepareTestHost, waitFor } from "./support/engine";
import { ProgramRun, runProgram } from "./support/program";
import { FixtureImage, FixtureUpstreams, byDigest, byTag, fixtureImages, localStackConfig } from "./support/upstreams";

jest.setTimeout(240_000);

const registries = ["docker.io", "registry.k8s.io", "ghcr.io"];
const suiteId = `pt-e2e-${process.pid}`;
const images = fixtureImages();
const timings: Record<string, number> = {};

let upstreams: FixtureUpstreams;
let standIn: DockerProviderStandIn;
let hostsDir: string;
let ports: Record<string, number>;
let current: ProgramRun | undefined;

async function up(keepCache = true): Promise<ProgramRun> {
    const started = Date.now();
    current = await runProgram(localStackConfig(`${suiteId}-`, upstreams.upstreamsOn(ports), { keepCache }), { createResource: standIn.createResource });
    timings.lastUpToHealthyMs = Date.now() - started;
    // Nodes read hosts.toml as the program renders it; only the fallback is closed off.
    rmSync(hostsDir, { recursive: true, force: true });
    writeHostsDir(hostsDir, withClosedFallback(current.outputs.containerdHosts as Record<string, string>));
    return current;
}

async function destroy(): Promise<void> {
    await standIn.destroy(current!.resources);
    current = undefined;
}

const cacheName = (registry: string) => `${suiteId}-${registry}`;

/** Pulls every fixture by tag and by digest as a freshly booted node; resolves to ref → digest. */
async function pullAll(): Promise<Map<string, string>> {
    const refs = images.flatMap((image) => [byTag(image), byDigest(image)]);
    const digests = await Containerd.pullOnNewNode(refs, hostsDir);
    return new Map(refs.map((ref, index) => [ref, digests[index]]));
}

function expectUpstreamDigests(digests: Map<string, string>) {
    const expected = new Map(images.flatMap((image: FixtureImage) => [byTag(image), byDigest(image)].map((ref) => [ref, image.artifact.manifest.digest])));
    expect(Object.fromEntries(digests)).toEqual(Object.fromEntries(expected));
}

const cacheBlobResponses = (registry: string) => countLogLines(cacheName(registry), /"GET \/v2\/\S+\/blobs\/sha256:[0-9a-f]{64}\S* HTTP\/1.1" 200/);

async function expectAllHealthy() {
    for (const registry of registries) {
        const state = (await engine("GET", `/containers/${cacheName(registry)}/json`)).State;
        expect({ registry, running: state.Running, health: state.Health?.Status }).toEqual({ registry, running: true, health: "healthy" });
    }
}

beforeAll(async () => {
    const started = Date.now();
    prepareTestHost();
    upstreams = await FixtureUpstreams.start(suiteId, registries);
    await upstreams.seed(images);
    standIn = new DockerProviderStandIn(suiteId);
    hostsDir = mkdtempSync(path.join(tmpdir(), "pt-hosts-"));
    ports = Object.fromEntries(await Promise.all(registries.map(async (registry) => [registry, await freePort()])));
    timings.setupMs = Date.now() - started;
    await up();
    timings.firstUpToHealthyMs = timings.lastUpToHealthyMs;
});

afterAll(async () => {
    await standIn?.removeEverything();
    await upstreams?.remove();
    if (hostsDir) rmSync(hostsDir, { recursive: true, force: true });
    console.log(`real-engine timings (ms): ${JSON.stringify(timings)}`);
});

test("every cache runs healthy with its own volume at /var/lib/registry", async () => {
    await expectAllHealthy();
    for (const registry of registries) {
        const mounts = (await engine("GET", `/containers/${cacheName(registry)}/json`)).Mounts;
        expect(mounts).toEqual([expect.objectContaining({ Type: "volume", Name: cacheName(registry), Destination: "/var/lib/registry" })]);
    }
});

test("registryMirrorFlags and endpoints name the ports the containers publish", async () => {
    const flags = current!.outputs.registryMirrorFlags as string[];
    const mirrors = current!.outputs.mirrors as Record<string, { endpoint: string; hostEndpoint: string }>;
    for (const registry of registries) {
        const published = (await engine("GET", `/containers/${cacheName(registry)}/json`)).NetworkSettings.Ports["5000/tcp"];
        expect(published).toEqual([{ HostIp: "127.0.0.1", HostPort: String(ports[registry]) }]);
        expect(flags[flags.indexOf(`${registry}=${mirrors[registry].endpoint}`) - 1]).toBe("--registry-mirror");
        expect(mirrors[registry].endpoint).toBe(`http://127.0.0.1:${ports[registry]}`);
        expect((await fetch(`${mirrors[registry].hostEndpoint}/v2/`)).status).toBe(200);
    }
});

test("containerd pulls by tag and digest through the caches and gets the upstream's digests", async () => {
    const before = upstreams.blobRequestsByRegistry();
    const started = Date.now();
    expectUpstreamDigests(await pullAll());
    timings.coldPullMs = Date.now() - started;
    const after = upstreams.blobRequestsByRegistry();
    // The cold pull really went upstream, through the caches.
    for (const registry of registries) expect(after[registry]).toBeGreaterThan(before[registry]);
});

test("a second pull makes zero blob requests upstream", async () => {
    const before = upstreams.blobRequestsByRegistry();
    const servedBefore = registries.map(cacheBlobResponses);
    const started = Date.now();
    expectUpstreamDigests(await pullAll());
    timings.warmPullMs = Date.now() - started;
    expect(upstreams.blobRequestsByRegistry()).toEqual(before);
    // ...and the client did fetch every blob again, from the caches.
    registries.forEach((registry, i) => expect(cacheBlobResponses(registry)).toBeGreaterThan(servedBefore[i]));
});

test("a push to a cache is refused", async () => {
    const { hostEndpoint } = (current!.outputs.mirrors as Record<string, { hostEndpoint: string }>)["docker.io"];
    const response = await fetch(`${hostEndpoint}/v2/library/pushed/blobs/uploads/`, { method: "POST" });
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(await response.text()).toContain("UNSUPPORTED");
});

// A crash, not `docker kill`: Docker counts a kill as a manual stop and leaves the container down
// until the daemon restarts (documented restart-policy behaviour).
test("a crashed cache comes back by itself and serves its cache again", async () => {
    const container = cacheName("docker.io");
    const { RestartCount: restartsBefore, State: state } = await engine("GET", `/containers/${container}/json`);
    process.kill(state.Pid, "SIGKILL");
    const started = Date.now();
    await waitFor("the crashed cache to restart healthy", 60_000, async () => {
        const inspected = await engine("GET", `/containers/${container}/json`);
        return inspected.RestartCount > restartsBefore && inspected.State.Health?.Status === "healthy" ? true : undefined;
    });
    timings.restartAfterCrashMs = Date.now() - started;
    const before = upstreams.blobRequestsByRegistry();
    expectUpstreamDigests(await pullAll());
    expect(upstreams.blobRequestsByRegistry()).toEqual(before);
});

test("with the upstreams stopped, cached images still pull by tag and by digest", async () => {
    registries.forEach((registry) => upstreams.stop(registry));
    try {
        expectUpstreamDigests(await pullAll());
    } finally {
        for (const registry of registries) await upstreams.start(registry);
    }
});

test("destroy with keepCache keeps the volumes; the next up serves from them with zero upstream blob requests", async () => {
    await destroy();
    for (const registry of registries) {
        await expect(engine("GET", `/containers/${cacheName(registry)}/json`)).rejects.toThrow(/HTTP 404/);
        expect((await engine("GET", `/volumes/${cacheName(registry)}`)).Name).toBe(cacheName(registry));
    }
    await up(true);
    await expectAllHealthy();
    const before = upstreams.blobRequestsByRegistry();
    expectUpstreamDigests(await pullAll());
    expect(upstreams.blobRequestsByRegistry()).toEqual(before);
});

test("destroy with keepCache false removes the volumes", async () => {
    await destroy();
    await up(false);
    await destroy();
    for (const registry of registries) {
        await expect(engine("GET", `/volumes/${cacheName(registry)}`)).rejects.toThrow(/HTTP 404/);
    }
});
