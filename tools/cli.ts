/**
 * `npm run prewarm`, `verify`, `status`, `prune`, `export` and `import`. All take the caches
 * (and the image list, and the engine they run on) from the stack: `--outputs FILE` (or `-` for
 * stdin) reads `pulumi stack output --json`; otherwise the stack's config file is planned with the
 * same code `pulumi up` runs, so there is one source of truth.
 *
 * Exit codes: 0 all good; 1 an image failed to warm or is missing (or corrupt), a cache needs
 * attention, or prune could not get under its budget; 2 the tool could not run (bad arguments or
 * config, a cache unreachable, an image without a cache, a bundle that cannot be imported).
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { ParseArgsConfig, parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import { Platform, formatPlatform, hostPlatform, parsePlatform } from "../core/images";
import { CacheEndpoint, cacheEndpoint, planCaches } from "../core/plan";
import { planPrewarm } from "../core/prewarm";
import { MirrorsOutput, cacheEndpoints } from "../core/render";
import { engineEnv } from "../host/engine";
import { readTalosImageSet } from "../host/talosctl";
import { configNamespace, encodeConfig, parseSettings, parseSize } from "../mirrors";
import { cacheTrouble, withCacheViews } from "./cache-view";
import { formatBytes } from "./format";
import { formatStatus, readCacheStatus } from "./status";
import {
    applyPrune,
    formatPrune,
    parseAge,
    planPrune,
    pruneReport,
    readCacheContents,
    withinBudget,
} from "./prune";
import { ExportReport, NotHeld, exportBundle, formatExport, formatExportedImage } from "./export";
import { ImportedImage, formatImport, formatImportedImage, importBundle } from "./import";
import {
    deepCheck,
    formatDeepSummary,
    formatFindings,
    formatRepairs,
    recordChecks,
    repair,
} from "./integrity";
import { RegistryClient } from "./registry-client";
import { heldReferences, readStorage, storedImages } from "./storage";
import { exportJson, failureJson, importJson, prewarmJson, statusJson, verifyJson } from "./json";
import { RoutedImage, UsageError } from "./types";
import {
    PrewarmEvent,
    PrewarmResult,
    VerifyResult,
    prewarmUntilStored,
    routeImages,
    storeRounds,
    verify,
} from "./warm";

const projectDir = path.resolve(__dirname, "..");
const sizeHint = "a size such as 20GiB, 500MB or 1.5TB";

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

/** The caches and images a run works on, as the stack outputs carry them. */
export interface StackView {
    caches: CacheEndpoint[];
    images: string[];
    /** Which Talos image set `talos` stands for, when it is not the release's own. */
    notice?: string;
    /** The `maxSize` budget, when planned from the stack config. */
    maxSize?: string;
    /** The engine the caches run on, when not this machine's. */
    dockerHost?: string;
}

/** Reads the `mirrors` and `prewarmImages` stack outputs. */
export function fromOutputs(document: string): StackView {
    let outputs: {
        mirrors?: MirrorsOutput;
        prewarmImages?: string[];
        dockerHost?: string | null;
    };
    try {
        outputs = JSON.parse(document);
    } catch {
        throw new UsageError(
            "--outputs: not JSON; expected the output of `npm run --silent outputs` (`pulumi stack output --json`)",
        );
    }
    if (!outputs.mirrors || typeof outputs.mirrors !== "object")
        throw new UsageError(
            "--outputs: no `mirrors` output; expected the output of `npm run --silent outputs` (`pulumi stack output --json`)",
        );
    return {
        caches: cacheEndpoints(outputs.mirrors),
        images: outputs.prewarmImages ?? [],
        dockerHost: outputs.dockerHost ?? undefined,
    };
}

/**
 * Plans the stack from its config file as `pulumi up` would. Secure values (credentials) are
 * skipped: the caches hold the credentials, the tools never need them.
 */
