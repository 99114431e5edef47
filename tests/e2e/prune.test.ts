/**
 * `npm run prune` and `maxSize` on the real engine. Five images share a base layer; one is in the
 * prewarm list, four are pulled one after another. Pruning to a budget removes the least
 * recently pulled, frees exactly their own blobs (the shared layer stays), and leaves caches
 * from which every kept image pulls with the upstream stopped; a pruned image is fetched again
 * once the upstream is back. A pull in flight through a slow link is not cut.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { docker, sleep, waitFor } from "../../harness/docker";
import { FixtureImage, byTag } from "../../harness/upstreams";
import { image, layer, sha256 } from "../../harness/oci";
import { refreshHeader } from "../../core/front";
import { ledgerFiles, parseLedger, pullActivity } from "../../core/ledger";
import { TestStack } from "../../harness/stack";
import { ToolRun, runTool } from "../../harness/tools";
import { SimulatedWan } from "../../harness/wan";

jest.setTimeout(300_000);

const registry = "ghcr.io";
/** Reached through a slow simulated link, so a pull of it lasts seconds. */
const slowRegistry = "quay.io";
const base = layer("prune-base", 1 << 20);
const fixture = (name: string): FixtureImage => ({
    registry,
    repository: `pullthrough/prune-${name}`,
    tag: "v1",
    artifact: image([base, layer(`prune-${name}`, 1 << 20)]),
});
const [warm, a, b, c, d] = ["warm", "a", "b", "c", "d"].map(fixture);
const big: FixtureImage = {
    registry: slowRegistry,
    repository: "pullthrough/prune-big",
    tag: "v1",
    artifact: image([layer("prune-big", 8 << 20)]),
};

/** What goes when only this image goes: its manifest, config and own layer, not the base. */
const ownBytes = (fixture: FixtureImage) =>
    fixture.artifact.manifest.bytes.length +
    fixture.artifact.blobs
        .filter((blob) => blob.digest !== base.blob.digest)
        .reduce((sum, blob) => sum + blob.bytes.length, 0);

let stack: TestStack;
let wan: SimulatedWan;
let upstreams: { registry: string; remote: string; port: number }[];
let workDir: string;

const outputs = () => ({ mirrors: stack.run.outputs.mirrors, prewarmImages: [byTag(warm)] });
const prune = (...args: string[]): Promise<ToolRun> =>
    runTool("prune", outputs(), workDir, "--json", ...args);
async function report(...args: string[]) {
    const run = await prune(...args);
    if (run.code === 2) throw new Error(`prune could not run: ${run.stdout}${run.stderr}`);
    return JSON.parse(run.stdout);
}
const removedNames = (result: { removed: { image: string }[] }) =>
    result.removed.map((image) => image.image);

beforeAll(async () => {
    stack = await TestStack.start("prune", [registry, slowRegistry], [warm, a, b, c, d, big]);
    workDir = mkdtempSync(path.join(tmpdir(), "pt-prune-"));
    // 16 Mbit/s: the 8 MiB image takes about 4 s.
    wan = new SimulatedWan({ bitsPerSecond: 16e6, roundTripMs: 20 });
    const gateway = stack.upstreams.gateway();
    const slow = new URL(stack.upstreams.get(slowRegistry).hostUrl);
    const slowRemote = `http://${gateway}:${await wan.route(gateway, slow.hostname, Number(slow.port))}`;
    upstreams = stack.upstreams
        .upstreamsOn(stack.ports)
        .map((upstream) =>
            upstream.registry === slowRegistry ? { ...upstream, remote: slowRemote } : upstream,
        );
    await stack.up({ prewarm: [byTag(warm)] }, upstreams);
    // The front logs times to the second: one pull per second orders them.
    for (const fixture of [a, b, c, d]) {
        await sleep(1100);
        await stack.pullOnNewNode([byTag(fixture)]);
    }
});

afterAll(async () => {
    await wan?.close();
    await stack?.remove();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
});

let budget: number;

test("a dry run lists the least recently pulled first, skips the prewarm image, and removes nothing", async () => {
    const { heldBytes } = await report("--dry-run", "--to", "1TB");
    budget = heldBytes - ownBytes(a) - ownBytes(b);
    const dryRun = await prune("--dry-run", "--to", `${budget}B`);
    expect(dryRun.code).toBe(0);
    const planned = JSON.parse(dryRun.stdout);
    expect(removedNames(planned)).toEqual([byTag(a), byTag(b)]);
    expect(planned.kept).toEqual([
        expect.objectContaining({ image: byTag(warm), kept: "prewarm" }),
    ]);
    expect(planned.freedBytes).toBe(ownBytes(a) + ownBytes(b));
    // Nothing went: the same plan again.
    expect(await report("--dry-run", "--to", `${budget}B`)).toMatchObject({
        heldBytes,
        freedBytes: planned.freedBytes,
    });
    const shown = await runTool("prune", outputs(), workDir, "--to", `${budget}B`, "--dry-run");
    console.log(`$ npm run --silent prune -- --to ${budget}B --dry-run\n${shown.stdout}`);
});

