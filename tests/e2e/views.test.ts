/**
 * The tools' views of a cache never outlive their tool: SIGINT and SIGTERM unwind through the
 * tool's cleanup, a tool killed outright leaves a view that stops itself when its lease runs out,
 * and every tool removes the stale views of earlier ones before it starts its own. The tool is
 * `verify`, run as one process (`node --import tsx tools/cli.ts`) and signalled while it waits
 * for its view to serve: a docker CLI first on its PATH takes each view it starts off the stack's
 * network, so the wait lasts until the signal.
 */
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { viewLabel, viewLeaseSeconds } from "../../core/plan";
import { docker, fixtureRegistryImage, waitFor } from "../../harness/docker";
import { image, layer } from "../../harness/oci";
import { TestStack } from "../../harness/stack";
import { runTool } from "../../harness/tools";
import { FixtureImage, byTag } from "../../harness/upstreams";

jest.setTimeout(300_000);

const registry = "ghcr.io";
/** A cache of the stack that no tool of this suite works on. */
const otherRegistry = "quay.io";
const fixture: FixtureImage = {
    registry,
    repository: "pullthrough/views",
    tag: "v1",
    artifact: image([layer("views-a", 64 << 10)]),
};
let stack: TestStack;
let workDir: string;
let outputsFile: string;
let bundle: string;
let wrapperDir: string;
/** The view a SIGKILLed tool left, which must be gone by the last test. */
let orphan: string | undefined;

const repoRoot = path.resolve(__dirname, "../..");
const viewsOf = (cache: string) =>
    docker("ps", "--all", "--quiet", "--no-trunc", "--filter", `label=${viewLabel}=${cache}`)
        .split("\n")
        .filter(Boolean);

/**
 * A docker CLI that disconnects every view it starts from the network it was started on: the
 * view runs, renews its lease and stops itself as any, and never answers.
 */
function writeUnreachableViewsDocker(dir: string): string {
    const realDocker = execFileSync("sh", ["-c", "command -v docker"], { encoding: "utf8" }).trim();
    mkdirSync(dir, { recursive: true });
    writeFileSync(
        path.join(dir, "docker"),
        `#!/bin/sh
case "$1 $*" in
run*${viewLabel}=*)
    network= previous=
    for arg; do [ "$previous" = --network ] && network=$arg; previous=$arg; done
    id=$(${realDocker} "$@") || exit
    ${realDocker} network disconnect "$network" "$id" >/dev/null || exit
    echo "$id" ;;
*) exec ${realDocker} "$@" ;;
esac
`,
        { mode: 0o755 },
    );
    return dir;
}

/** `verify` as a process of its own, waiting for a view that never answers. */
function verifyWaitingForItsView(): { tool: ChildProcess; exited: Promise<number | null> } {
    // One process, signalled itself: tsx's own CLI would be a second one, relaying signals.
    const tool = spawn(
        process.execPath,
        ["--import", "tsx", "tools/cli.ts", "verify", "--outputs", outputsFile],
        {
            cwd: repoRoot,
            stdio: "ignore",
            env: { ...process.env, PATH: `${wrapperDir}:${process.env.PATH}` },
        },
    );
    const exited = new Promise<number | null>((resolve) => tool.on("exit", resolve));
    return { tool, exited };
}

/** The id of a running view of the cache other than the orphan, once there is one. */
const aViewRuns = () =>
    waitFor("the tool's view to run", 60_000, async () =>
        docker("ps", "--quiet", "--no-trunc", "--filter", `label=${viewLabel}=${cache()}`)
            .split("\n")
            .find((id) => id && id !== orphan),
    );
const cache = () => stack.cacheName(registry);
const outputs = () => ({ mirrors: stack.run.outputs.mirrors, prewarmImages: [byTag(fixture)] });

beforeAll(async () => {
    stack = await TestStack.start("views", [registry, otherRegistry], [fixture]);
    workDir = mkdtempSync(path.join(tmpdir(), "pt-views-"));
    await stack.up({ prewarm: [byTag(fixture)] });
    outputsFile = path.join(workDir, "outputs.json");
    writeFileSync(
        outputsFile,
        JSON.stringify({ mirrors: stack.run.outputs.mirrors, prewarmImages: [byTag(fixture)] }),
    );
    wrapperDir = writeUnreachableViewsDocker(path.join(workDir, "bin"));
    bundle = path.join(workDir, "bundle.tar");
    const exported = await runTool("export", outputs(), workDir, bundle);
    expect(exported.code).toBe(0);
});

afterAll(async () => {
    await stack?.remove();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test("a tool killed outright leaves its view under a lease", async () => {
    const { tool, exited } = verifyWaitingForItsView();
    orphan = await aViewRuns();
    tool.kill("SIGKILL");
    await exited;
    expect(viewsOf(cache())).toEqual([orphan]);
    expect(docker("inspect", "--format", "{{.HostConfig.AutoRemove}}", orphan)).toBe("true");
});

test.each([
    ["SIGINT", 130],
    ["SIGTERM", 143],
] as const)("%s: the tool removes its view, then exits %i", async (signal, code) => {
    const { tool, exited } = verifyWaitingForItsView();
    const view = await aViewRuns();
    tool.kill(signal);
    expect(await exited).toBe(code);
    expect(viewsOf(cache())).not.toContain(view);
});

test("the next tool removes the stack's stale views, of every cache: stopped ones, and ones with no lease", async () => {
    const other = stack.cacheName(otherRegistry);
    /** A stopped view and a running one with no lease, as a killed tool of old would leave. */
    const plantStaleViews = (of: string) => {
        const labelled = ["--label", `${viewLabel}=${of}`];
        return [
            docker("create", ...labelled, "--entrypoint", "true", fixtureRegistryImage),
            docker(
                ...["run", "--detach", ...labelled, "--entrypoint", "sleep"],
                ...[fixtureRegistryImage, "600"],
            ),
        ];
    };
    plantStaleViews(cache());
    plantStaleViews(other);
    // Another stack's are not this tool's to judge.
    const anotherStacks = plantStaleViews(`${stack.id}-elsewhere-ghcr.io`);
    try {
        // verify works on the ghcr.io cache alone.
        expect(await runTool("verify", outputs(), workDir)).toMatchObject({ code: 0 });
        // The orphan's lease has not run out yet: it could be a live tool's, and stays.
        expect(viewsOf(cache())).toEqual([orphan]);
        expect(viewsOf(other)).toEqual([]);
        expect(viewsOf(`${stack.id}-elsewhere-ghcr.io`).sort()).toEqual(
            anotherStacks.map((id) => docker("inspect", "--format", "{{.Id}}", id)).sort(),
        );
    } finally {
        docker("rm", "--force", "--volumes", ...anotherStacks);
    }
});

test(`the killed tool's view stopped itself within its ${viewLeaseSeconds} s lease`, async () => {
    await waitFor("the orphaned view to go", (viewLeaseSeconds + 30) * 1000, async () =>
        viewsOf(cache()).includes(orphan!) ? undefined : true,
    );
    expect(viewsOf(cache())).toEqual([]);
});

test("an import leaves the cache's upstream figures as they were", async () => {
    const figures = async () => {
        const run = await runTool("status", outputs(), workDir, "--json");
        const [cacheStatus] = JSON.parse(run.stdout).caches;
        return { misses: cacheStatus.misses, upstreamBytes: cacheStatus.upstreamBytes };
    };
    const before = await figures();
    expect(before.misses).toBeGreaterThan(0);
    expect((await runTool("import", outputs(), workDir, bundle)).code).toBe(0);
    expect(await figures()).toEqual(before);
});