export function fromStackConfig(configFile: string, stack: string): StackView {
    let text: string;
    try {
        text = readFileSync(configFile, "utf8");
    } catch {
        throw new UsageError(
            `no stack config at ${configFile}; pass --stack NAME, or --outputs FILE with \`npm run --silent outputs\``,
        );
    }
    const document = (parseYaml(text) ?? {}) as { config?: Record<string, unknown> };
    const plain = Object.entries(document.config ?? {}).filter(
        ([, value]) => !(typeof value === "object" && value !== null && "secure" in value),
    );
    const settings = parseSettings(encodeConfig(Object.fromEntries(plain)));
    const caches = planCaches(settings, { project: configNamespace, stack });
    let notice: string | undefined;
    const images = planPrewarm(settings, caches, () => {
        const talosImages = readTalosImageSet(settings.cluster);
        notice = talosImages.notice;
        return talosImages;
    });
    return {
        caches: caches.map(cacheEndpoint),
        images,
        ...(notice ? { notice } : {}),
        maxSize: settings.maxSize,
        dockerHost: settings.dockerHost,
    };
}

/** Fixed-width columns, first row the header. */
function table(rows: string[][]): string {
    const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
    return rows
        .map((row) =>
            row
                .map((cell, column) => cell.padEnd(widths[column]))
                .join("  ")
                .trimEnd(),
        )
        .join("\n");
}

export function formatVerifyReport(results: readonly VerifyResult[]): string {
    const statusOf = (result: VerifyResult) =>
        result.present ? "present" : result.corrupt?.length ? "corrupt" : "missing";
    const rows = results.map((result) => [
        result.image,
        statusOf(result),
        result.present
            ? `${result.blobs} blobs, ${formatBytes(result.bytes)}`
            : (result.reason ?? ""),
    ]);
    const count = (status: string) => results.filter((r) => statusOf(r) === status).length;
    const [missing, corrupt] = [count("missing"), count("corrupt")];
    const of = `of ${results.length} images`;
    const summary =
        missing + corrupt === 0
            ? `All ${results.length} images are in the caches.`
            : corrupt === 0
              ? `${missing} ${of} are missing.`
              : missing === 0
                ? `${corrupt} ${of} are corrupt.`
                : `${missing} ${of} are missing and ${corrupt} corrupt.`;
    return `${table([["IMAGE", "STATUS", "DETAIL"], ...rows])}\n\n${summary}`;
}

export function formatPrewarmSummary(results: readonly PrewarmResult[], seconds: number): string {
    const warmed = results.filter((result) => result.ok);
    const bytes = warmed.reduce((sum, result) => sum + result.bytes, 0);
    const transferred = results.reduce((sum, result) => sum + result.transferred, 0);
    const failed = results
        .filter((result) => !result.ok)
        .map((result) => `  ${result.image}: ${result.error}`);
    return [
        `Warmed ${warmed.length} of ${results.length} images (${formatBytes(bytes)}); read ${formatBytes(transferred)} through the caches in ${seconds.toFixed(1)} s (${formatBytes(transferred / Math.max(seconds, 0.001))}/s).`,
        ...(failed.length > 0 ? ["Failed:", ...failed] : []),
    ].join("\n");
}

/** How often the status line is redrawn on a terminal, at most. */
const redrawIntervalMs = 100;
/** How often a status line is printed without a terminal (CI, the Command inside `pulumi up`). */
export const progressIntervalMs = 10_000;

/**
 * Progress: a line per finished image, and the running total (images done, bytes, rate). On a
 * terminal the total is one status line redrawn at most every 100 ms; elsewhere it is a plain
 * line every 10 s, so a long pull never goes quiet. Call the returned `stop` when done.
 */
