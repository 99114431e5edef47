/**
 * The tools' subcommands, one function each: what `npm run <tool>` does once its command line
 * is parsed (tools/cli.ts) and its stack read (tools/stack.ts). Each returns its exit code.
 */
import * as path from "node:path";
import { formatPlatform, hostPlatform, Platform } from "../core/images";
import { CacheEndpoint } from "../core/plan";
import { formatPrune, parseAge, planPrune, pruneReport, withinBudget } from "../core/prune-plan";
import { certificateStatus, formatStatus, unservedRegistries } from "../core/status-report";
import { heldReferences, storedImages } from "../core/storage-layout";
import { parseSize } from "../core/format";
import { cacheTrouble, withCacheViews } from "./cache-view";
import { DockerCli } from "./docker";
import {
    CorruptInCache,
    ExportReport,
    NotHeld,
    exportImages,
    formatExport,
    formatExportedImage,
} from "./export";
import { ociBundle } from "../host/oci-layout";
import { talosCache, talosCacheOci } from "../host/talos-cache";
import { talosImagesNotice } from "../host/talosctl";
import { ImportedImage, formatImport, formatImportedImage, importBundle } from "./import";
import {
    deepCheck,
    formatDeepSummary,
    formatFindings,
    formatRepairs,
    recordChecks,
    repair,
} from "./integrity";
import { exportJson, failureJson, importJson, prewarmJson, statusJson, verifyJson } from "./json";
import { readFrontLedger } from "./ledger";
import { applyPrune, readCacheContents } from "./prune";
import { FrontAccess, frontClient, readFrontAccess, readFrontCertificate } from "./front";
import { formatPrewarmSummary, formatVerifyReport, progressReporter } from "./report";
import { StackView } from "./stack";
import { readCacheStatus } from "./status";
import { readStorage } from "./storage";
import { EnvironmentError, RoutedImage, fail } from "./types";
import { prewarmUntilStored, routeImages, storeRounds, verify } from "./warm";

const sizeHint = "a size such as 20GiB, 500MB or 1.5TB";

/** A tool's result: its JSON document under `--json`, else its screen. */
function printResult(values: Run["values"], json: object, screen: () => string): void {
    console.log(values.json ? JSON.stringify(json, null, 2) : screen());
}

/** A parsed command line, the stack it works on, and the docker CLI that reaches its caches. */
export interface Run {
    /** The tool's own flags, as given (a flag not given is undefined). */
    values: {
        to?: string;
        "older-than"?: string;
        "dry-run"?: boolean;
        images?: string;
        format?: string;
        deep?: boolean;
        repair?: boolean;
        json?: boolean;
    };
    /** The BUNDLE of export and import. */
    bundle?: string;
    stack: StackView;
    /** `--platform`, when given. */
    platforms?: Platform[];
    concurrency: number;
    docker: DockerCli;
}

export async function runStatus({ stack, values, docker }: Run): Promise<number> {
    const ledger = await readFrontLedger(docker, stack.caches);
    const statuses = await Promise.all(
        stack.caches.map((cache) => readCacheStatus(docker, cache, ledger)),
    );
    const unserved = unservedRegistries(ledger);
    const pem = await readFrontCertificate(docker, stack.caches);
    const certificate = pem ? certificateStatus(pem, new Date()) : undefined;
    const report = statusJson(statuses, unserved, certificate);
    printResult(values, report, () =>
        formatStatus(statuses, Boolean(process.stdout.isTTY), unserved, certificate),
    );
    return report.ok ? 0 : 1;
}

export async function runPrune({ stack, values, docker }: Run): Promise<number> {
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
    const plan = planPrune(await readCacheContents(docker, stack.caches), {
        targetBytes,
        olderThanSeconds,
        keep,
        now: Math.floor(Date.now() / 1000),
    });
    const dryRun = values["dry-run"] ?? false;
    if (!dryRun) await applyPrune(docker, stack.caches, plan);
    const ok = withinBudget(plan);
    printResult(values, pruneReport(plan, dryRun, ok), () => formatPrune(plan, dryRun));
    return ok ? 0 : 1;
}

/**
 * The images `--images` names: every image the caches hold, the prewarm list, or a list of
 * references; each paired with its cache.
 */
async function selectImages(
    docker: DockerCli,
    which: string,
    stack: StackView,
): Promise<RoutedImage[]> {
    if (which === "prewarm") return routeImages(stack.images, stack.caches);
    if (which === "talos") {
        const set = stack.talosImages();
        const notice = talosImagesNotice(set);
        if (notice) console.error(notice);
        return routeImages(set.images, stack.caches);
    }
    if (which !== "all") return routeImages(which.split(",").filter(Boolean), stack.caches);
    const held = await Promise.all(
        stack.caches.map(async (cache) =>
            heldReferences(
                cache.registry,
                storedImages(await readStorage(docker, cache.container)),
            ),
        ),
    );
    return routeImages(held.flat(), stack.caches);
}

/**
 * The caches of `routed` images, each once, checked to answer, and how to reach their front;
 * fails naming the first that does not answer.
 */
