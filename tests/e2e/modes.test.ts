/**
 * `pullthrough:mode` on the real engine: what a cache does when its upstream is unreachable.
 *
 * Stopping a fixture upstream takes its name off the test network, which is what a cache sees on
 * a plane: the upstream does not answer at all.
 */
import { parseImageReference } from "../../core/image-reference";
import { createServer } from "node:http";
import { AddressInfo } from "node:net";
import { docker, dockerApi, sleep, waitFor } from "../../harness/docker";
import { image, layer } from "../../harness/oci";
import { TestStack } from "../../harness/stack";
import { FixtureImage, byDigest, byTag, fixtureImages } from "../../harness/upstreams";
import { RegistryClient, readImage } from "../../tools/registry-client";

jest.setTimeout(300_000);

const registry = "docker.io";
const cached = fixtureImages().filter((fixture) => fixture.registry === registry);
/** In the upstream, never pulled through the cache before the switch test. */
const neverCached: FixtureImage = {
    registry,
    repository: "library/late",
    tag: "v1",
    artifact: image([layer("late", 64 << 10)]),
};
const timings: Record<string, number> = {};

let stack: TestStack;
let upstreams: TestStack["upstreams"];
let cache: string;

const up = (mode: string, remote = upstreams.get(registry).remote) =>
    stack.up({ mode }, [{ registry, remote, port: stack.ports[registry] }]);

const hostEndpoint = () => `http://127.0.0.1:${stack.ports[registry]}`;

/** Pulls refs as a freshly booted node; resolves to the digests, or rejects. */
const nodePull = (refs: string[]) => stack.pullOnNewNode(refs);

const cachedRefs = cached.flatMap((fixture) => [byTag(fixture), byDigest(fixture)]);
const cachedDigests = cached.flatMap((fixture) => [
    fixture.artifact.manifest.digest,
    fixture.artifact.manifest.digest,
]);

/** What the healthcheck last printed: the mode the cache serves in now. */
async function serving(): Promise<string> {
    const log: { Output: string }[] =
        (await dockerApi("GET", `/containers/${cache}/json`)).State.Health?.Log ?? [];
    return log.at(-1)?.Output.trim() ?? "";
}

async function waitHealthy(timeoutMs: number) {
    await waitFor("the cache to be healthy", timeoutMs, async () =>
        (await dockerApi("GET", `/containers/${cache}/json`)).State.Health?.Status === "healthy"
            ? true
            : undefined,
    );
}

const pushStatus = async () =>
    (await fetch(`${hostEndpoint()}/v2/library/pushed/blobs/uploads/`, { method: "POST" })).status;

beforeAll(async () => {
    stack = await TestStack.start("modes", [registry], [...cached, neverCached]);
    upstreams = stack.upstreams;
    cache = stack.cacheName(registry);
});

afterAll(async () => {
    await stack?.remove();
    console.log(`mode timings (ms): ${JSON.stringify(timings)}`);
});

test("auto with the upstream answering: the cache proxies, and says so", async () => {
    await up("auto");
    expect(await nodePull(cachedRefs)).toEqual(cachedDigests);
    expect(upstreams.blobRequests(registry)).toBeGreaterThan(0);
    expect(await serving()).toBe("proxy");
    expect(docker("logs", cache)).toContain(
        `pullthrough: auto mode: proxying ${upstreams.get(registry).remote}`,
    );
});

test("auto restarted with the upstream unreachable: serves what it holds within seconds, read-only", async () => {
    upstreams.stop(registry);
    const restarted = Date.now();
    docker("restart", "-t", "2", cache);
    await waitFor("the cache to answer", 30_000, async () =>
        (await fetch(`${hostEndpoint()}/v2/`).catch(() => undefined))?.ok ? true : undefined,
    );
    timings.offlineStartToServingMs = Date.now() - restarted;
    expect(await nodePull(cachedRefs)).toEqual(cachedDigests);
    timings.offlineStartToPulledMs = Date.now() - restarted;
    expect(timings.offlineStartToPulledMs).toBeLessThan(30_000);

    expect(await pushStatus()).toBe(405);
    await expect(nodePull([byTag(neverCached)])).rejects.toThrow();
    await waitHealthy(20_000);
    expect(await serving()).toBe("offline");
    expect(docker("logs", cache)).toContain("does not answer");
});

