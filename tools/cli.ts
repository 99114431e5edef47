/**
 * `npm run prewarm`, `verify`, `status`, `prune`, `export` and `import`. All take the caches
 * (and the image list, and the engine they run on) from the stack: `--outputs FILE` (or `-` for
 * stdin) reads `pulumi stack output --json`; otherwise the stack's config file is planned with the
 * same code `pulumi up` runs, so there is one source of truth.
 *
 * Exit codes: 0 all good; 1 an image failed to warm or is missing (or corrupt), a cache needs
 * attention, or prune could not get under its budget; 2 the tool could not run (bad arguments or
 * config, a cache unreachable, an image without a cache, a bundle that cannot be imported);
 * 130 or 143 interrupted by SIGINT or SIGTERM, once what it made is removed.
 */
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ParseArgsConfig, parseArgs } from "node:util";
import { Platform, formatPlatform, hostPlatform, parsePlatform } from "../core/images";
import { Run, runExport, runImport, runPrewarm, runPrune, runStatus, runVerify } from "./commands";
import { removeStaleViews } from "./cache-view";
import { dockerCli } from "./docker";
import { Interrupted, untilInterrupted } from "./interrupt";
import { failureJson } from "./json";
import { fromOutputs, fromStackConfig, readOutputsDocument } from "./stack";
import { UsageError, fail } from "./types";

const projectDir = path.resolve(__dirname, "..");

const usage = `Usage: npm run <prewarm|verify|status|prune> -- [options]
       npm run export -- BUNDLE [options]
       npm run import -- BUNDLE [options]

  prewarm            pull the stack's prewarm images through the caches until they are stored
  verify             check that the caches hold them, without asking any upstream
  status             what each cache holds, its health, and what it saved
  prune              remove the least recently pulled images (never a prewarm image) and the
                     blobs no remaining image needs
  export BUNDLE      write what the caches hold to BUNDLE, an OCI image layout: a directory, or
                     one file when BUNDLE ends in .tar
  import BUNDLE      put the images of BUNDLE (an OCI layout with reference annotations, from
                     export or skopeo) into the caches of their registries; works offline

  --outputs FILE     read caches and images from \`npm run --silent outputs\` saved in FILE ("-": stdin)
  --stack NAME       otherwise plan them from Pulumi.NAME.yaml, as pulumi up does (default: dev)
  --platform LIST    platforms to warm, check or export, e.g. linux/amd64,linux/arm64 (default:
                     ${formatPlatform(hostPlatform())}; export: every platform the caches hold)
  --concurrency N    requests in flight at once (default: 4)
  --images WHICH     export, verify: "all" (every image the caches hold), "prewarm" (the prewarm
                     list) or a comma-separated list of references (default: export all, verify
                     prewarm)
  --deep             verify: also re-hash every stored blob the images need, inside the caches
  --repair           verify --deep: remove each corrupt blob, so the next pull fetches it again
  --to SIZE          prune: until all caches together hold at most SIZE, e.g. 20GiB (default: maxSize)
  --older-than AGE   prune: every image not pulled for AGE, e.g. 7d, 36h, 90m
  --dry-run          prune: list what would go, remove nothing
  --json             print the result, or the error, as JSON (for CI)
  -h, --help         print this and exit

Exit codes: 0 all good; 1 an image failed to warm or is missing or corrupt, a cache needs
attention, or prune could not get under SIZE; 2 could not run (nothing was imported or exported).`;

export const optionSpec = {
    outputs: { type: "string" },
    stack: { type: "string", default: "dev" },
    platform: { type: "string" },
    concurrency: { type: "string", default: "4" },
    to: { type: "string" },
    "older-than": { type: "string" },
    "dry-run": { type: "boolean", default: false },
    images: { type: "string" },
    deep: { type: "boolean", default: false },
    repair: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
} as const;

/** `parseArgs`, with its errors pointing at `--help`. */
function parseToolArgs<T extends ParseArgsConfig["options"]>(
    args: string[],
    options: T,
    allowPositionals = false,
) {
    try {
        return parseArgs({ args, options, strict: true, allowPositionals });
    } catch (error) {
        throw new UsageError(`${(error as Error).message}; see --help`);
    }
}

/** Each subcommand: whether it takes a BUNDLE path, and what it runs. */
const subcommands: Record<string, { takesBundle: boolean; run: (run: Run) => Promise<number> }> = {
    prewarm: { takesBundle: false, run: runPrewarm },
    verify: { takesBundle: false, run: runVerify },
    status: { takesBundle: false, run: runStatus },
    prune: { takesBundle: false, run: runPrune },
    export: { takesBundle: true, run: runExport },
    import: { takesBundle: true, run: runImport },
};

async function main(argv: string[]): Promise<number> {
    const [name, ...rest] = argv;
    const subcommand = Object.hasOwn(subcommands, name) ? subcommands[name] : undefined;
    if (!subcommand) throw new UsageError(usage);
    const { values, positionals } = parseToolArgs(rest, optionSpec, subcommand.takesBundle);
    if (values.help) {
        console.log(usage);
        return 0;
    }
    if (subcommand.takesBundle && positionals.length !== 1)
        fail(`${name} takes one BUNDLE path, e.g. npm run ${name} -- talos-images.tar`);
    const platforms = values.platform === undefined ? undefined : parsePlatforms(values.platform);
    const concurrency = parseConcurrency(values.concurrency);
    if (values.repair && !values.deep)
        fail("--repair goes with --deep: npm run verify -- --deep --repair");
    const stack = values.outputs
        ? fromOutputs(readOutputsDocument(values.outputs))
        : fromStackConfig(path.join(projectDir, `Pulumi.${values.stack}.yaml`), values.stack);
    // Every `docker` command of the tools goes to the caches' engine.
    const docker = dockerCli(stack.dockerHost);
    // What killed tools left: before this one starts views of its own.
    await removeStaleViews(docker, stack.caches);
    return subcommand.run({
        values,
        bundle: positionals[0],
        stack,
        platforms,
        concurrency,
        docker,
    });
}

/** `--platform`: a comma-separated list of os/arch[/variant]. */
function parsePlatforms(list: string): Platform[] {
    return list
        .split(",")
        .map(
            (text) =>
                parsePlatform(text) ??
                fail(`--platform: ${JSON.stringify(text)} is not os/arch[/variant]`),
        );
}

function parseConcurrency(text: string): number {
    const concurrency = Number(text);
    if (!Number.isInteger(concurrency) || concurrency < 1)
        fail(`--concurrency: ${text} is not a positive integer`);
    return concurrency;
}

/**
 * The tool could not run: one line on stderr (a ConfigError lists each key on its own line), or
 * under `--json` one JSON document on stdout, so CI always gets what it asked for. A stack trace
 * only with PULLTHROUGH_DEBUG set.
 */
function reportFailure(error: unknown, json: boolean): void {
    const message = error instanceof Error ? error.message : String(error);
    if (json) console.log(JSON.stringify(failureJson(message), null, 2));
    else console.error(`error: ${message}`);
    if (process.env.PULLTHROUGH_DEBUG) console.error(error);
}

/** How long an interrupted tool may take to remove what it made (its views) before it exits. */
const unwindMs = 20_000;

if (require.main === module) {
    const argv = process.argv.slice(2);
    const run = main(argv);
    untilInterrupted(run).then(
        (code) => process.exit(code),
        async (error: unknown) => {
            if (error instanceof Interrupted)
                await Promise.race([run.catch(() => undefined), sleep(unwindMs)]);
            reportFailure(error, argv.includes("--json"));
            process.exit(error instanceof Interrupted ? error.exitCode : 2);
        },
    );
}
