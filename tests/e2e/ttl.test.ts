/**
 * What `ttl` does on the registry 3 fixture (distribution 3.0.0): after expiry the registry
 * deletes the cached blobs (the manifests stay); with the upstream reachable, images that share
 * a layer both pull again, fetched anew; with it unreachable, an expired image cannot be served.
 * The README's description of `ttl` rests on this.
 */
import { docker, waitFor } from "../../harness/docker";
import { image, layer } from "../../harness/oci";
import { TestStack } from "../../harness/stack";
import { FixtureImage, byTag } from "../../harness/upstreams";

jest.setTimeout(240_000);

const registry = "ghcr.io";
const shared = layer("ttl-shared", 2 << 20);
const images: FixtureImage[] = ["a", "b"].map((name) => ({
    registry,
    repository: `pullthrough/ttl-${name}`,
    tag: "v1",
    artifact: image([shared, layer(`ttl-${name}`, 1 << 20)]),
}));
const refs = images.map(byTag);
let stack: TestStack;

/** KiB the cache's volume holds. */
const held = () =>
    Number(
        docker("exec", stack.cacheName(registry), "du", "-sk", "/var/lib/registry").split(/\s/)[0],
    );

beforeAll(async () => {
    stack = await TestStack.start("ttl", [registry], images);
    await stack.up({ ttl: "15s" });
});

afterAll(async () => {
    await stack?.remove();
});

test("expiry deletes the blobs: offline they are gone; the upstream refills them, shared layer included", async () => {
    await stack.pullOnNewNode(refs);
    const pulledAt = Date.now();
    const warm = held();
    expect(warm).toBeGreaterThan(4000);
    await waitFor("ttl expiry to free the blobs", 120_000, async () =>
        held() < 1024 ? true : undefined,
    );
    console.log(`ttl 15s: ${warm} KiB held when warm, ${held()} KiB after expiry`);
    // The front keeps a blob for a minute after its last request (core/front.ts): outwait it.
    await new Promise((resolve) =>
        setTimeout(resolve, Math.max(0, pulledAt + 65_000 - Date.now())),
    );

    stack.upstreams.stop(registry);
    try {
        await expect(stack.pullOnNewNode([refs[0]])).rejects.toThrow();
    } finally {
        await stack.upstreams.start(registry);
    }
    const blobsBefore = stack.upstreams.blobRequests(registry);
    expect(await stack.pullOnNewNode(refs)).toEqual(
        images.map((fixture) => fixture.artifact.manifest.digest),
    );
    expect(stack.upstreams.blobRequests(registry)).toBeGreaterThan(blobsBefore);
});
