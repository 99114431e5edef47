/**
 * Fetches cut short, on the real engine, with the upstream behind a 4 MB/s simulated WAN link:
 * a cache or the front killed in the middle of a cold fetch leaves nothing behind, a fetch that
 * is still alive is never cut however long its link stalls, and the front answers byte ranges
 * and conditional requests as the registry does, so containerd resumes an interrupted pull
 * without the upstream sending the blob twice.
 */
import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import * as path from "node:path";
import { frontCacheFile } from "../../core/front";
import { Containerd } from "../../harness/containerd";
import { docker, dockerApi, waitFor, waitUntilRestartedHealthy } from "../../harness/docker";
import { Blob, image, layer, sha256 } from "../../harness/oci";
import { TestStack, supervisorBounds } from "../../harness/stack";
import { FixtureImage, byTag } from "../../harness/upstreams";
import { SimulatedWan } from "../../harness/wan";
import { registryStorageRoot } from "../../core/container-facts";
import { parseListing } from "../../core/storage-layout";
import { dockerCli } from "../../tools/docker";
import { readUploads } from "../../tools/storage";

jest.setTimeout(300_000);

const registry = "docker.io";
const fixture = (name: string, size: number): FixtureImage => ({
    registry,
    repository: `library/${name}`,
    tag: "v1",
    artifact: image([layer(name, size)]),
});
const cutCache = fixture("cut-cache", 40 << 20);
const stalled = fixture("stalled", 8 << 20);
const cutFront = fixture("cut-front", 24 << 20);
const ranged = fixture("ranged", 1 << 20);
const conditional = fixture("conditional", 1 << 20);
const resumed = fixture("resumed", 24 << 20);
const layerOf = (image: FixtureImage): Blob => image.artifact.blobs.at(-1)!;

const { staleUploadSeconds, sweepSeconds } = supervisorBounds;

let stack: TestStack;
let wan: SimulatedWan;
let endpoint: string;
let cache: string;

interface Answer {
    status: number;
    headers: Headers;
    body: Buffer;
    /** Set when the body broke off. */
    error?: string;
}

/** GETs a blob of `image` through the front, reading whatever body arrives. */
async function getBlob(image: FixtureImage, headers: Record<string, string> = {}): Promise<Answer> {
    const url = `${endpoint}/v2/${image.repository}/blobs/${layerOf(image).digest}?ns=${registry}`;
    const response = await fetch(url, { headers });
    const chunks: Buffer[] = [];
    let error: string | undefined;
    try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>)
            chunks.push(Buffer.from(chunk));
    } catch (failure) {
        error = String(failure);
    }
    return {
        status: response.status,
        headers: response.headers,
        body: Buffer.concat(chunks),
        error,
    };
}

/** The cache's partial uploads as its supervisor lists them. */
const uploads = async () => parseListing(await readUploads(dockerCli(), cache)).uploads;

/** Kills a container's PID 1 from the host, as a crash or the OOM killer does. */
function killInit(container: string) {
    process.kill(Number(docker("inspect", "--format", "{{.State.Pid}}", container)), "SIGKILL");
}

const restartCount = async (container: string): Promise<number> =>
    (await dockerApi("GET", `/containers/${container}/json`)).RestartCount;

/** How often the upstream sent `image`'s layer in full. */
const timesSent = (image: FixtureImage) =>
    stack.upstreams.timesServed(registry).get(layerOf(image).digest) ?? 0;