test("auto switches back to proxying by itself once the upstream answers; no cached pull fails across the switch", async () => {
    // A client pull here is the manifest and every blob over HTTP, with this retry budget each.
    const attemptsPerPull = 3;
    const retryDelayMs = 500;
    const client = new RegistryClient(hostEndpoint(), registry);
    const cachedImage = parseImageReference(byDigest(cached[0]))!;
    const failedPulls: string[] = [];
    let pulls = 0;
    let stop = false;
    const pullLoop = (async () => {
        while (!stop) {
            for (let attempt = 1; ; attempt++) {
                try {
                    const content = await readImage(client, cachedImage, [
                        { os: "linux", architecture: "amd64" },
                    ]);
                    for (const blob of content.blobs)
                        await client.fetchBlob(cachedImage.repository, blob.digest);
                    pulls++;
                    await sleep(100);
                    break;
                } catch (error) {
                    if (attempt === attemptsPerPull) {
                        failedPulls.push(String(error));
                        break;
                    }
                    await sleep(retryDelayMs);
                }
            }
        }
    })();
    // Downtime as a client sees it: the longest run of failed /v2/ probes, 10 ms apart.
    let longestGapMs = 0;
    let gapStart: number | undefined;
    const probeLoop = (async () => {
        while (!stop) {
            const ok = (await fetch(`${hostEndpoint()}/v2/`).catch(() => undefined))?.ok;
            if (!ok && gapStart === undefined) gapStart = Date.now();
            if (ok && gapStart !== undefined) {
                longestGapMs = Math.max(longestGapMs, Date.now() - gapStart);
                gapStart = undefined;
            }
            await sleep(10);
        }
    })();

    const back = Date.now();
    let pulled: string[];
    try {
        await upstreams.start(registry);
        await waitFor("the cache to switch to proxy", 60_000, async () =>
            docker("logs", cache).includes("switching to proxy mode") ? true : undefined,
        );
        timings.upstreamBackToSwitchMs = Date.now() - back;
        pulled = await waitFor("the never-cached image to pull", 60_000, async () =>
            nodePull([byTag(neverCached)]).catch(() => undefined),
        );
        timings.upstreamBackToNewImageMs = Date.now() - back;
        await sleep(2_000);
    } finally {
        stop = true;
        await Promise.all([pullLoop, probeLoop]);
    }
    timings.switchGapMs = longestGapMs;

    expect(pulled).toEqual([neverCached.artifact.manifest.digest]);
    expect(timings.upstreamBackToNewImageMs).toBeLessThan(60_000);
    expect(failedPulls).toEqual([]);
    expect(pulls).toBeGreaterThan(0);
    await waitHealthy(20_000);
    expect(await serving()).toBe("proxy");
});

test("offline never sends a request to the upstream, and serves the cache read-only", async () => {
    await stack.destroy();
    const requestsBefore = upstreams.requests(registry);
    await up("offline");
    expect(await serving()).toBe("offline");
    expect(await nodePull(cachedRefs)).toEqual(cachedDigests);
    expect(await pushStatus()).toBe(405);
    await expect(nodePull([`${registry}/library/absent:v1`])).rejects.toThrow();
    await sleep(3_000);
    expect(upstreams.requests(registry)).toBe(requestsBefore);
    expect(docker("logs", cache)).toContain("is never contacted");
});

test("proxy mode proxies or nothing: restarted with no upstream, its registry exits at start and it never serves", async () => {
    await stack.destroy();
    await up("proxy");
    upstreams.stop(registry);
    try {
        const since = new Date();
        docker("restart", "-t", "2", cache);
        await waitFor("the cache to be unhealthy", 60_000, async () =>
            (await dockerApi("GET", `/containers/${cache}/json`)).State.Health?.Status ===
            "unhealthy"
                ? true
                : undefined,
        );
        // The registry exits at start (distribution #4038); the supervisor keeps trying.
        expect(docker("logs", "--since", since.toISOString(), cache)).toContain(
            `pullthrough: registry exited; restarting, proxying ${upstreams.get(registry).remote}`,
        );
        expect((await fetch(`${hostEndpoint()}/v2/`).catch(() => undefined))?.ok).not.toBe(true);
    } finally {
        await upstreams.start(registry);
    }
});

test("auto counts an upstream that answers 401 (it wants a token, as Docker Hub does) as reachable", async () => {
    await stack.destroy();
    const tokenWall = createServer((_request, response) =>
        response
            .writeHead(401, { "WWW-Authenticate": 'Bearer realm="https://auth.example/token"' })
            .end(),
    );
    await new Promise<void>((resolve) => tokenWall.listen(0, upstreams.gateway(), resolve));
    try {
        const remote = `http://${upstreams.gateway()}:${(tokenWall.address() as AddressInfo).port}`;
        await up("auto", remote);
        expect(docker("logs", cache)).toContain(`pullthrough: auto mode: proxying ${remote}`);
        expect(await serving()).toBe("proxy");
    } finally {
        await stack.destroy();
        tokenWall.close();
    }
});
