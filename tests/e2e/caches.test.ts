/**
 * The program's caches on the real Docker engine, serving a real containerd client.
 *
 * index.ts runs under Pulumi mocks whose Docker resources are applied to the local engine by
 * DockerProviderStandIn. Upstreams are local fixture registries; containerd's `server` fallback
 * points at a closed loopback port, so a broken mirror fails instead of reaching out.
 */
import { dockerApi, waitUntilRestartedHealthy } from "../../harness/docker";
import { TestStack } from "../../harness/stack";
import { FixtureImage, byDigest, byTag, fixtureImages } from "../../harness/upstreams";

jest.setTimeout(240_000);

const registries = ["docker.io", "registry.k8s.io", "ghcr.io"];
const images = fixtureImages();
const timings: Record<string, number> = {};

let stack: TestStack;

async function up(keepCache = true) {
    const started = Date.now();
    await stack.up({ keepCache });
    timings.lastUpToHealthyMs = Date.now() - started;
    return stack.run;
}

const cacheName = (registry: string) => stack.cacheName(registry);
const upstreamBlobRequests = () => stack.upstreams.blobRequestsByRegistry();

/** Pulls every fixture by tag and by digest as a freshly booted node; resolves to ref → digest. */
async function pullAll(): Promise<Map<string, string>> {
    const refs = images.flatMap((image) => [byTag(image), byDigest(image)]);
    const digests = await stack.pullOnNewNode(refs);
    return new Map(refs.map((ref, index) => [ref, digests[index]]));
}

function expectUpstreamDigests(digests: Map<string, string>) {
    const expected = new Map(
        images.flatMap((image: FixtureImage) =>
            [byTag(image), byDigest(image)].map((ref) => [ref, image.artifact.manifest.digest]),
        ),
    );
    expect(Object.fromEntries(digests)).toEqual(Object.fromEntries(expected));
}

async function expectAllHealthy() {
    for (const container of [...registries.map(cacheName), stack.frontName]) {
        const state = (await dockerApi("GET", `/containers/${container}/json`)).State;
        expect({ container, running: state.Running, health: state.Health?.Status }).toEqual({
            container,
            running: true,
            health: "healthy",
        });
    }
}

beforeAll(async () => {
    const started = Date.now();
    stack = await TestStack.start("e2e", registries, images);
    timings.setupMs = Date.now() - started;
    await up();
    timings.firstUpToHealthyMs = timings.lastUpToHealthyMs;
});

afterAll(async () => {
    await stack?.remove();
    console.log(`real-engine timings (ms): ${JSON.stringify(timings)}`);
});

test("every cache and the front run healthy; each cache has its own volume at /var/lib/registry", async () => {
    await expectAllHealthy();
    for (const registry of registries) {
        const mounts = (await dockerApi("GET", `/containers/${cacheName(registry)}/json`)).Mounts;
        expect(mounts).toEqual([
            expect.objectContaining({
                Type: "volume",
                Name: cacheName(registry),
                Destination: "/var/lib/registry",
            }),
        ]);
    }
});

test("registryMirrorFlags and endpoints name the ports the front publishes; registries publish none", async () => {
    const flags = stack.run.outputs.registryMirrorFlags as string[];
    const mirrors = stack.run.outputs.mirrors as Record<
        string,
        { endpoint: string; hostEndpoint: string }
    >;
    const published = (await dockerApi("GET", `/containers/${stack.frontName}/json`))
        .NetworkSettings.Ports;
    for (const registry of registries) {
        const port = stack.ports[registry];
        expect(published[`${port}/tcp`]).toEqual([{ HostIp: "127.0.0.1", HostPort: String(port) }]);
        const bindings = (await dockerApi("GET", `/containers/${cacheName(registry)}/json`))
            .HostConfig.PortBindings;
        expect(bindings).toEqual({});
        expect(flags[flags.indexOf(`${registry}=${mirrors[registry].endpoint}`) - 1]).toBe(
            "--registry-mirror",
        );
        expect(mirrors[registry].endpoint).toBe(`http://127.0.0.1:${stack.ports[registry]}`);
        expect((await fetch(`${mirrors[registry].hostEndpoint}/v2/`)).status).toBe(200);
    }
});

