/**
 * The whole local environment in one `pulumi up`: caches on the real engine, then a Talos
 * cluster whose nodes pull through them. The cluster is the talosctl stand-in claiming v1.12.1:
 * it accepts only that version's flags and, like a node, turns the mirrors into containerd
 * hosts.toml files and pulls a Talos-like image set with ctr; its docker nodes and network are
 * real Docker objects, labelled as the docker provisioner labels them, made from the node image
 * this host's Docker daemon pulls through the ghcr.io cache.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Containerd } from "../../harness/containerd";
import { countLogLines, docker, dockerApi, waitFor } from "../../harness/docker";
import { TestStack } from "../../harness/stack";
import { talosctlStandIn } from "../../harness/talosctl";
import {
    byTag,
    nodeImageThroughCache,
    talosLikeImages,
    talosNodeImage,
} from "../../harness/upstreams";

jest.setTimeout(240_000);

const registries = ["registry.k8s.io", "ghcr.io"];

const images = talosLikeImages();
/** The node image docker nodes run, for each talosctl the suite installs (one shared layer). */
const nodeImages = ["v1.11.0", "v1.12.1"].map(talosNodeImage);
const nodeLayer = nodeImages[0].artifact.blobs.at(-1)!;
let stack: TestStack;
let clusterName: string;
let containerd: Containerd;
let state: string;

function up(talosctl: string, name = clusterName) {
    const cluster = {
        enabled: true,
        provisioner: "docker",
        name,
        state,
        talosctl,
        cidr: `10.213.${process.pid % 250}.0/24`,
    };
    return stack.up({ cluster });
}

/** Names of the Docker containers and networks the docker provisioner made for the cluster. */
function clusterDockerObjects(name = clusterName) {
    const filters = ["--filter", "label=talos.owned=true"];
    filters.push("--filter", `label=talos.cluster.name=${name}`);
    const names = (...args: string[]) =>
        docker(...args, ...filters)
            .split("\n")
            .filter(Boolean)
            .sort();
    return {
        nodes: names("ps", "--all", "--format", "{{.Names}}"),
        networks: names("network", "ls", "--format", "{{.Name}}"),
    };
}

const calls = () =>
    readFileSync(path.join(state, "calls.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as { command: string; args: string[]; version: string });

const nodeImageRef = (tag: string) => nodeImageThroughCache(stack.ports["ghcr.io"], tag);

/** How often the ghcr.io upstream sent the node image's layer. */
const nodeLayerSent = () => stack.upstreams.timesServed("ghcr.io").get(nodeLayer.digest) ?? 0;

const cacheManifestRequests = (registry: string) =>
    countLogLines(stack.cacheName(registry), /"(GET|HEAD) \/v2\/\S+\/manifests\/\S+ HTTP/);

beforeAll(async () => {
    stack = await TestStack.start("cluster", registries, [...images, ...nodeImages]);
    clusterName = `${stack.id}-talos`;
    containerd = await Containerd.start();
    state = mkdtempSync(path.join(tmpdir(), "pt-talos-state-"));
    const started = Date.now();
    await up(
        talosctlStandIn("v1.12.1", {
            containerd: containerd.address,
            images: images.map(byTag),
        }),
    );
    console.log(
        `cluster up (caches healthy, then the stand-in cluster's pulls): ${Date.now() - started} ms`,
    );
});

afterAll(async () => {
    // What a failed test may have left of the stand-in's docker nodes, and the node images.
    for (const name of clusterName ? [clusterName, `${clusterName}-2`] : []) {
        const { nodes, networks } = clusterDockerObjects(name);
        if (nodes.length > 0) docker("rm", "--force", "--volumes", ...nodes);
        if (networks.length > 0) docker("network", "rm", ...networks);
    }
    // Node images this host's daemon pulled, by the references only this stack's ports make.
    const pulled = stack ? nodeImages.map((node) => nodeImageRef(node.tag)) : [];
    await stack?.remove();
    for (const ref of pulled) if (docker("images", "--quiet", ref)) docker("rmi", "--force", ref);
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
    expect(clusterDockerObjects()).toEqual({
        nodes: [`${clusterName}-controlplane-1`, `${clusterName}-worker-1`],
        networks: [clusterName],
    });
    // The node image came through the ghcr.io cache, which fetched its layer once.
    expect(created.flags.image).toEqual([nodeImageRef("v1.12.1")]);
    expect(docker("inspect", "--format", "{{.Config.Image}}", `${clusterName}-worker-1`)).toBe(
        nodeImageRef("v1.12.1"),
    );
    expect(nodeLayerSent()).toBe(1);
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
    expect(clusterDockerObjects()).toEqual({ nodes: [], networks: [] });
});

test("the node image gone from Docker's store and every upstream stopped: another cluster still comes up", async () => {
    // The first cluster is gone with its nodes, so its image can go too, layers and all.
    docker("rmi", nodeImageRef("v1.12.1"));
    for (const registry of registries) stack.upstreams.stop(registry);
    try {
        // The caches come back up with no upstream: in auto mode they serve their volumes
        // read-only from the start.
        await up(
            talosctlStandIn("v1.12.1", { containerd: containerd.address }),
            `${clusterName}-2`,
        );
        expect(clusterDockerObjects(`${clusterName}-2`).nodes).toHaveLength(2);
        expect(nodeLayerSent()).toBe(1);
    } finally {
        for (const registry of registries) await stack.upstreams.start(registry);
        // The next tests need new images: each cache proxies again after its next probe.
        for (const registry of registries)
            await waitFor(`the ${registry} cache to proxy again`, 60_000, async () => {
                const { State } = await dockerApi(
                    "GET",
                    `/containers/${stack.cacheName(registry)}/json`,
                );
                return State.Health?.Log?.at(-1)?.Output.startsWith("proxy") ? true : undefined;
            });
    }
});

test("a docker cluster made by talosctl 1.11 is replaced and destroyed after talosctl becomes 1.12", async () => {
    // One talosctl path whose binary the user upgrades, as a package manager would.
    const bin = mkdtempSync(path.join(tmpdir(), "pt-talosctl-bin-"));
    const talosctl = path.join(bin, "talosctl");
    const install = (version: string) => {
        mkdirSync(bin, { recursive: true });
        const standIn = talosctlStandIn(version, { containerd: containerd.address });
        copyFileSync(standIn, talosctl);
    };
    try {
        install("v1.11.0");
        await up(talosctl);
        const made = clusterDockerObjects();
        expect(made.nodes).toHaveLength(2);
        // talosctl 1.11 keeps no state.yaml for docker, which 1.12's destroy needs.
        expect(existsSync(path.join(state, clusterName, "state.yaml"))).toBe(false);

        install("v1.12.1");
        const runsBefore = stack.commands.runs.length;
        await up(talosctl);
        // The family changed, so the cluster was replaced: the old one's stored delete ran first.
        const [deleteRun, createRun] = stack.commands.runs.slice(runsBefore);
        expect(deleteRun.command).toContain("cluster destroy");
        for (const node of made.nodes)
            expect(deleteRun.stderr).toContain(`pullthrough: removed node ${node}`);
        expect(deleteRun.stderr).toContain(`pullthrough: removed network ${clusterName}`);
        expect(createRun.command).toContain("cluster create docker");
        expect(existsSync(path.join(state, clusterName, "state.yaml"))).toBe(true);

        await stack.destroy();
        expect(clusterDockerObjects()).toEqual({ nodes: [], networks: [] });
        expect(existsSync(path.join(state, clusterName))).toBe(false);
    } finally {
        rmSync(bin, { recursive: true, force: true });
    }
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
