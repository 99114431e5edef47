/**
 * What `npm run status` reports for each cache, worked out from what tools/status.ts reads: the
 * front's access log, the registry's Prometheus metrics, the container's health and its volume.
 * Pure: the figures, whether a cache needs attention, and the screen.
 */
import { contentRequest, readAccessLog, wasServed } from "./access-log";
import { CacheHealth } from "./container-facts";
import { formatBytes, formatUtc } from "./format";
import { CacheEndpoint } from "./plan";
import { CacheCheck } from "./storage-layout";

/** What `status` shows for one cache. */
export interface CacheStatus {
    registry: string;
    port: number;
    /** The configured `mode`. */
    mode: string;
    /** What the cache serves now: `proxy` or `offline` (its healthcheck's first line). */
    serving: string;
    /** Docker's health status, or `missing` when there is no such container. */
    health: string;
    /** What the last failed healthcheck said (a full disk, say), or what clients get instead of the cache. */
    problem?: string;
    /** What `GET /v2/` at the cache's published port got: `200 OK`, or the failure. */
    frontAnswer: string;
    degraded: boolean;
    /** Bytes the volume holds, and what is left on its file system. */
    disk: { usedBytes: number; freeBytes: number };
    /**
     * Blobs begun and not committed, part of `usedBytes`: fetches in flight, and what cut fetches
     * left until the supervisor removes it.
     */
    partialUploads: { count: number; bytes: number };
    repositories: number;
    images: number;
    /** When the counters below started: the front's and the registry's container starts. */
    since: { front: string; registry: string };
    /** Content requests (manifests and blobs) clients made. */
    requests: number;
    /** Requests served with no upstream fetch. */
    hits: number;
    /** Requests the registry had to fetch upstream for. */
    misses: number;
    servedBytes: number;
    upstreamBytes: number;
    /** hits / requests; null before the first request. */
    hitRatio: number | null;
    /** Bytes served that did not cross the upstream link. */
    savedBytes: number;
    /** The last `verify --deep` of this cache; null if it was never checked. */
    lastCheck: CacheCheck | null;
}

/** Content requests answered with 2xx or 304 on `port`, and the bytes sent, from the front's log. */
export function readFrontLog(log: string, port: number): { requests: number; bytes: number } {
    const served = readAccessLog(log, port).filter(
        (entry) => contentRequest(entry) !== undefined && wasServed(entry),
    );
    return {
        requests: served.length,
        bytes: served.reduce((total, entry) => total + entry.bytes, 0),
    };
}

