/**
 * `npm run status` on the real engine, after a scripted sequence: a cold pull by one node, then
 * the same image by a second node. Its figures are checked against what the fixture upstream's
 * access log says it sent and against the image's own size.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { docker } from "../../harness/docker";
import { image, layer } from "../../harness/oci";
import { TestStack } from "../../harness/stack";
import { ToolRun, runTool } from "../../harness/tools";
import { FixtureImage, byTag } from "../../harness/upstreams";

jest.setTimeout(240_000);

const registry = "ghcr.io";
const pulled: FixtureImage = {
    registry,
    repository: "pullthrough/status",
    tag: "v1",
    artifact: image([layer("status-a", 512 << 10), layer("status-b", 256 << 10)]),
};
/** Manifest, config and layers: what one node's pull downloads. */
const imageBytes =
    pulled.artifact.manifest.bytes.length +
    pulled.artifact.blobs.reduce((sum, blob) => sum + blob.bytes.length, 0);
let stack: TestStack;
let workDir: string;

const status = (...args: string[]): Promise<ToolRun> =>
    runTool("status", { mirrors: stack.run.outputs.mirrors }, workDir, ...args);

/** Bytes the upstream sent (GET 200 of manifests and blobs), by its access log. */
function upstreamBytesSent(): number {
    const log = docker("logs", stack.upstreams.get(registry).container);
    const sent = /"GET \/v2\/\S+\/(?:blobs|manifests)\/\S+ HTTP\/1\.1" 200 (\d+)/g;
    return [...log.matchAll(sent)].reduce((sum, match) => sum + Number(match[1]), 0);
}

beforeAll(async () => {
    stack = await TestStack.start("status", [registry], [pulled]);
    workDir = mkdtempSync(path.join(tmpdir(), "pt-status-"));
    await stack.up();
});

afterAll(async () => {
    await stack?.remove();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test("before any pull: healthy, empty, no requests yet", async () => {
    const run = await status();
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("no requests yet");
    expect(run.stdout).toContain("All 1 caches are healthy.");
});

test("a cold pull and a warm one: the figures match the upstream's log and the image", async () => {
    await stack.pullOnNewNode([byTag(pulled)]);
    const afterCold = JSON.parse((await status("--json")).stdout).caches[0];
    await stack.pullOnNewNode([byTag(pulled)]);
    const run = await status("--json");
    expect(run.code).toBe(0);
    const [cache] = JSON.parse(run.stdout).caches;
    console.log(`status after a cold and a warm pull:\n${(await status()).stdout}`);
    expect(cache).toMatchObject({
        registry,
        port: stack.ports[registry],
        mode: "auto",
        serving: "proxy",
        health: "healthy",
        frontAnswer: "200 OK",
        degraded: false,
        repositories: 1,
        images: 1,
    });
    // What crossed the upstream link, by the upstream's own log; the warm pull added nothing.
    expect(cache.upstreamBytes).toBe(upstreamBytesSent());
    expect(cache.upstreamBytes).toBe(afterCold.upstreamBytes);
    // Each node downloaded the image once; the second one's bytes were all saved.
    expect(cache.servedBytes).toBe(2 * imageBytes);
    expect(cache.savedBytes).toBe(cache.servedBytes - cache.upstreamBytes);
    expect(cache.requests).toBe(2 * afterCold.requests);
    expect(cache.misses).toBe(afterCold.misses);
    expect(cache.hits).toBe(cache.requests - cache.misses);
    expect(cache.disk.usedBytes).toBeGreaterThanOrEqual(imageBytes);
});

test("a cache serving offline against its mode needs attention: exit 1", async () => {
    stack.upstreams.stop(registry);
    try {
        const cache = stack.cacheName(registry);
        // The supervisor gives way after two failed probes, 10 s apart.
        const deadline = Date.now() + 60_000;
        while (
            !docker("inspect", "--format", "{{json .State.Health}}", cache).includes("offline")
        ) {
            if (Date.now() > deadline) throw new Error("the cache never went offline");
            await new Promise((resolve) => setTimeout(resolve, 1000));
        }
        const run = await status();
        expect(run.code).toBe(1);
        expect(run.stdout).toMatch(/^! ghcr\.io {2}:\d+ {2}mode auto, serving offline, healthy/m);
        expect(run.stdout).toContain("1 of 1 caches need attention");
    } finally {
        await stack.upstreams.start(registry);
    }
});

test("a front that cannot reach its cache: the cache looks healthy, but status asks as clients do", async () => {
    // The registry leaves every network the front shares with it (the stack's, and the test's,
    // which the Pulumi engine stand-in adds): its own healthcheck still passes, every pull fails.
    const cache = stack.cacheName(registry);
    const networks = Object.keys(
        JSON.parse(docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", cache)),
    );
    for (const network of networks) docker("network", "disconnect", network, cache);
    try {
        // Past the front's 2 s hold on the registry's old address.
        await new Promise((resolve) => setTimeout(resolve, 3000));
        const run = await status();
        console.log(`status with the front path broken:\n${run.stdout}`);
        expect(run.code).toBe(1);
        expect(run.stdout).toMatch(
            new RegExp(
                `^! ghcr\\.io {2}:\\d+ {2}mode auto, serving \\w+, healthy: clients get 50\\d [A-Za-z ]+ at http://127\\.0\\.0\\.1:${stack.ports[registry]}/v2/$`,
                "m",
            ),
        );
    } finally {
        for (const network of networks) docker("network", "connect", network, cache);
    }
});