async function reachableCaches(
    docker: DockerCli,
    routed: readonly RoutedImage[],
): Promise<{ caches: CacheEndpoint[]; front: FrontAccess }> {
    const caches = [...new Map(routed.map(({ cache }) => [cache.registry, cache])).values()];
    const front = await readFrontAccess(docker, caches);
    await Promise.all(
        caches.map((cache) =>
            frontClient(front, cache.hostEndpoint, cache.registry)
                .ping()
                .catch((error: Error) => {
                    throw new EnvironmentError(
                        `the ${cache.registry} cache: ${error.message}; is the stack up (npm run up)?`,
                    );
                }),
        ),
    );
    return { caches, front };
}

/** What `export --format` writes. */
export const exportFormats = ["oci", "talos-cache", "talos-cache-oci"] as const;
type ExportFormat = (typeof exportFormats)[number];

export async function runExport({
    stack,
    values,
    bundle,
    platforms,
    docker,
}: Run): Promise<number> {
    const format = (values.format ?? "oci") as ExportFormat;
    if (!exportFormats.includes(format))
        fail(`--format: ${JSON.stringify(format)} is not one of ${exportFormats.join(", ")}`);
    const talos = format !== "oci";
    const which = values.images ?? (talos ? "talos" : "all");
    // A Talos image cache is for the machines of one architecture, as cache-create makes it.
    const carried = platforms ?? (talos ? [hostPlatform()] : undefined);
    // Everything held is read in the export's own first pass over each cache.
    const selection =
        which === "all" ? { all: stack.caches } : await selectImages(docker, which, stack);
    const destination = path.resolve(bundle!);
    const writer =
        format === "oci"
            ? ociBundle(destination)
            : format === "talos-cache"
              ? talosCache(destination)
              : talosCacheOci(destination, carried![0]);
    const report = await exportImages(docker, destination, selection, writer, {
        platforms: carried,
        skipIncomplete: which === "all",
        onImage: values.json ? undefined : (image) => console.log(formatExportedImage(image)),
    }).catch((error: unknown): ExportReport | undefined => {
        if (error instanceof NotHeld || error instanceof CorruptInCache) {
            if (values.json) console.log(JSON.stringify(failureJson(error.message), null, 2));
            else console.error(`error: ${error.message}; nothing was written`);
            return undefined;
        }
        throw error;
    });
    if (!report) return 1;
    printResult(values, exportJson(report), () => formatExport(report));
    return 0;
}

export async function runImport({ stack, values, bundle, docker }: Run): Promise<number> {
    const dryRun = values["dry-run"] ?? false;
    const onImage = values.json
        ? undefined
        : (image: ImportedImage) => console.log(formatImportedImage(image, dryRun));
    const report = await importBundle(docker, bundle!, stack.caches, { dryRun, onImage });
    printResult(values, importJson(report), () => formatImport(report));
    return 0;
}

export async function runVerify({
    stack,
    values,
    platforms,
    concurrency,
    docker,
}: Run): Promise<number> {
    const routed = await selectImages(docker, values.images ?? "prewarm", stack);
    if (routed.length === 0) {
        console.log("No images to work on: set pullthrough:prewarm (see README).");
        return 0;
    }
    const { caches, front } = await reachableCaches(docker, routed);
    const checkedPlatforms = platforms ?? [hostPlatform()];
    const checked = await withCacheViews(docker, caches, front, (views) =>
        verify(routed, views, checkedPlatforms, concurrency),
    );
    const deep = values.deep ? await deepCheck(docker, checked, caches) : undefined;
    const repairs = deep && values.repair ? await repair(docker, deep.findings, caches) : [];
    if (deep)
        await recordChecks(
            docker,
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
                result.present || result.corrupt ? undefined : await cacheTrouble(docker, cache);
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

export async function runPrewarm({
    stack,
    values,
    platforms,
    concurrency,
    docker,
}: Run): Promise<number> {
    const which = values.images ?? "prewarm";
    if (which === "all") fail('prewarm --images takes "prewarm" or a list of references');
    if (which === "prewarm" && stack.notice) console.error(stack.notice);
    const routed = await selectImages(docker, which, stack);
    if (routed.length === 0) {
        console.log("No images to work on: set pullthrough:prewarm (see README).");
        return 0;
    }
    const { caches, front } = await reachableCaches(docker, routed);
    const byRegistry = new Map(caches.map((cache) => [cache.registry, cache]));
    const troubleOf = (registry: string) => cacheTrouble(docker, byRegistry.get(registry)!);
    const started = Date.now();
    const progress = values.json ? undefined : progressReporter(routed.length, process.stdout);
    const onRetry = (images: number, round: number) =>
        console.error(
            `${images} image(s) served but not yet stored by their cache; pulling again (round ${round} of ${storeRounds})`,
        );
    const onEvent = progress?.onEvent;
    const results = await withCacheViews(docker, caches, front, (views) =>
        prewarmUntilStored(
            routed,
            {
                platforms: platforms ?? [hostPlatform()],
                concurrency,
                front,
                onEvent,
                onRetry,
                troubleOf,
            },
            views,
        ),
    ).finally(() => progress?.stop());
    const seconds = (Date.now() - started) / 1000;
    const report = prewarmJson(results, seconds);
    printResult(values, report, () => `\n${formatPrewarmSummary(results, seconds)}`);
    return report.ok ? 0 : 1;
}