beforeAll(async () => {
    stack = await TestStack.start(
        "interrupted",
        [registry],
        [cutCache, stalled, cutFront, ranged, conditional, resumed],
    );
    // 4 MB/s: a 40 MiB layer takes 10 s to arrive.
    wan = new SimulatedWan({ bitsPerSecond: 32e6, roundTripMs: 20 });
    const gateway = stack.upstreams.gateway();
    const upstream = new URL(stack.upstreams.get(registry).hostUrl);
    const remote = `http://${gateway}:${await wan.route(gateway, upstream.hostname, Number(upstream.port))}`;
    // Proxy mode: when the link stalls, an auto cache's probe stalls too, and it gives way to
    // read-only serving (what auto mode is for), which ends the fetch this suite keeps alive.
    await stack.up({ mode: "proxy" }, [{ registry, remote, port: stack.ports[registry] }]);
    endpoint = `http://127.0.0.1:${stack.ports[registry]}`;
    cache = stack.cacheName(registry);
});

afterAll(async () => {
    await wan?.close();
    await stack?.remove();
});

test("a cache killed mid-fetch: its partial upload goes within the bound, a stalled live fetch is not cut", async () => {
    const cut = getBlob(cutCache);
    await waitFor("the cold fetch to be part-stored", 30_000, async () =>
        (await uploads()).some((upload) => upload.size > 4 << 20) ? true : undefined,
    );
    const restarts = await restartCount(cache);
    killInit(cache);
    expect((await cut).body.length).toBeLessThan(layerOf(cutCache).bytes.length);
    // A restarting container takes no exec; a fresh dead upload outlives the restart.
    await waitUntilRestartedHealthy(cache, restarts);
    const [dead] = await uploads();
    expect(dead.size).toBeLessThan(layerOf(cutCache).bytes.length);

    // A fetch the restarted cache is storing, over a link that then stalls past the bound.
    const live = getBlob(stalled);
    const liveUpload = await waitFor("the live fetch's upload", 30_000, async () =>
        (await uploads()).find((upload) => upload.path !== dead.path),
    );
    wan.down.stall((staleUploadSeconds + 2 * sweepSeconds) * 1000);
    await waitFor(
        "the dead upload to go",
        (staleUploadSeconds + sweepSeconds + 20) * 1000,
        async () =>
            (await uploads()).every((upload) => upload.path !== dead.path) ? true : undefined,
    );
    expect(await uploads()).toEqual([
        expect.objectContaining({ path: liveUpload.path, state: "writing" }),
    ]);
    expect(docker("logs", cache)).toContain(
        `pullthrough: removed a partial upload an interrupted fetch left: ${dead.path}`,
    );

    const answer = await live;
    expect(answer).toMatchObject({ status: 200, error: undefined });
    expect(sha256(answer.body)).toBe(layerOf(stalled).digest);
    await waitFor("the live fetch to be stored", 30_000, async () =>
        (await uploads()).length === 0 ? true : undefined,
    );
    const stored = docker(
        "exec",
        cache,
        "find",
        registryStorageRoot,
        "-path",
        `*${layerOf(stalled).digest.slice(7)}/data`,
    );
    expect(stored).not.toBe("");
    expect(timesSent(stalled)).toBe(1);
});

test("a front killed mid-fetch starts clean", async () => {
    const front = stack.frontName;
    const frontFiles = () =>
        docker("exec", front, "find", "/var/cache/nginx/pullthrough", "-type", "f")
            .split("\n")
            .filter(Boolean);
    const cut = getBlob(cutFront);
    // nginx writes a copy in progress beside its final name: `<md5 of the key>.<10 digits>`.
    await waitFor("the front to be writing its copy", 30_000, async () =>
        frontFiles().some((file) => /\/[0-9a-f]{32}\.\d{10}$/.test(file)) ? true : undefined,
    );
    const restarts = await restartCount(front);
    killInit(front);
    expect((await cut).body.length).toBeLessThan(layerOf(cutFront).bytes.length);
    await waitUntilRestartedHealthy(front, restarts);
    expect(frontFiles()).toEqual([]);
    // It serves again, the blob whole.
    const again = await getBlob(cutFront);
    expect(sha256(again.body)).toBe(layerOf(cutFront).digest);
});

