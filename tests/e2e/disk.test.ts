/**
 * A full cache volume, on the real engine: a tmpfs-backed volume of 32 MiB stands in for a full
 * disk. An image that does not fit makes the cache unhealthy with the reason, prewarm names that
 * reason and stops, verify leads with it, what the cache holds keeps pulling, and the partial
 * upload the failed write left behind is removed. A file filling what is left keeps the disk full
 * until the last test, whatever the machine's pace.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { docker, waitFor } from "../../harness/docker";
import { image, layer } from "../../harness/oci";
import { TestStack } from "../../harness/stack";
import { runTool } from "../../harness/tools";
import { FixtureImage, byTag } from "../../harness/upstreams";

jest.setTimeout(300_000);

const registry = "ghcr.io";
const fits: FixtureImage = {
    registry,
    repository: "pullthrough/fits",
    tag: "v1",
    artifact: image([layer("fits", 4 << 20)]),
};
const bigLayer = layer("too-big", 40 << 20);
const tooBig: FixtureImage = {
    registry,
    repository: "pullthrough/too-big",
    tag: "v1",
    artifact: image([bigLayer]),
};
let stack: TestStack;
let cache: string;
let workDir: string;

const prewarm = (...images: FixtureImage[]) =>
    runTool(
        "prewarm",
        { mirrors: stack.run.outputs.mirrors, prewarmImages: images.map(byTag) },
        workDir,
    );

const lastHealthCheck = () =>
    JSON.parse(docker("inspect", "--format", "{{json .State.Health}}", cache)) as {
        Status: string;
        Log: { ExitCode: number; Output: string }[];
    };

const filler = "/var/lib/registry/filler";

const partialUploads = () =>
    docker("exec", cache, "find", "/var/lib/registry", "-path", "*/_uploads/*", "-name", "data");

beforeAll(async () => {
    stack = await TestStack.start("disk", [registry], [fits, tooBig]);
    cache = stack.cacheName(registry);
    workDir = mkdtempSync(path.join(tmpdir(), "pt-disk-"));
    // The engine hands the stack this volume when it asks for one of the same name.
    docker(
        ...["volume", "create", "--driver", "local", "--opt", "type=tmpfs"],
        ...["--opt", "device=tmpfs", "--opt", "o=size=32m", cache],
    );
    await stack.up();
});

afterAll(async () => {
    await stack?.remove();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test("an image that does not fit: the cache says its disk is full, prewarm names it and stops", async () => {
    expect((await prewarm(fits)).code).toBe(0);
    const run = await prewarm(tooBig);
    expect(run.code).toBe(1);
    // The summary leads with the cause, then what the registry said.
    const [, failed] = run.stdout.split("\nFailed:\n");
    expect(failed).toMatch(
        /^ {2}ghcr\.io\/pullthrough\/too-big:v1: the ghcr\.io cache's disk is full: \d+ MiB free of 3\d MiB on \/var\/lib\/registry; still serving what it holds \(.*no space left on device\)$/m,
    );
    // Something else fills the disk too, so it stays full however long the steps below take: the
    // supervisor removes the failed write's partial upload 30 s after it stopped growing.
    docker("exec", cache, "sh", "-c", `head -c ${64 << 20} /dev/zero >${filler} || true`);
    const verified = await runTool(
        "verify",
        { mirrors: stack.run.outputs.mirrors, prewarmImages: [byTag(tooBig)] },
        workDir,
    );
    expect(verified.code).toBe(1);
    expect(verified.stdout).toMatch(/missing +the ghcr\.io cache's disk is full: \d+ MiB free/);
    // One attempt, not five: the upstream sent the big layer at most twice.
    const sent = stack.upstreams.timesServed(registry).get(bigLayer.blob.digest) ?? 0;
    expect(sent).toBeLessThanOrEqual(2);
    await waitFor("the cache to be unhealthy", 30_000, async () =>
        lastHealthCheck().Status === "unhealthy" ? true : undefined,
    );
    expect(lastHealthCheck().Log.at(-1)!.Output).toMatch(/disk is full: \d+ MiB free of 3\d MiB/);
});

test("what the full cache holds still pulls", async () => {
    const [digest] = await stack.pullOnNewNode([byTag(fits)]);
    expect(digest).toBe(fits.artifact.manifest.digest);
});

test("the failed write's partial upload is removed, and the cache is healthy again", async () => {
    docker("exec", cache, "rm", "-f", filler);
    await waitFor("the partial upload to go", 90_000, async () =>
        partialUploads() === "" ? true : undefined,
    );
    await waitFor("the cache to be healthy", 120_000, async () =>
        lastHealthCheck().Status === "healthy" ? true : undefined,
    );
    expect(docker("logs", cache)).toContain("pullthrough: removed a partial upload");
});