test("prune to a budget frees the expected bytes; kept images pull offline; verify passes; a second prune frees nothing", async () => {
    const run = await prune("--to", `${budget}B`);
    expect(run.code).toBe(0);
    const pruned = JSON.parse(run.stdout);
    expect(removedNames(pruned)).toEqual([byTag(a), byTag(b)]);
    expect(pruned.freedBytes).toBe(ownBytes(a) + ownBytes(b));
    expect(pruned.leftBytes).toBeLessThanOrEqual(budget);

    const again = await report("--to", `${budget}B`);
    expect(again).toMatchObject({ removed: [], freedBytes: 0, heldBytes: pruned.leftBytes });
    // The front's ledger forgot the pruned images and kept the others: it holds what the caches do.
    const ledger = parseLedger(docker("exec", stack.frontName, "cat", ledgerFiles.record));
    const pulled = [...pullActivity(ledger, registry).manifests.keys()];
    expect(pulled).toContain(`${c.repository}:${c.tag}`);
    expect(pulled).not.toContain(`${a.repository}:${a.tag}`);
    expect(pulled).not.toContain(`${b.repository}:${b.tag}`);

    stack.upstreams.stop(registry);
    try {
        const kept = [warm, c, d];
        expect(await stack.pullOnNewNode(kept.map(byTag))).toEqual(
            kept.map((fixture) => fixture.artifact.manifest.digest),
        );
        await expect(stack.pullOnNewNode([byTag(a)])).rejects.toThrow();
        const verify = await runTool("verify", outputs(), workDir);
        expect(verify.stdout).toContain("All 1 images are in the caches.");
        expect(verify.code).toBe(0);
    } finally {
        await stack.upstreams.start(registry);
    }
    // With the upstream back, a pruned image pulls again. Its registry fetches a pruned blob
    // anew (asked past the front's own cache) rather than answering from memory with no bytes.
    expect(await stack.pullOnNewNode([byTag(a)])).toEqual([a.artifact.manifest.digest]);
    const blobsBefore = stack.upstreams.blobRequests(registry);
    const [, own] = a.artifact.blobs.filter((blob) => blob.digest !== base.blob.digest);
    const refetched = await fetch(
        `${(stack.run.outputs.mirrors as Record<string, { hostEndpoint: string }>)[registry].hostEndpoint}/v2/${a.repository}/blobs/${own.digest}`,
        { headers: { [refreshHeader]: "1" } },
    );
    expect(sha256(Buffer.from(await refetched.arrayBuffer()))).toBe(own.digest);
    expect(stack.upstreams.blobRequests(registry)).toBeGreaterThan(blobsBefore);
});

test("pulumi up with maxSize prunes after prewarm", async () => {
    // Now c is the least recently pulled image that is not in the prewarm list.
    const { heldBytes } = await report("--dry-run", "--to", "1TB");
    const maxSize = `${heldBytes - ownBytes(c)}B`;
    await stack.up({ prewarm: [byTag(warm)], maxSize }, upstreams);
    const runs = stack.commands.runs.filter((run) => run.command.includes("prune"));
    expect(runs).toHaveLength(1);
    expect(runs[0].stdout).toContain(`removed  ${byTag(c)}`);
    expect(await report("--dry-run", "--to", maxSize)).toMatchObject({
        heldBytes: heldBytes - ownBytes(c),
        removed: [],
    });
});

test("prune during a pull does not fail it: the image is kept while in flight, removed after", async () => {
    const cache = stack.cacheName(slowRegistry);
    const revision = `/var/lib/registry/docker/registry/v2/repositories/${big.repository}/_manifests/revisions/sha256/${big.artifact.manifest.digest.slice(7)}/link`;
    const pull = stack.pullOnNewNode([byTag(big)]);
    await waitFor("the cache to store the manifest and start on the layer", 60_000, async () =>
        wan.bytesDown > 1 << 20 &&
        docker("exec", cache, "sh", "-c", `test -f ${revision} && echo yes`) === "yes"
            ? true
            : undefined,
    );
    const during = await prune("--to", "0B");
    expect(during.code).toBe(1); // the prewarm image stays: 0 B cannot be met
    expect(JSON.parse(during.stdout).kept).toContainEqual(
        expect.objectContaining({ image: byTag(big), kept: "in flight" }),
    );
    expect(await pull).toEqual([big.artifact.manifest.digest]);

    const after = await report("--to", "0B");
    expect(removedNames(after)).toContain(byTag(big));
});