test("containerd pulls by tag and digest through the caches and gets the upstream's digests", async () => {
    const before = upstreamBlobRequests();
    const started = Date.now();
    expectUpstreamDigests(await pullAll());
    timings.coldPullMs = Date.now() - started;
    const after = upstreamBlobRequests();
    // The cold pull really went upstream, through the caches.
    for (const registry of registries) expect(after[registry]).toBeGreaterThan(before[registry]);
});

test("a second pull makes zero blob requests upstream", async () => {
    const before = upstreamBlobRequests();
    const servedBefore = registries.map((registry) => stack.blobsServedBy(registry));
    const started = Date.now();
    expectUpstreamDigests(await pullAll());
    timings.warmPullMs = Date.now() - started;
    expect(upstreamBlobRequests()).toEqual(before);
    // ...and the client did fetch every blob again, from the caches.
    registries.forEach((registry, i) =>
        expect(stack.blobsServedBy(registry)).toBeGreaterThan(servedBefore[i]),
    );
});

test("a push to a cache is refused", async () => {
    const { hostEndpoint } = (
        stack.run.outputs.mirrors as Record<string, { hostEndpoint: string }>
    )["docker.io"];
    const response = await fetch(`${hostEndpoint}/v2/library/pushed/blobs/uploads/`, {
        method: "POST",
    });
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(await response.text()).toContain("UNSUPPORTED");
});

// A crash, not `docker kill`: Docker counts a kill as a manual stop and leaves the container down
// until the daemon restarts (documented restart-policy behaviour).
test("a crashed cache comes back by itself and serves its cache again", async () => {
    const container = cacheName("docker.io");
    const { RestartCount: restartsBefore, State: state } = await dockerApi(
        "GET",
        `/containers/${container}/json`,
    );
    process.kill(state.Pid, "SIGKILL");
    const started = Date.now();
    await waitUntilRestartedHealthy(container, restartsBefore);
    timings.restartAfterCrashMs = Date.now() - started;
    const before = upstreamBlobRequests();
    expectUpstreamDigests(await pullAll());
    expect(upstreamBlobRequests()).toEqual(before);
});

test("with the upstreams stopped, cached images still pull by tag and by digest", async () => {
    registries.forEach((registry) => stack.upstreams.stop(registry));
    try {
        expectUpstreamDigests(await pullAll());
    } finally {
        for (const registry of registries) await stack.upstreams.start(registry);
    }
});

test("destroy with keepCache keeps the volumes; the next up serves from them with zero upstream blob requests", async () => {
    await stack.destroy();
    for (const registry of registries) {
        await expect(dockerApi("GET", `/containers/${cacheName(registry)}/json`)).rejects.toThrow(
            /HTTP 404/,
        );
        expect((await dockerApi("GET", `/volumes/${cacheName(registry)}`)).Name).toBe(
            cacheName(registry),
        );
    }
    await up(true);
    await expectAllHealthy();
    const before = upstreamBlobRequests();
    expectUpstreamDigests(await pullAll());
    expect(upstreamBlobRequests()).toEqual(before);
});

test("destroy with keepCache false removes the volumes, and destroy always removes the front and the network", async () => {
    await stack.destroy();
    await up(false);
    await stack.destroy();
    for (const registry of registries) {
        await expect(dockerApi("GET", `/volumes/${cacheName(registry)}`)).rejects.toThrow(
            /HTTP 404/,
        );
    }
    await expect(dockerApi("GET", `/containers/${stack.frontName}/json`)).rejects.toThrow(
        /HTTP 404/,
    );
    await expect(dockerApi("GET", `/networks/${stack.id}-net`)).rejects.toThrow(/HTTP 404/);
});
