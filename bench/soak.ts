/**
 * `npm run bench -- --soak N`: a season of pulls in minutes. N requests for one small cached blob
 * go through the front (ApacheBench, 32 keep-alive clients), and at 10,000, 100,000, … and N it
 * measures what a long-lived cache must keep flat:
 *
 * - requests/s through the front over the last stretch;
 * - `npm run status` and `npm run prune -- --dry-run`, run as a user runs them (median of 3,
 *   npm's start included: harness/tools.ts);
 * - the ledger's record size, and Docker's log bytes of each container (every rotated file);
 * - whether `status` counts every request exactly.
 *
 * Results go to bench/results-soak.json and the console.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { ledgerFiles } from "../core/ledger";
import {
    docker,
    dockerLogFiles,
    fixtureRegistryImage,
    freePort,
    prepareTestHost,
} from "../harness/docker";
import { image, layer } from "../harness/oci";
import { runTool } from "../harness/tools";
import { FixtureImage, FixtureUpstreams } from "../harness/upstreams";
import {
    benchId,
    cleanUp,
    machineDescription,
    median,
    planBenchCaches,
    startCaches,
} from "./stack";

const run = promisify(execFile);
const registry = "ghcr.io";
const fixture: FixtureImage = {
    registry,
    repository: "pullthrough/soak",
    tag: "v1",
    artifact: image([layer("soak-bench", 1024)]),
};
const concurrency = 32;

/** What was measured once `requests` pulls had gone through the front. */
interface Milestone {
    requests: number;
    requestsPerSecond: number;
    statusSeconds: number;
    pruneDryRunSeconds: number;
    /** What `status` counted, and whether it is every request made. */
    counted: number;
    exact: boolean;
    recordBytes: number;
    /** Docker's log files of each container, every rotated one included. */
    logBytes: Record<string, number>;
}

/** 10,000, 100,000, … below `total`, then `total`. */
const milestones = (total: number) => [
    ...Array.from({ length: 12 }, (_, power) => 10 ** (power + 4)).filter((at) => at < total),
    total,
];

export async function benchSoak(options: { total: number; out: string }) {
    prepareTestHost();
    cleanUp();
    const upstreams = await FixtureUpstreams.start(benchId, [registry]);
    const workDir = mkdtempSync(path.join(tmpdir(), "pt-bench-soak-"));
    try {
        await upstreams.seed([fixture]);
        const port = await freePort();
        const planned = planBenchCaches(
            { [registry]: upstreams.get(registry).remote },
            { [registry]: port },
            fixtureRegistryImage,
        );
        await startCaches(planned.caches, planned.front, upstreams.network);
        const outputs = { mirrors: { [registry]: planned.endpoints[0] } };
        const blob = fixture.artifact.blobs.at(-1)!;
        const url = `http://127.0.0.1:${port}/v2/${fixture.repository}/blobs/${blob.digest}`;
        await run("curl", ["-fsS", "-o", "/dev/null", url]);
        const containers = [planned.front.name, planned.caches[0].name];
        const results = await soak(options.total, {
            url,
            outputs,
            workDir,
            front: planned.front.name,
            containers,
        });
        writeFileSync(
            options.out,
            `${JSON.stringify({ machine: machineDescription(), concurrency, blobBytes: blob.bytes.length, milestones: results }, null, 2)}\n`,
        );
        console.log(`Wrote ${options.out}.`);
    } finally {
        rmSync(workDir, { recursive: true, force: true });
        cleanUp();
    }
}

interface Target {
    url: string;
    /** The stack's outputs, as the tools take them with `--outputs`. */
    outputs: Record<string, unknown>;
    workDir: string;
    front: string;
    containers: string[];
}

async function soak(total: number, target: Target): Promise<Milestone[]> {
    const results: Milestone[] = [];
    // The blob's first, cold pull counts too.
    let made = 1;
    for (const at of milestones(total)) {
        const requestsPerSecond = await ab(target.url, at - (made - 1));
        made = at + 1;
        const milestone = await measureAt(at, made, target, requestsPerSecond);
        results.push(milestone);
        console.log(formatMilestone(milestone, made));
    }
    return results;
}

async function measureAt(
    requests: number,
    made: number,
    target: Target,
    requestsPerSecond: number,
): Promise<Milestone> {
    const statusSeconds = await timedTool(target, "status");
    const pruneDryRunSeconds = await timedTool(target, "prune", "--dry-run", "--to", "1TB");
    const stdout = await tool(target, "status", "--json");
    const counted = JSON.parse(stdout).caches[0].requests as number;
    const record = docker("exec", target.front, "cat", ledgerFiles.record);
    return {
        requests,
        requestsPerSecond,
        statusSeconds,
        pruneDryRunSeconds,
        counted,
        exact: counted === made,
        recordBytes: Buffer.byteLength(record) + 1,
        logBytes: Object.fromEntries(
            target.containers.map((name) => [
                name,
                dockerLogFiles(name).reduce((total, { bytes }) => total + bytes, 0),
            ]),
        ),
    };
}

/** `npm run <command>` on the bench stack, as a user runs it; resolves to its stdout. */
async function tool(target: Target, command: string, ...args: string[]): Promise<string> {
    const done = await runTool(command, target.outputs, target.workDir, ...args);
    if (done.code !== 0) throw new Error(`npm run ${command}: exit ${done.code}: ${done.stderr}`);
    return done.stdout;
}

/** The median of 3 runs of a tool, process start included, in seconds. */
async function timedTool(target: Target, command: string, ...args: string[]): Promise<number> {
    const seconds: number[] = [];
    for (let sample = 0; sample < 3; sample++) {
        const started = performance.now();
        await tool(target, command, ...args);
        seconds.push((performance.now() - started) / 1000);
    }
    return median(seconds);
}

function formatMilestone(milestone: Milestone, made: number): string {
    const logs = Object.entries(milestone.logBytes)
        .map(([name, bytes]) => `${name} ${(bytes / 1e6).toFixed(1)} MB`)
        .join(", ");
    return [
        `${milestone.requests} requests: ${milestone.requestsPerSecond.toFixed(0)} req/s`,
        `status ${milestone.statusSeconds.toFixed(2)} s, prune --dry-run ${milestone.pruneDryRunSeconds.toFixed(2)} s`,
        `counted ${milestone.counted}${milestone.exact ? " (exact)" : ` of ${made}`}`,
        `record ${milestone.recordBytes} B`,
        `logs ${logs}`,
    ].join("; ");
}

/** `count` keep-alive GETs of `url`; resolves to requests per second. */
async function ab(url: string, count: number): Promise<number> {
    const { stdout } = await run(
        "ab",
        ["-q", "-k", "-c", `${concurrency}`, "-n", `${count}`, url],
        {
            maxBuffer: 1 << 20,
        },
    );
    if (!/Failed requests:\s+0\n/.test(stdout))
        throw new Error(`ab: some requests failed\n${stdout}`);
    return Number(/Requests per second:\s+([\d.]+)/.exec(stdout)![1]);
}