export function progressReporter(
    total: number,
    stream: Pick<NodeJS.WriteStream, "write" | "isTTY">,
    now: () => number = Date.now,
): { onEvent: (event: PrewarmEvent) => void; stop: () => void } {
    let bytes = 0;
    let finished = 0;
    const started = now();
    let drawn = 0;
    const status = () =>
        `[${finished}/${total} images, ${total - finished} left] ${formatBytes(bytes)} read, ${formatBytes(bytes / Math.max((now() - started) / 1000, 0.001))}/s`;
    const ticker = stream.isTTY
        ? undefined
        : setInterval(() => stream.write(`${status()}\n`), progressIntervalMs);
    ticker?.unref();
    const onEvent = (event: PrewarmEvent) => {
        if (event.kind === "bytes") {
            bytes += event.bytes;
            if (!stream.isTTY || now() - drawn < redrawIntervalMs) return;
            drawn = now();
            stream.write(`\r\x1b[K${status()}`);
            return;
        }
        if (event.kind !== "finished") return;
        finished++;
        const { result } = event;
        const line = result.ok
            ? `ok      ${result.image}  ${result.blobs} blobs, ${formatBytes(result.bytes)}, ${formatBytes(result.transferred)} read, ${result.seconds.toFixed(1)} s\n`
            : `FAILED  ${result.image}: ${result.error}\n`;
        stream.write(stream.isTTY ? `\r\x1b[K${line}${status()}` : line);
        if (stream.isTTY && finished === total) stream.write("\n");
    };
    return { onEvent, stop: () => clearInterval(ticker) };
}

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

/** Reads `--outputs`: a file, or stdin for "-". */
function readOutputsDocument(file: string): string {
    try {
        return readFileSync(file === "-" ? 0 : file, "utf8");
    } catch (error) {
        const reason =
            (error as NodeJS.ErrnoException).code === "ENOENT"
                ? "no such file"
                : String((error as Error).message);
        throw new UsageError(
            `--outputs: cannot read ${file} (${reason}); expected a file holding \`npm run --silent outputs\``,
        );
    }
}

const commands = ["prewarm", "verify", "status", "prune", "export", "import"] as const;
type Command = (typeof commands)[number];

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

/** A parsed command line, and the stack it works on. */
interface Run {
    values: ReturnType<typeof parseToolArgs<typeof optionSpec>>["values"];
    /** The BUNDLE of export and import. */
    bundle?: string;
    stack: StackView;
    /** `--platform`, when given. */
    platforms?: Platform[];
    concurrency: number;
}

async function main(argv: string[]): Promise<number> {
    const [command, ...rest] = argv;
    if (!commands.includes(command as Command)) throw new UsageError(usage);
    const takesBundle = command === "export" || command === "import";
    const { values, positionals } = parseToolArgs(rest, optionSpec, takesBundle);
    if (values.help) {
        console.log(usage);
        return 0;
    }
    if (takesBundle && positionals.length !== 1)
        fail(`${command} takes one BUNDLE path, e.g. npm run ${command} -- talos-images.tar`);
    const platforms = values.platform
        ? values.platform
              .split(",")
              .map(
                  (text) =>
                      parsePlatform(text) ??
                      fail(`--platform: ${JSON.stringify(text)} is not os/arch[/variant]`),
              )
        : undefined;
    const concurrency = Number(values.concurrency);
    if (!Number.isInteger(concurrency) || concurrency < 1)
        fail(`--concurrency: ${values.concurrency} is not a positive integer`);
    if (values.repair && !values.deep)
        fail("--repair goes with --deep: npm run verify -- --deep --repair");

    const stack = values.outputs
        ? fromOutputs(readOutputsDocument(values.outputs))
        : fromStackConfig(path.join(projectDir, `Pulumi.${values.stack}.yaml`), values.stack!);
    // Every `docker` command of the tools goes to the caches' engine.
    if (stack.dockerHost) Object.assign(process.env, engineEnv(stack.dockerHost));
    const run: Run = { values, bundle: positionals[0], stack, platforms, concurrency };
    return {
        status: runStatus,
        prune: runPrune,
        export: runExport,
        import: runImport,
        prewarm: runPrewarm,
        verify: runVerify,
    }[command as Command](run);
}

