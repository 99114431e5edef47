/**
 * What each tool prints under `--json`: one builder per tool, so the shapes the README's tool
 * table quotes can be checked against the code (tests/unit/docs.test.ts).
 */
import { CacheStatus, CertificateStatus, UnservedRegistry } from "../core/status-report";
import { CacheCheck } from "../core/storage-layout";
import { ExportReport } from "./export";
import { ImportReport } from "./import";
import { Finding, Repair } from "./integrity";
import { PrewarmResult, VerifyResult } from "./warm";

export const prewarmJson = (images: readonly PrewarmResult[], seconds: number) => ({
    ok: images.every((image) => image.ok),
    seconds,
    images,
});

/** `deep` with `--deep`, `repairs` with `--repair`. */
export const verifyJson = (
    images: readonly VerifyResult[],
    platforms: readonly string[],
    deep?: { seconds: number; checks: CacheCheck[]; findings: Finding[] },
    repairs?: readonly Repair[],
) => ({
    ok: images.every((image) => image.present),
    platforms,
    images,
    ...(deep ? { deep } : {}),
    ...(repairs ? { repairs } : {}),
});

/** `unserved`: registries clients asked the one port for and no cache serves. */
export const statusJson = (
    caches: readonly CacheStatus[],
    unserved: readonly UnservedRegistry[],
    certificate?: CertificateStatus,
) => ({
    ok: caches.every((cache) => !cache.degraded) && (certificate?.daysLeft ?? 1) > 0,
    caches,
    unserved,
    ...(certificate ? { certificate } : {}),
});

export const exportJson = (report: ExportReport) => ({ ok: true, ...report });

export const importJson = (report: ImportReport) => ({ ok: true, ...report });

/** Any tool that could not run, or export's named image not whole in its cache. */
export const failureJson = (error: string) => ({ ok: false, error });
