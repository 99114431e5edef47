/**
 * Podman as the engine: the whole stack on a rootful Podman 4.3 (netavark) reached through its
 * Docker API socket, `dockerHost: unix://…`, as a Fedora or RHEL user runs it. The service is the
 * test's own (harness/podman.ts), loaded with the fixture images from Docker's store. Its
 * containers reach this host's addresses but not Docker's networks, so the fixture upstream is
 * reached through a plain relay on the test network's gateway, an address of this host.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fixtureFrontImage, fixtureRegistryImage } from "../../harness/docker";
import { image, layer } from "../../harness/oci";
import { PodmanService } from "../../harness/podman";
import { TestStack } from "../../harness/stack";
import { runTool } from "../../harness/tools";
import { FixtureImage, byTag, storedFolders } from "../../harness/upstreams";
import { SimulatedWan } from "../../harness/wan";

jest.setTimeout(300_000);

const registry = "ghcr.io";
const fixture: FixtureImage = {
    registry,
    repository: "pullthrough/podman",
    tag: "v1",
    artifact: image([layer("podman-a", 1 << 20), layer("podman-b", 512 << 10)]),
};
let stack: TestStack;
let podman: PodmanService;
let relay: SimulatedWan;
let workDir: string;
let before: ReturnType<PodmanService["inventory"]>;
const started = Date.now();
const logFormat = "{{.HostConfig.LogConfig.Type}} {{.HostConfig.LogConfig.Size}}";
/** The default `logs`: json-file at 10m, as Podman reads a size (decimal) and reports it. */
const logCap = "json-file 10MB";

const tool = (command: string, ...args: string[]) =>
    runTool(
        command,
        {
            mirrors: stack.run.outputs.mirrors,
            prewarmImages: [byTag(fixture)],
            dockerHost: stack.run.outputs.dockerHost,
        },
        workDir,
        ...args,
    );

beforeAll(async () => {
    stack = await TestStack.start("podman", [registry], [fixture]);
    workDir = mkdtempSync(path.join(tmpdir(), "pt-podman-tools-"));
    podman = await PodmanService.start();
    podman.load([fixtureRegistryImage, fixtureFrontImage]);
    before = podman.inventory();
    // A relay, not a slow link: as fast as this host copies.
    relay = new SimulatedWan({ bitsPerSecond: 10e9, roundTripMs: 0 });
    const gateway = stack.upstreams.gateway();
    const upstream = new URL(stack.upstreams.get(registry).hostUrl);
    const port = await relay.route(gateway, upstream.hostname, Number(upstream.port));
    await stack.up({ dockerHost: podman.dockerHost, keepCache: false }, [
        { registry, remote: `http://${gateway}:${port}`, port: stack.ports[registry] },
    ]);
});

afterAll(async () => {
    try {
        await relay?.close();
        await stack?.docker.removeEverything();
        await podman?.stop();
    } finally {
        // The fixture upstream and its network are on Docker: they go whatever Podman did.
        await stack?.remove();
        if (workDir) rmSync(workDir, { recursive: true, force: true });
    }
});

test("up puts the cache and the front on Podman, healthy, each log capped", () => {
    const { containers, networks } = podman.inventory();
    expect(containers).toEqual([stack.cacheName(registry), stack.frontName].sort());
    expect(networks).toContain(`${stack.id}-net`);
    expect(stack.run.outputs.dockerHost).toBe(podman.dockerHost);
    // Podman's json-file log (its k8s-file format) takes max-size as the size conmon truncates at.
    for (const container of containers)
        expect(podman.podman("inspect", "--format", logFormat, container)).toBe(logCap);
});

test("a containerd node pulls cold and then warm through the caches, every digest checked", async () => {
    const blobs = fixture.artifact.blobs.length;
    const cold = await stack.pullOnNewNode([byTag(fixture)]);
    expect(cold).toEqual([fixture.artifact.manifest.digest]);
    expect(stack.upstreams.blobRequests(registry)).toBe(blobs);
    const warm = await stack.pullOnNewNode([byTag(fixture)]);
    expect(warm).toEqual([fixture.artifact.manifest.digest]);
    expect(stack.upstreams.blobRequests(registry)).toBe(blobs);
    console.log(
        `podman: ${blobs} blobs pulled cold, then warm with no upstream request; both digests ${cold[0]}; ${(Date.now() - started) / 1000} s since the suite began`,
    );
});

test("status, verify and prune --dry-run work on Podman, status counting the pulls", async () => {
    const status = await tool("status", "--json");
    expect(status.code).toBe(0);
    const [cache] = JSON.parse(status.stdout).caches;
    expect(cache).toMatchObject({ health: "healthy", frontAnswer: "200 OK", degraded: false });
    // Two nodes' manifests, config and layers: the front's ledger works under Podman too.
    expect(cache.requests).toBeGreaterThanOrEqual(2 * (1 + fixture.artifact.blobs.length));
    expect(cache.since.requests).not.toBe("");
    expect(await tool("verify")).toMatchObject({ code: 0, stderr: "" });
    const prune = await tool("prune", "--to", "1GiB", "--dry-run");
    expect(prune.code).toBe(0);
    expect(prune.stdout).toContain("nothing to remove");
});

test("export and import move bytes through Podman's API: a bundle out, then back into a cache that lost the image", async () => {
    const bundle = path.join(workDir, "podman.tar");
    expect(await tool("export", bundle, "--images", byTag(fixture))).toMatchObject({ code: 0 });
    podman.podman(...["exec", stack.cacheName(registry), "rm", "-rf"], ...storedFolders(fixture));
    expect((await tool("verify")).code).toBe(1);
    const imported = await tool("import", bundle);
    expect(imported).toMatchObject({ code: 0, stderr: "" });
    expect(imported.stdout).toContain(`imported  ${byTag(fixture)}`);
    expect(await tool("verify", "--deep")).toMatchObject({ code: 0 });
});

test("destroy leaves Podman as it was found", async () => {
    await stack.destroy();
    expect(podman.inventory()).toEqual(before);
});
