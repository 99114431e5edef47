/**
 * Cold pulls through the coalescing front on the real engine: however many clients ask for a blob
 * at once, the upstream serves it once; waiters get the whole blob or a clean failure; tags stay
 * live. The caches run registry:3, whose proxy alone would fetch a blob once per concurrent
 * client (distribution #3969). The fixture upstream sits behind the simulated WAN link, so every
 * fetch takes long enough for the clients to overlap.
 */
import { parseImageReference } from "../../core/image-reference";
import { createHash } from "node:crypto";
import { lockTimeoutSeconds } from "../../core/front";
import { docker } from "../../harness/docker";
import { FixtureImage, byTag } from "../../harness/upstreams";
import { ImageArtifact, image, layer, push } from "../../harness/oci";
import { TestStack } from "../../harness/stack";
import { SimulatedWan } from "../../harness/wan";
import { viewClient, withCacheViews } from "../../tools/cache-view";
import { readFrontAccess } from "../../tools/front";
import { dockerCli } from "../../tools/docker";
import { RegistryClient, readImage } from "../../tools/registry-client";
import { MirrorsOutput, cacheEndpoints } from "../../core/render";
import { prewarmUntilStored, routeImages } from "../../tools/warm";

jest.setTimeout(300_000);

const registry = "docker.io";
const multiLayer = (repository: string, mib: number): FixtureImage => ({
    registry,
    repository,
    tag: "v1",
    artifact: image([1, 2, 3].map((n) => layer(`${repository}-${n}`, mib << 20))),
});
const forThree = multiLayer("library/three", 6);
const forEight = multiLayer("library/eight", 4);
const slow = multiLayer("library/slow", 8);
const cut = multiLayer("library/cut", 8);
const moving: FixtureImage = {
    registry,
    repository: "library/moving",
    tag: "v1",
    artifact: image([layer("moving-1", 64 << 10)]),
};
const moved = image([layer("moving-2", 64 << 10)]);
const sharedLayer = layer("shared", 4 << 20);
const sharingA: FixtureImage = {
    registry,
    repository: "library/sharing-a",
    tag: "v1",
    artifact: image([sharedLayer]),
};
const sharingB: FixtureImage = {
    registry,
    repository: "library/sharing-b",
    tag: "v1",
    artifact: image([sharedLayer]),
};

let stack: TestStack;
let wan: SimulatedWan;
let endpoint: string;

const blobsOf = (artifact: ImageArtifact) => artifact.blobs.map((blob) => blob.digest);

/** How often the upstream sent each of `digests` in full. */
function upstreamFetches(digests: string[]): Record<string, number> {
    const served = stack.upstreams.timesServed(registry);
    return Object.fromEntries(digests.map((digest) => [digest, served.get(digest) ?? 0]));
}
const once = (digests: string[]) => Object.fromEntries(digests.map((digest) => [digest, 1]));

interface BlobResponse {
    status: number;
    cache: string | null;
    digest: string;
    bytes: number;
    error?: string;
}

/** GETs a blob through the front as a client does; reads the whole body, whatever happens. */
async function getBlob(repository: string, digest: string): Promise<BlobResponse> {
    const response = await fetch(`${endpoint}/v2/${repository}/blobs/${digest}?ns=${registry}`);
    const hash = createHash("sha256");
    let bytes = 0;
    let error: string | undefined;
    try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
            hash.update(chunk);
            bytes += chunk.length;
        }
    } catch (failure) {
        error = String(failure);
    }
    return {
        status: response.status,
        cache: response.headers.get("x-pullthrough-cache"),
        digest: `sha256:${hash.digest("hex")}`,
        bytes,
        error,
    };
}

beforeAll(async () => {
    stack = await TestStack.start(
        "coalesce",
        [registry],
        [forThree, forEight, slow, cut, moving, sharingA, sharingB],
    );
    // 100 Mbit/s: a 6 MiB layer takes half a second, so concurrent clients overlap.
    wan = new SimulatedWan({ bitsPerSecond: 100e6, roundTripMs: 20 });
    const gateway = stack.upstreams.gateway();
    const upstream = new URL(stack.upstreams.get(registry).hostUrl);
    const remote = `http://${gateway}:${await wan.route(gateway, upstream.hostname, Number(upstream.port))}`;
    await stack.up({}, [{ registry, remote, port: stack.ports[registry] }]);
    endpoint = `http://127.0.0.1:${stack.ports[registry]}`;
});

afterAll(async () => {
    await wan?.close();
    await stack?.remove();
});

test("3 nodes pull a cold multi-layer image at once: the upstream serves each blob once", async () => {
    const digests = await Promise.all([1, 2, 3].map(() => stack.pullOnNewNode([byTag(forThree)])));
    expect(digests).toEqual([1, 2, 3].map(() => [forThree.artifact.manifest.digest]));
    expect(upstreamFetches(blobsOf(forThree.artifact))).toEqual(once(blobsOf(forThree.artifact)));
});

