/**
 * Prefetch on the real engine, the upstream behind a 4 MB/s simulated WAN link: a client that
 * pulls a platform manifest has the cache fetch that image's config and layers at once, and
 * stored, before it asks for any of them; each blob leaves the upstream once, whoever asks first.
 * Only the platform a client asked for, never the rest of an index; nothing by default
 * (`prefetch: false`). An upstream that breaks a prefetch off leaves no partial upload, and one
 * that stalls it holds no other client.
 */
import { CacheEndpoint } from "../../core/plan";
import { MirrorsOutput, cacheEndpoints } from "../../core/render";
import { Containerd } from "../../harness/containerd";
import { waitFor } from "../../harness/docker";
import { image, index, layer } from "../../harness/oci";
import { StackUpstream, TestStack, supervisorBounds } from "../../harness/stack";
import { FixtureImage, byTag } from "../../harness/upstreams";
import { SimulatedWan } from "../../harness/wan";
import { parseListing } from "../../core/storage-layout";
import { viewClient, withCacheViews } from "../../tools/cache-view";
import { dockerCli } from "../../tools/docker";
import { readFrontAccess } from "../../tools/front";
import { RegistryClient } from "../../tools/registry-client";
import { readUploads } from "../../tools/storage";

jest.setTimeout(300_000);

const registry = "docker.io";
const app = (
    repository: string,
    artifact = image([1, 2, 3].map((n) => layer(`${repository}-${n}`, 2 << 20))),
): FixtureImage => ({
    registry,
    repository,
    tag: "v1",
    artifact,
});
const single = app("library/prefetched");
const amd64 = image([layer("multi-amd64", 2 << 20)]);
const arm64 = image([layer("multi-arm64", 2 << 20)], { architecture: "arm64" });
const multi = app("library/multi", index({ amd64, arm64 }));
const untouched = app("library/untouched");
// 24 MiB: 6 s over the link, long enough to break off or stall midway.
const brokenOff = app("library/broken-off", image([layer("broken-off", 24 << 20)]));
const stalled = app("library/stalled", image([layer("stalled", 24 << 20)]));

let stack: TestStack;
let wan: SimulatedWan;
let upstreams: StackUpstream[];

beforeAll(async () => {
    stack = await TestStack.start(
        "prefetch",
        [registry],
        [single, multi, untouched, brokenOff, stalled],
    );
    wan = new SimulatedWan({ bitsPerSecond: 32e6, roundTripMs: 20 });
    const gateway = stack.upstreams.gateway();
    const upstream = new URL(stack.upstreams.get(registry).hostUrl);
    const remote = `http://${gateway}:${await wan.route(gateway, upstream.hostname, Number(upstream.port))}`;
    // Proxy mode: a stalled link stalls an auto cache's probe too, and it would give way to
    // read-only serving, which ends the stalled fetch (interrupted.test.ts).
    upstreams = [{ registry, remote, port: stack.ports[registry] }];
    await stack.up({ prefetch: true, mode: "proxy" }, upstreams);
});

afterAll(async () => {
    await wan?.close();
    await stack?.remove();
});

const client = () => new RegistryClient(`http://127.0.0.1:${stack.ports[registry]}`, registry);
const sent = (digest: string) => stack.upstreams.timesServed(registry).get(digest) ?? 0;
const caches = (): CacheEndpoint[] => cacheEndpoints(stack.run.outputs.mirrors as MirrorsOutput);

/** Whether the cache's volume holds each of `digests` in `repository`, read through a view. */
async function stored(repository: string, digests: string[]): Promise<boolean[]> {
    const front = await readFrontAccess(dockerCli(), caches());
    return withCacheViews(dockerCli(), caches(), front, (views) =>
        Promise.all(
            digests.map((digest) =>
                viewClient(views.get(registry)!, registry).hasBlob(repository, digest),
            ),
        ),
    );
}

test("a pulled manifest's blobs are fetched and stored before the client asks, each once", async () => {
    const blobs = single.artifact.blobs.map((blob) => blob.digest);
    await client().manifest(single.repository, single.tag);
    await waitFor("the prefetch to store every blob", 60_000, async () =>
        (await stored(single.repository, blobs)).every(Boolean) ? true : undefined,
    );
    expect(blobs.map((digest) => [digest, sent(digest)])).toEqual(blobs.map((d) => [d, 1]));
    // The blobs served to clients so far: none; the prefetch is not a pull.
    expect(stack.blobsServedBy(registry)).toBe(0);

    const [digest] = await stack.pullOnNewNode([byTag(single)]);
    expect(digest).toBe(single.artifact.manifest.digest);
    expect(blobs.map((digest) => [digest, sent(digest)])).toEqual(blobs.map((d) => [d, 1]));
});

