/**
 * The whole local environment in one `pulumi up`: caches on the real engine, then a Talos
 * cluster whose nodes pull through them. The cluster is the talosctl stand-in claiming v1.12.1:
 * it accepts only that version's flags and, like a node, turns the mirrors into containerd
 * hosts.toml files and pulls a Talos-like image set with ctr.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Containerd } from "../../harness/containerd";
import { countLogLines } from "../../harness/engine";
import { TestStack } from "../../harness/stack";
import { talosctlStandIn } from "../../harness/talosctl";
import { byTag, talosLikeImages } from "../../harness/upstreams";

jest.setTimeout(240_000);

const registries = ["registry.k8s.io", "ghcr.io"];

const images = talosLikeImages();
let stack: TestStack;
let clusterName: string;
let containerd: Containerd;
let state: string;

function up(talosctl: string) {
    const cluster = { enabled: true, provisioner: "docker", name: clusterName, state, talosctl };
    return stack.up({ cluster });
}

const calls = () =>
    readFileSync(path.join(state, "calls.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as { command: string; args: string[]; version: string });

const cacheManifestRequests = (registry: string) =>
    countLogLines(stack.cacheName(registry), /"(GET|HEAD) \/v2\/\S+\/manifests\/\S+ HTTP/);

beforeAll(async () => {
    stack = await TestStack.start("cluster", registries, images);
    clusterName = `${stack.id}-talos`;
    containerd = await Containerd.start();
    state = mkdtempSync(path.join(tmpdir(), "pt-talos-state-"));
    const started = Date.now();
    await up(
        talosctlStandIn("v1.12.1", { containerd: containerd.address, images: images.map(byTag) }),
    );
    console.log(
        `cluster up (caches healthy, then the stand-in cluster's pulls): ${Date.now() - started} ms`,
    );
});

afterAll(async () => {
    await stack?.remove();
    await containerd?.stop();
    if (state) rmSync(state, { recursive: true, force: true });
});

test("one up boots the cluster entirely through the caches", async () => {
    const created = JSON.parse(readFileSync(path.join(state, clusterName, "cluster.json"), "utf8"));
    expect(created.shape).toBe("create docker");
    expect(created.mirrors).toEqual({
        "registry.k8s.io": [`http://127.0.0.1:${stack.ports["registry.k8s.io"]}`],
        "ghcr.io": [`http://127.0.0.1:${stack.ports["ghcr.io"]}`],
    });
    expect(created.pulled).toEqual(images.map(byTag));
    const listed = await containerd.ctr(clusterName, "images", "ls", "--quiet");
    expect(listed.trim().split("\n").sort()).toEqual(images.map(byTag).sort());
    // Every image was resolved at a cache, and the caches fetched its blobs from the upstream.
    for (const registry of registries) {
        const count = images.filter((image) => image.registry === registry).length;
        expect(cacheManifestRequests(registry)).toBeGreaterThanOrEqual(count);
        expect(stack.upstreams.blobRequests(registry)).toBeGreaterThanOrEqual(count + 1);
    }
    expect(stack.run.outputs.cluster).toEqual({
        name: clusterName,
        provisioner: "docker",
        talosctlVersion: "v1.12.1",
        endpointHost: "127.0.0.1",
        mirrorConfig: "talosMirrorDocuments",
    });
});

test("destroy runs talosctl cluster destroy with the create's name and state, and removes what create made", async () => {
    await stack.destroy();
    const destroyCall = calls().find((call) => call.command === "cluster destroy");
    expect(destroyCall?.args).toEqual(["--name", clusterName, "--state", state]);
    expect(existsSync(path.join(state, clusterName))).toBe(false);
    expect((await containerd.ctr(clusterName, "images", "ls", "--quiet")).trim()).toBe("");
});

test("the next boot, from a fresh node content store, fetches nothing from upstream", async () => {
    const freshNode = await Containerd.start();
    try {
        const before = stack.upstreams.blobRequestsByRegistry();
        await up(
            talosctlStandIn("v1.12.1", {
                containerd: freshNode.address,
                images: images.map(byTag),
            }),
        );
        expect(
            (await freshNode.ctr(clusterName, "images", "ls", "--quiet")).trim().split("\n"),
        ).toHaveLength(images.length);
        expect(stack.upstreams.blobRequestsByRegistry()).toEqual(before);
        await stack.destroy();
    } finally {
        await freshNode.stop();
    }
});