async function runStatus({ stack, values }: Run): Promise<number> {
    const statuses = await Promise.all(stack.caches.map(readCacheStatus));
    const report = statusJson(statuses);
    console.log(
        values.json
            ? JSON.stringify(report, null, 2)
            : formatStatus(statuses, Boolean(process.stdout.isTTY)),
    );
    return report.ok ? 0 : 1;
}

async function runPrune({ stack, values }: Run): Promise<number> {
    const budget = values.to ?? stack.maxSize;
    const targetBytes =
        budget === undefined
            ? undefined
            : (parseSize(budget) ?? fail(`--to: ${JSON.stringify(budget)} is not ${sizeHint}`));
    const age = values["older-than"];
    const olderThanSeconds =
        age === undefined
            ? undefined
            : (parseAge(age) ??
              fail(`--older-than: ${JSON.stringify(age)} is not an age such as 7d, 36h or 90m`));
    if (targetBytes === undefined && olderThanSeconds === undefined)
        fail("nothing to prune to: pass --to SIZE or --older-than AGE, or set pullthrough:maxSize");
    const keep = routeImages(stack.images, stack.caches).map(({ image }) => image);
    const plan = planPrune(await readCacheContents(stack.caches), {
        targetBytes,
        olderThanSeconds,
        keep,
        now: Math.floor(Date.now() / 1000),
    });
    if (!values["dry-run"]) await applyPrune(stack.caches, plan);
    const ok = withinBudget(plan);
    console.log(
        values.json
            ? JSON.stringify(pruneReport(plan, values["dry-run"]!, ok), null, 2)
            : formatPrune(plan, values["dry-run"]!),
    );
    return ok ? 0 : 1;
}

/**
 * The images `--images` names: every image the caches hold, the prewarm list, or a list of
 * references; each paired with its cache.
 */
async function selectImages(which: string, stack: StackView): Promise<RoutedImage[]> {
    if (which === "prewarm") return routeImages(stack.images, stack.caches);
    if (which !== "all") return routeImages(which.split(",").filter(Boolean), stack.caches);
    const held = await Promise.all(
        stack.caches.map(async (cache) =>
            heldReferences(cache.registry, storedImages(await readStorage(cache.container))),
        ),
    );
    return routeImages(held.flat(), stack.caches);
}

/** The caches of `routed` images, each once, checked to answer; fails naming the first that does not. */
async function reachableCaches(routed: readonly RoutedImage[]): Promise<CacheEndpoint[]> {
    const caches = [...new Map(routed.map(({ cache }) => [cache.registry, cache])).values()];
    await Promise.all(
        caches.map((cache) =>
            new RegistryClient(cache.hostEndpoint, cache.registry).ping().catch((error: Error) => {
                throw new UsageError(
                    `the ${cache.registry} cache: ${error.message}; is the stack up (npm run up)?`,
                );
            }),
        ),
    );
    return caches;
}

async function runExport({ stack, values, bundle, platforms, concurrency }: Run): Promise<number> {
    const which = values.images ?? "all";
    const routed = await selectImages(which, stack);
    if (routed.length === 0) fail("the caches hold no images to export");
    const caches = await reachableCaches(routed);
    const report = await withCacheViews(caches, (views) =>
        exportBundle(path.resolve(bundle!), routed, views, {
            platforms,
            concurrency,
            skipIncomplete: which === "all",
            onImage: values.json ? undefined : (image) => console.log(formatExportedImage(image)),
        }),
    ).catch((error: unknown): ExportReport | undefined => {
        if (error instanceof NotHeld) {
            if (values.json) console.log(JSON.stringify(failureJson(error.message), null, 2));
            else console.error(`error: ${error.message}; nothing was written`);
            return undefined;
        }
        throw error;
    });
    if (!report) return 1;
    console.log(values.json ? JSON.stringify(exportJson(report), null, 2) : formatExport(report));
    return 0;
}

async function runImport({ stack, values, bundle }: Run): Promise<number> {
    const onImage = values.json
        ? undefined
        : (image: ImportedImage) => console.log(formatImportedImage(image));
    const report = await importBundle(bundle!, stack.caches, onImage);
    console.log(values.json ? JSON.stringify(importJson(report), null, 2) : formatImport(report));
    return 0;
}