test("three nodes at once, cold: every blob leaves the upstream once, prefetch or not", async () => {
    const fresh = app("library/fresh");
    await stack.upstreams.seed([fresh]);
    const nodes = await Promise.all(
        [1, 2, 3].map(() => Containerd.pullOnNewNode([byTag(fresh)], stack.hostsDir)),
    );
    expect(nodes.flat()).toEqual([1, 2, 3].map(() => fresh.artifact.manifest.digest));
    for (const blob of fresh.artifact.blobs)
        expect([blob.digest, sent(blob.digest)]).toEqual([blob.digest, 1]);
});

test("of an index, only the platform the client asked for", async () => {
    const [digest] = await stack.pullOnNewNode([byTag(multi)]);
    expect(digest).toBe(multi.artifact.manifest.digest);
    // Time for a prefetch of the other platform, were there one.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    for (const blob of amd64.blobs)
        expect([blob.digest, sent(blob.digest)]).toEqual([blob.digest, 1]);
    for (const blob of arm64.blobs)
        expect([blob.digest, sent(blob.digest)]).toEqual([blob.digest, 0]);
});

/** The cache's partial uploads as its supervisor lists them. */
const uploads = async () =>
    parseListing(await readUploads(dockerCli(), stack.cacheName(registry))).uploads;

const layerOf = (image: FixtureImage) => image.artifact.blobs.at(-1)!;

test("an upstream that breaks a prefetch off: no partial upload stays, and the client's own pull completes", async () => {
    await client().manifest(brokenOff.repository, brokenOff.tag);
    await waitFor("the prefetch to be part-stored", 30_000, async () =>
        (await uploads()).some((upload) => upload.size > 4 << 20) ? true : undefined,
    );
    wan.cut();
    const { staleUploadSeconds, sweepSeconds } = supervisorBounds;
    // The registry keeps a failed fetch's upload open until Go collects its writer, and Go forces
    // a collection every 2 minutes (runtime forcegcperiod); only then is the upload stale.
    const goForcedCollectionSeconds = 120;
    await waitFor(
        "the broken-off upload to go",
        (goForcedCollectionSeconds + staleUploadSeconds + sweepSeconds + 20) * 1000,
        async () => ((await uploads()).length === 0 ? true : undefined),
    );
    const [digest] = await stack.pullOnNewNode([byTag(brokenOff)]);
    expect(digest).toBe(brokenOff.artifact.manifest.digest);
    expect(await stored(brokenOff.repository, [layerOf(brokenOff).digest])).toEqual([true]);
});

test("an upstream that stalls a prefetch holds no other client, and the stalled fetch completes once", async () => {
    await client().manifest(stalled.repository, stalled.tag);
    const prefetching = await waitFor("the prefetch to be part-stored", 30_000, async () =>
        (await uploads()).find((upload) => upload.size > 4 << 20),
    );
    wan.down.stall(10_000);
    // What the cache holds is served while the prefetch waits on the link.
    const held = layerOf(single);
    const answer = await fetch(
        `http://127.0.0.1:${stack.ports[registry]}/v2/${single.repository}/blobs/${held.digest}`,
    );
    expect(answer.status).toBe(200);
    expect(Buffer.from(await answer.arrayBuffer())).toEqual(held.bytes);
    expect(await uploads()).toEqual([
        expect.objectContaining({ path: prefetching.path, state: "writing" }),
    ]);
    // Once the link moves again, the same fetch finishes: stored whole, sent once.
    await waitFor("the stalled prefetch to be stored", 60_000, async () =>
        (await stored(stalled.repository, [layerOf(stalled).digest]))[0] ? true : undefined,
    );
    expect(sent(layerOf(stalled).digest)).toBe(1);
    expect(await uploads()).toEqual([]);
});

test("by default (prefetch false), a pulled manifest fetches nothing more", async () => {
    await stack.up({ mode: "proxy" }, upstreams);
    await client().manifest(untouched.repository, untouched.tag);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    for (const blob of untouched.artifact.blobs)
        expect([blob.digest, sent(blob.digest)]).toEqual([blob.digest, 0]);
});