describe("ranges and validators, as the registry answers them", () => {
    const range = { Range: "bytes=100-199" };
    const uri = (image: FixtureImage) => `/v2/${image.repository}/blobs/${layerOf(image).digest}`;
    /** Makes the front's next answer come from the cache's volume. */
    const dropFrontCopy = (image: FixtureImage) =>
        docker(
            "exec",
            stack.frontName,
            "rm",
            "-f",
            frontCacheFile(stack.ports[registry], uri(image)),
        );

    test.each([
        ["a cold fetch", "MISS", () => undefined],
        ["the front's copy", "HIT", () => undefined],
        ["the volume", "MISS", () => dropFrontCopy(ranged)],
    ])("a range of %s: 206 and those bytes", async (_, cacheStatus, before) => {
        before();
        const answer = await getBlob(ranged, range);
        expect(answer.status).toBe(206);
        expect(answer.headers.get("x-pullthrough-cache")).toBe(cacheStatus);
        expect(answer.headers.get("content-range")).toBe(
            `bytes 100-199/${layerOf(ranged).bytes.length}`,
        );
        expect(answer.body).toEqual(layerOf(ranged).bytes.subarray(100, 200));
    });

    test.each([
        ["a cold fetch", "MISS", () => undefined],
        ["the front's copy", "HIT", () => undefined],
        ["the volume", "MISS", () => dropFrontCopy(conditional)],
    ])("If-None-Match on %s: 304 with the quoted digest", async (_, cacheStatus, before) => {
        before();
        const etag = `"${layerOf(conditional).digest}"`;
        const answer = await getBlob(conditional, { "If-None-Match": etag });
        expect(answer.status).toBe(304);
        expect(answer.headers.get("x-pullthrough-cache")).toBe(cacheStatus);
        expect(answer.headers.get("etag")).toBe(etag);
        expect(answer.body.length).toBe(0);
        const whole = await getBlob(conditional);
        expect(whole.headers.get("etag")).toBe(etag);
    });

    test("each blob crossed the link once", () => {
        expect([timesSent(ranged), timesSent(conditional)]).toEqual([1, 1]);
    });
});

test("containerd resumes an interrupted pull through the front: the upstream sends the blob once", async () => {
    const containerd = await Containerd.start();
    try {
        const ingest = path.join(containerd.root, "io.containerd.content.v1.content", "ingest");
        const ingested = () =>
            readdirSync(ingest, { withFileTypes: true })
                .filter((entry) => entry.isDirectory())
                .map(
                    (entry) =>
                        statSync(path.join(ingest, entry.name, "data"), { throwIfNoEntry: false })
                            ?.size ?? 0,
                );
        const sentBefore = wan.bytesDown;
        const first = spawn(
            "ctr",
            [
                "--address",
                containerd.address,
                "--namespace",
                "default",
                "images",
                "pull",
                "--hosts-dir",
                stack.hostsDir,
                byTag(resumed),
            ],
            { stdio: "ignore" },
        );
        await waitFor("part of the layer to arrive", 30_000, async () =>
            Math.max(0, ...ingested()) > 4 << 20 ? true : undefined,
        );
        first.kill("SIGKILL");
        const part = Math.max(...ingested());
        expect(part).toBeLessThan(layerOf(resumed).bytes.length);

        const pulled = await containerd.pull("default", byTag(resumed), stack.hostsDir);
        expect(pulled.digest).toBe(resumed.artifact.manifest.digest);
        expect(timesSent(resumed)).toBe(1);
        // The second pull asked for the rest only, and the front answered with it.
        expect(docker("logs", stack.frontName)).toMatch(
            new RegExp(
                `"GET /v2/${resumed.repository}/blobs/${layerOf(resumed).digest}\\S* HTTP/1.1" 206 `,
            ),
        );
        const overhead = 64 << 10;
        expect(wan.bytesDown - sentBefore).toBeLessThan(layerOf(resumed).bytes.length + overhead);
    } finally {
        await containerd.stop();
    }
});