test("8 clients read a cold image at once: each blob leaves the upstream once, every digest checks", async () => {
    const ref = parseImageReference(byTag(forEight))!;
    const reads = await Promise.all(
        Array.from({ length: 8 }, async () => {
            const client = new RegistryClient(endpoint, registry);
            const content = await readImage(client, ref, []);
            // fetchBlob checks every blob against its digest.
            return Promise.all(
                content.blobs.map((blob) => client.fetchBlob(ref.repository, blob.digest)),
            );
        }),
    );
    const sizes = forEight.artifact.blobs.map((blob) => blob.bytes.length);
    expect(reads).toEqual(Array(8).fill(sizes));
    expect(upstreamFetches(blobsOf(forEight.artifact))).toEqual(once(blobsOf(forEight.artifact)));
});

test("a client that asks while another fetches waits for that fetch, within the bound, and is served from it", async () => {
    const { digest, bytes } = slow.artifact.blobs.at(-1)!;
    const first = getBlob(slow.repository, digest);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = Date.now();
    const waiter = await getBlob(slow.repository, digest);
    const waited = Date.now() - started;
    expect((await first).cache).toBe("MISS");
    expect(waiter).toMatchObject({ status: 200, cache: "HIT", digest, bytes: bytes.length });
    expect(waited).toBeLessThan(lockTimeoutSeconds * 1000);
    expect(upstreamFetches([digest])).toEqual(once([digest]));
});

test("a link that drops mid-blob fails the fetching client, never serves a waiter a truncated blob, and a retry succeeds", async () => {
    const { digest, bytes } = cut.artifact.blobs.at(-1)!;
    const before = wan.bytesDown;
    const clients = Array.from({ length: 3 }, () => getBlob(cut.repository, digest));
    // Cut once about a quarter of the blob has crossed the link.
    while (wan.bytesDown - before < 2 << 20)
        await new Promise((resolve) => setTimeout(resolve, 20));
    wan.cut();
    const results = await Promise.all(clients);
    const complete = (result: BlobResponse) =>
        result.status === 200 && result.digest === digest && !result.error;
    for (const result of results) {
        // Either the whole blob with its digest, or a failure the client can see: never a
        // short body passed off as complete.
        if (!complete(result))
            expect(
                result.status !== 200 || result.error !== undefined || result.bytes < bytes.length,
            ).toBe(true);
        if (result.cache === "HIT") expect(complete(result)).toBe(true);
    }
    expect(results.filter(complete).length).toBeLessThan(3);
    const retries = await Promise.all(
        Array.from({ length: 3 }, () => getBlob(cut.repository, digest)),
    );
    for (const retry of retries) expect(complete(retry)).toBe(true);
});

test("a tag moved on the upstream is seen through the front at once", async () => {
    const ref = parseImageReference(byTag(moving))!;
    const client = new RegistryClient(endpoint, registry);
    expect((await client.manifest(ref.repository, "v1")).digest).toBe(
        moving.artifact.manifest.digest,
    );
    await push(stack.upstreams.get(registry).hostUrl, moving.repository, "v1", moved);
    expect((await client.manifest(ref.repository, "v1")).digest).toBe(moved.manifest.digest);
    expect(await stack.pullOnNewNode([byTag(moving)])).toEqual([moved.manifest.digest]);
});

test("a blob a registry served but did not store is stored by the next prewarm, past the front's copy", async () => {
    // Two repositories ask for one blob at once: registry:3 stores it for whichever comes first
    // and streams it to the other without storing (one fetch per digest in flight), while the
    // front keeps a copy for each.
    const { digest } = sharingA.artifact.blobs.at(-1)!;
    const both = await Promise.all(
        [sharingA, sharingB].map((image) => getBlob(image.repository, digest)),
    );
    expect(both.map((result) => result.digest)).toEqual([digest, digest]);
    const caches = cacheEndpoints(stack.run.outputs.mirrors as MirrorsOutput);
    const front = await readFrontAccess(dockerCli(), caches);
    await withCacheViews(dockerCli(), caches, front, async (views) => {
        const stored = (image: FixtureImage) =>
            viewClient(views.get(registry)!, registry).hasBlob(image.repository, digest);
        const before = await Promise.all([sharingA, sharingB].map(stored));
        expect(before.sort()).toEqual([false, true]);
        const unstored = [sharingA, sharingB][(await stored(sharingA)) ? 1 : 0];
        const results = await prewarmUntilStored(
            routeImages([byTag(unstored)], caches),
            { platforms: [], concurrency: 2, front },
            views,
        );
        expect(results).toEqual([expect.objectContaining({ ok: true })]);
        expect(await stored(unstored)).toBe(true);
    });
});

test("the front logs whether its cache served each blob", () => {
    const log = docker("logs", stack.frontName);
    expect(log).toMatch(
        /"GET \/v2\/library\/slow\/blobs\/sha256:[0-9a-f]{64}\S* HTTP\/1\.1" 200 \d+ .* cache=HIT/,
    );
});
