/**
 * The one port for every registry, on the real engine: containerd is given only
 * `_default/hosts.toml` (the `containerdDefaultHosts` output), as a Talos node with a `*` mirror
 * is. It pulls images of two cached registries through the one port, three nodes at once, each
 * blob fetched upstream once; an image of a registry with no cache falls back to that registry
 * (a fixture upstream on loopback), and status names it. ctr reaches nothing but loopback.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Containerd, writeHostsDir } from "../../harness/containerd";
import { docker } from "../../harness/docker";
import { image, layer } from "../../harness/oci";
import { TestStack } from "../../harness/stack";
import { runTool } from "../../harness/tools";
import { FixtureImage, byTag } from "../../harness/upstreams";

jest.setTimeout(300_000);

const app = (registry: string, repository: string, mib: number): FixtureImage => ({
    registry,
    repository,
    tag: "v1",
    artifact: image([1, 2].map((n) => layer(`${registry}-${repository}-${n}`, mib << 20))),
});
// Two registries' `library/same:v1` are different images: the routes must never mix them.
const fromHub = app("docker.io", "library/same", 3);
const fromGhcr = app("ghcr.io", "library/same", 2);
const ghcrOnly = app("ghcr.io", "team/tool", 2);
// A registry with no cache: a plain registry this host reaches on loopback.
const uncached = app("direct", "team/app", 1);
const cached = [fromHub, fromGhcr, ghcrOnly];

let stack: TestStack;
let hostsDir: string;
let workDir: string;
let uncachedRef: string;

const blobsOf = (images: FixtureImage[]) =>
    images.flatMap((each) => each.artifact.blobs.map((blob) => blob.digest));

beforeAll(async () => {
    stack = await TestStack.start(
        "routing",
        ["docker.io", "ghcr.io", "direct"],
        [...cached, uncached],
    );
    // Caches for docker.io and ghcr.io only; the third upstream stays uncached.
    await stack.up(
        {},
        stack.upstreams.upstreamsOn(stack.ports).filter((u) => u.registry !== "direct"),
    );
    hostsDir = writeHostsDir(mkdtempSync(path.join(tmpdir(), "pt-routing-hosts-")), {
        _default: stack.run.outputs.containerdDefaultHosts as string,
    });
    workDir = mkdtempSync(path.join(tmpdir(), "pt-routing-"));
    uncachedRef = `${new URL(stack.upstreams.get("direct").hostUrl).host}/${uncached.repository}:v1`;
});

afterAll(async () => {
    await stack?.remove();
    for (const dir of [hostsDir, workDir]) if (dir) rmSync(dir, { recursive: true, force: true });
});

const anyRegistry = () => stack.run.outputs.anyRegistry as { hostEndpoint: string };

test("the hosts file names the one port and no server, so the rest falls back", () => {
    const hosts = stack.run.outputs.containerdDefaultHosts as string;
    expect(hosts).toBe(
        `[host."http://127.0.0.1:${stack.anyRegistryPort}"]\n  capabilities = ["pull", "resolve"]\n`,
    );
    console.log(`_default/hosts.toml:\n${hosts}`);
});

test("three nodes at once pull two cached registries' images through it, one upstream GET per blob", async () => {
    const refs = cached.map(byTag);
    const nodes = await Promise.all(
        [1, 2, 3].map(() => Containerd.pullOnNewNode(refs, hostsDir, { loopbackOnly: true })),
    );
    for (const digests of nodes)
        expect(digests).toEqual(cached.map((each) => each.artifact.manifest.digest));
    const sent = new Map([
        ...stack.upstreams.timesServed("docker.io"),
        ...stack.upstreams.timesServed("ghcr.io"),
    ]);
    for (const digest of blobsOf(cached)) expect([digest, sent.get(digest)]).toEqual([digest, 1]);
    const routed = docker("logs", stack.frontName)
        .split("\n")
        .filter(
            (line) => line.includes(`port=${stack.anyRegistryPort}`) && line.includes("/blobs/"),
        );
    expect(routed.length).toBeGreaterThanOrEqual(3 * blobsOf(cached).length);
    console.log(`the front's log, one routed pull:\n${routed.slice(0, 3).join("\n")}`);
});

test("an image of a registry with no cache falls back to that registry; status names it", async () => {
    const before = stack.upstreams.contentRequests("direct");
    const [digest] = await Containerd.pullOnNewNode([uncachedRef], hostsDir, {
        loopbackOnly: true,
    });
    expect(digest).toBe(uncached.artifact.manifest.digest);
    expect(stack.upstreams.contentRequests("direct")).toBeGreaterThan(before);
    const ns = uncachedRef.split("/")[0];
    const status = await runTool("status", stack.run.outputs, workDir, "--json");
    expect(JSON.parse(status.stdout).unserved).toEqual([
        { registry: ns, requests: expect.any(Number), lastRequest: expect.any(String) },
    ]);
    const screen = await runTool("status", stack.run.outputs, workDir);
    const named = screen.stdout.split("\n").filter((line) => line.includes(ns));
    expect(named).toEqual([
        expect.stringMatching(
            /requests?, no cache \(nodes fetched it directly\): add an upstream$/,
        ),
    ]);
    console.log(`npm run status (its end):\n${screen.stdout.split("\n").slice(-6).join("\n")}`);
});

describe("the routes", () => {
    const get = (path: string, headers: Record<string, string> = {}) =>
        fetch(`${anyRegistry().hostEndpoint}${path}`, {
            headers: {
                Accept: "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
                ...headers,
            },
        });

    test("the same repository and tag on two registries stay two images", async () => {
        const digestVia = async (ns: string) =>
            (await get(`/v2/library/same/manifests/v1?ns=${ns}`)).headers.get(
                "docker-content-digest",
            );
        expect(await digestVia("docker.io")).toBe(fromHub.artifact.manifest.digest);
        expect(await digestVia("ghcr.io")).toBe(fromGhcr.artifact.manifest.digest);
    });

    test("ns is matched ignoring case, and Docker Hub's other names reach its cache", async () => {
        for (const ns of ["DOCKER.IO", "registry-1.docker.io", "index.docker.io"])
            expect((await get(`/v2/library/same/manifests/v1?ns=${ns}`)).status).toBe(200);
    });

    test("an unknown ns, or none, is a 404 in the registry's error format, sent nowhere", async () => {
        const before = ["docker.io", "ghcr.io"].map((r) => stack.upstreams.requests(r));
        for (const query of ["?ns=quay.io", ""]) {
            const response = await get(`/v2/library/same/manifests/v1${query}`);
            expect(response.status).toBe(404);
            expect((await response.json()).errors[0].code).toBe("NAME_UNKNOWN");
        }
        expect(["docker.io", "ghcr.io"].map((r) => stack.upstreams.requests(r))).toEqual(before);
        expect((await get("/v2/")).status).toBe(200);
    });
});