async function runVerify({ stack, values, platforms, concurrency }: Run): Promise<number> {
    const routed = await selectImages(values.images ?? "prewarm", stack);
    if (routed.length === 0) {
        console.log("No images to work on: set pullthrough:prewarm (see README).");
        return 0;
    }
    const caches = await reachableCaches(routed);
    const checkedPlatforms = platforms ?? [hostPlatform()];
    const checked = await withCacheViews(caches, (views) =>
        verify(routed, views, checkedPlatforms, concurrency),
    );
    const deep = values.deep ? await deepCheck(checked, caches) : undefined;
    const repairs = deep && values.repair ? await repair(deep.findings, caches) : [];
    if (deep)
        await recordChecks(
            deep.checks.map((check) => ({
                ...check,
                repaired: repairs.find((done) => done.registry === check.registry)?.removed ?? [],
            })),
            caches,
        );
    // A missing image of a cache that cannot store is that cache's trouble: say so first.
    const results = await Promise.all(
        // `content` is what the deep check read, not part of the report.
        (deep?.results ?? checked).map(async ({ content, ...result }) => {
            const cache = caches.find((candidate) => candidate.registry === result.registry)!;
            const trouble =
                result.present || result.corrupt ? undefined : await cacheTrouble(cache);
            return trouble ? { ...result, reason: `${trouble} (${result.reason})` } : result;
        }),
    );
    const report = verifyJson(
        results,
        checkedPlatforms.map(formatPlatform),
        deep && { seconds: deep.seconds, checks: deep.checks, findings: deep.findings },
        values.repair ? repairs : undefined,
    );
    if (values.json) {
        console.log(JSON.stringify(report, null, 2));
    } else {
        // The cause first: each corrupt blob and what it breaks.
        const findings = deep && deep.findings.length > 0 ? `${formatFindings(deep)}\n\n` : "";
        console.log(`${findings}${formatVerifyReport(results)}`);
        if (deep) console.log(formatDeepSummary(deep));
        if (repairs.length > 0) console.log(formatRepairs(repairs));
    }
    return report.ok ? 0 : 1;
}

async function runPrewarm({ stack, values, platforms, concurrency }: Run): Promise<number> {
    if (stack.notice) console.error(stack.notice);
    if (stack.images.length === 0) {
        console.log("No images to work on: set pullthrough:prewarm (see README).");
        return 0;
    }
    const routed = routeImages(stack.images, stack.caches);
    const caches = await reachableCaches(routed);
    const byRegistry = new Map(caches.map((cache) => [cache.registry, cache]));
    const troubleOf = (registry: string) => cacheTrouble(byRegistry.get(registry)!);
    const started = Date.now();
    const progress = values.json ? undefined : progressReporter(routed.length, process.stdout);
    const onRetry = (images: number, round: number) =>
        console.error(
            `${images} image(s) served but not yet stored by their cache; pulling again (round ${round} of ${storeRounds})`,
        );
    const onEvent = progress?.onEvent;
    const results = await withCacheViews(caches, (views) =>
        prewarmUntilStored(
            routed,
            { platforms: platforms ?? [hostPlatform()], concurrency, onEvent, onRetry, troubleOf },
            views,
        ),
    ).finally(() => progress?.stop());
    const seconds = (Date.now() - started) / 1000;
    const report = prewarmJson(results, seconds);
    console.log(
        values.json
            ? JSON.stringify(report, null, 2)
            : `\n${formatPrewarmSummary(results, seconds)}`,
    );
    return report.ok ? 0 : 1;
}

function fail(message: string): never {
    throw new UsageError(message);
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

if (require.main === module) {
    const argv = process.argv.slice(2);
    main(argv).then(
        (code) => process.exit(code),
        (error: unknown) => {
            reportFailure(error, argv.includes("--json"));
            process.exit(2);
        },
    );
}