/** Sums a Prometheus counter over its label sets (`name{type="blob"} 3`, `name 3`). */
export function counter(metrics: string, name: string): number {
    let total = 0;
    for (const line of metrics.split("\n")) {
        const match = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`).exec(line.trim());
        if (match) total += Number(match[1]);
    }
    return total;
}

/** Repositories and images (tags) in a registry's storage, from the paths of its tag links. */
export function countImages(tagLinks: string): { repositories: number; images: number } {
    const links = tagLinks.split("\n").filter(Boolean);
    const repositories = new Set(links.map((link) => link.split("/_manifests/")[0]));
    return { repositories: repositories.size, images: links.length };
}

/** What status read about one running cache. */
export interface CacheReadings {
    health: CacheHealth;
    /** What `GET /v2/` at the published port got, and whether that lets clients pull. */
    front: { ok: boolean; answer: string };
    disk: CacheStatus["disk"];
    uploads: readonly { size: number }[];
    /** The paths of the tag links under the registry's storage. */
    tagLinks: string;
    served: { requests: number; bytes: number };
    metrics: string;
    since: CacheStatus["since"];
    lastCheck: CacheCheck | null;
}

/** One cache's status from what was read; the cause of trouble first. */
export function cacheStatus(cache: CacheEndpoint, readings: CacheReadings): CacheStatus {
    const { health, front, lastCheck } = readings;
    const problem =
        health.problem ??
        (front.ok ? undefined : `clients get ${front.answer} at ${cache.hostEndpoint}/v2/`);
    const misses = counter(readings.metrics, "registry_proxy_misses_total");
    const upstreamBytes = counter(readings.metrics, "registry_proxy_pulled_bytes_total");
    return {
        registry: cache.registry,
        port: cache.port,
        mode: cache.mode,
        serving: health.serving,
        health: health.status,
        problem,
        frontAnswer: front.answer,
        degraded:
            health.status !== "healthy" ||
            problem !== undefined ||
            (cache.mode !== "offline" && health.serving === "offline") ||
            unrepaired(lastCheck) > 0,
        disk: readings.disk,
        partialUploads: {
            count: readings.uploads.length,
            bytes: readings.uploads.reduce((total, upload) => total + upload.size, 0),
        },
        ...countImages(readings.tagLinks),
        since: readings.since,
        ...figures(readings.served.requests, misses, readings.served.bytes, upstreamBytes),
        lastCheck,
    };
}

/** The status of a cache with no container. */
export function missingCacheStatus(cache: CacheEndpoint): CacheStatus {
    return {
        registry: cache.registry,
        port: cache.port,
        mode: cache.mode,
        serving: "nothing",
        health: "missing",
        problem: `no container ${cache.container}; run npm run up`,
        frontAnswer: "",
        degraded: true,
        disk: { usedBytes: 0, freeBytes: 0 },
        partialUploads: { count: 0, bytes: 0 },
        repositories: 0,
        images: 0,
        since: { front: "", registry: "" },
        ...figures(0, 0, 0, 0),
        lastCheck: null,
    };
}

/** Bad blobs the last check found and did not remove: the cache serves them broken. */
const unrepaired = (check: CacheCheck | null) =>
    check
        ? [...check.corrupt, ...check.missing].filter((digest) => !check.repaired.includes(digest))
              .length
        : 0;

/** The last deep check in a line. */
function formatCheck(check: CacheCheck | null): string {
    if (!check) return "never re-hashed (npm run verify -- --deep)";
    const when = formatUtc(new Date(check.checkedAt));
    const bad = check.corrupt.length + check.missing.length;
    const found =
        bad === 0
            ? "all intact"
            : `${check.corrupt.length} corrupt, ${check.missing.length} missing${check.repaired.length > 0 ? `, ${check.repaired.length} removed by --repair` : ""}`;
    return `${when}: ${check.blobs} blobs (${formatBytes(check.bytes)}) re-hashed, ${found}`;
}

function figures(requests: number, misses: number, servedBytes: number, upstreamBytes: number) {
    const hits = Math.max(0, requests - misses);
    return {
        requests,
        hits,
        misses,
        servedBytes,
        upstreamBytes,
        hitRatio: requests > 0 ? hits / requests : null,
        savedBytes: Math.max(0, servedBytes - upstreamBytes),
    };
}

/** The part of a volume in partial uploads, when there is any. */
function formatUploads({ count, bytes }: CacheStatus["partialUploads"]): string {
    return count === 0
        ? ""
        : ` (${formatBytes(bytes)} of it in ${count} partial upload${count === 1 ? "" : "s"})`;
}

/** A bar of `width` cells for a fraction from 0 to 1. */
export function bar(fraction: number, width = 10): string {
    const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
    return `${"█".repeat(filled)}${"░".repeat(width - filled)}`;
}

/** The status screen: a block per cache, bars where a terminal shows them. */
export function formatStatus(statuses: readonly CacheStatus[], bars: boolean): string {
    const percent = (value: number) => `${Math.round(value * 100)}%`;
    const blocks = statuses.map((status) => {
        const diskShare =
            status.disk.usedBytes / Math.max(1, status.disk.usedBytes + status.disk.freeBytes);
        const ratio =
            status.hitRatio === null
                ? "no requests yet"
                : `${bars ? `${bar(status.hitRatio)} ` : ""}${percent(status.hitRatio)} (${status.hits} of ${status.requests} requests; ${status.misses} fetched upstream)`;
        return [
            `${status.degraded ? "!" : " "} ${status.registry}  :${status.port}  mode ${status.mode}, serving ${status.serving}, ${status.health}${status.problem ? `: ${status.problem}` : ""}`,
            `    disk   ${bars ? `${bar(diskShare)} ` : ""}${formatBytes(status.disk.usedBytes)} held${formatUploads(status.partialUploads)}, ${formatBytes(status.disk.freeBytes)} free; ${status.repositories} repositories, ${status.images} images`,
            `    hits   ${ratio}`,
            `    bytes  ${formatBytes(status.servedBytes)} served, ${formatBytes(status.upstreamBytes)} from upstream, ${formatBytes(status.savedBytes)} saved`,
            `    check  ${formatCheck(status.lastCheck)}`,
        ].join("\n");
    });
    const degraded = statuses.filter((status) => status.degraded).length;
    const started = statuses.map((status) => status.since.front).find(Boolean);
    return [
        ...blocks,
        "",
        `Counters since the containers started${started ? ` (front: ${started})` : ""}.`,
        degraded === 0
            ? `All ${statuses.length} caches are healthy.`
            : `${degraded} of ${statuses.length} caches need attention (marked !).`,
    ].join("\n");
}
