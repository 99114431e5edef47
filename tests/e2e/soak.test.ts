/**
 * A season in two minutes: 200,000 pulls of one blob through the front (ApacheBench, keep-alive),
 * on a stack whose containers log at most 2 × 1 MB. Docker's logs rotate and stay within their
 * cap, `status` counts every pull exactly, and its figures and prune's last pulls survive a
 * restarted front and a settings change that replaces every container.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { ledgerFiles } from "../../core/ledger";
import { docker, dockerLogFiles } from "../../harness/docker";
import { image, layer } from "../../harness/oci";
import { TestStack } from "../../harness/stack";
import { runTool } from "../../harness/tools";
import { FixtureImage } from "../../harness/upstreams";

jest.setTimeout(600_000);

const registry = "ghcr.io";
const fixture: FixtureImage = {
    registry,
    repository: "pullthrough/soak",
    tag: "v1",
    artifact: image([layer("soak-a", 4 << 10)]),
};
const layerBlob = fixture.artifact.blobs.at(-1)!;
const pulls = 200_000;
const logLimits = { maxSize: "1m", maxFiles: 2 };
let stack: TestStack;
let workDir: string;
let counted: Figures;
/** When the image was last pulled before the front was replaced, epoch seconds. */
let lastPull: number;

const tool = (command: string, ...args: string[]) =>
    runTool(command, { mirrors: stack.run.outputs.mirrors }, workDir, ...args, "--json");

/** What must survive: status's figures (the front's cache may or may not answer a repeat). */
type Figures = Record<"requests" | "servedBytes" | "misses" | "upstreamBytes", number>;
const figures = ({ requests, servedBytes, misses, upstreamBytes }: Figures): Figures => ({
    requests,
    servedBytes,
    misses,
    upstreamBytes,
});

/** `status --json` of the one cache. */
async function status() {
    const run = await tool("status");
    expect(run).toMatchObject({ code: 0, stderr: "" });
    return JSON.parse(run.stdout).caches[0];
}

const cacheUrl = (kind: "blobs" | "manifests", digest: string) =>
    `http://127.0.0.1:${stack.ports[registry]}/v2/${fixture.repository}/${kind}/${digest}`;
const blobUrl = () => cacheUrl("blobs", layerBlob.digest);

/** The image by digest, manifest then blobs, as a node pulls it. */
async function pullByDigest(): Promise<void> {
    const manifest = await fetch(cacheUrl("manifests", fixture.artifact.manifest.digest), {
        headers: { Accept: fixture.artifact.mediaType },
    });
    expect(manifest.status).toBe(200);
    await manifest.arrayBuffer();
    for (const blob of fixture.artifact.blobs) {
        const response = await fetch(cacheUrl("blobs", blob.digest));
        expect(response.status).toBe(200);
        await response.arrayBuffer();
    }
}

beforeAll(async () => {
    stack = await TestStack.start("soak", [registry], [fixture]);
    workDir = mkdtempSync(path.join(tmpdir(), "pt-soak-"));
    await stack.up({ logs: logLimits });
});

afterAll(async () => {
    await stack?.remove();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test(`${pulls} pulls: each one counted, every log rotated within its cap, the record small`, async () => {
    await pullByDigest();
    const before = await status();
    const { stdout } = await promisify(execFile)(
        "ab",
        ["-q", "-k", "-c", "16", "-n", `${pulls}`, blobUrl()],
        {
            maxBuffer: 1 << 20,
        },
    );
    expect(stdout).toMatch(/Failed requests:\s+0\n/);
    expect(stdout).toMatch(new RegExp(`Complete requests:\\s+${pulls}\\n`));

    const after = await status();
    expect(after.requests).toBe(before.requests + pulls);
    expect(after.servedBytes).toBe(before.servedBytes + pulls * layerBlob.bytes.length);
    // The front's own cache answered them: the registry saw almost none.
    expect(after.frontHits).toBeGreaterThan(before.frontHits + pulls * 0.99);
    expect(after.misses).toBe(before.misses);
    expect(Date.parse(after.since.requests)).toBeLessThanOrEqual(Date.now());

    // The front logged ~280 bytes a pull, 50+ MB: Docker kept the live file and one rotated one.
    const frontLogs = dockerLogFiles(stack.frontName);
    expect(frontLogs).toHaveLength(logLimits.maxFiles);
    for (const { bytes } of frontLogs) expect(bytes).toBeLessThanOrEqual((1 << 20) + 4096);
    for (const { bytes } of dockerLogFiles(stack.cacheName(registry)))
        expect(bytes).toBeLessThanOrEqual((1 << 20) + 4096);
    // The record holds what was pulled, not how often.
    const record = docker("exec", stack.frontName, "cat", ledgerFiles.record);
    expect(record.length).toBeLessThan(1024);
});

test("the figures survive a restarted front, and a settings change that replaces every container", async () => {
    // A pull by digest rewrites nothing in the cache's storage: only the ledger knows of it.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    lastPull = Math.floor(Date.now() / 1000);
    await pullByDigest();
    counted = figures(await status());
    docker("restart", stack.frontName);
    expect(figures(await status())).toEqual(counted);

    const containersBefore = [stack.frontName, stack.cacheName(registry)].map((name) =>
        docker("inspect", "--format", "{{.Id}}", name),
    );
    await stack.up({ logs: { ...logLimits, maxFiles: 3 } });
    const containersAfter = [stack.frontName, stack.cacheName(registry)].map((name) =>
        docker("inspect", "--format", "{{.Id}}", name),
    );
    expect(containersAfter.filter((id) => containersBefore.includes(id))).toEqual([]);
    expect(figures(await status())).toEqual(counted);

    for (let pull = 0; pull < 5; pull++) expect((await fetch(blobUrl())).status).toBe(200);
    expect((await status()).requests).toBe(counted.requests + 5);
});

test("prune ranks by the last pull the ledger kept, across the replaced front", async () => {
    const run = await tool("prune", "--to", "1B", "--dry-run");
    expect(run.code).toBe(0);
    const [removed] = JSON.parse(run.stdout).removed;
    expect(removed.image).toBe(
        `${registry}/${fixture.repository}@${fixture.artifact.manifest.digest}`,
    );
    expect(Date.parse(removed.lastPulled) / 1000).toBeGreaterThanOrEqual(lastPull);
});
