/**
 * What `npm run status` reports for each cache, worked out from what tools/status.ts reads: the
 * front's ledger (core/ledger.ts), the upstream figures the cache's supervisor keeps in its
 * volume, the container's health and its volume. Pure: the figures, whether a cache needs
 * attention, and the screen.
 */
import { certificateExpiry, serverCertificateValidity } from "./tls";
import { CacheHealth } from "./container-facts";
import { Ledger, ServedFigures } from "./ledger";
import { formatBytes, formatUtc } from "./format";
import { CacheEndpoint } from "./plan";
import { CacheCheck, storageLayout } from "./storage-layout";

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
    /**
     * Since when the figures below count (ISO 8601): `requests` the front's ledger (requests,
     * hits, bytes served), `upstream` the cache's volume (misses, bytes from upstream). Empty
     * when there is nothing to count with.
     */
    since: { requests: string; upstream: string };
    /** Content requests (manifests and blobs) clients made. */
    requests: number;
    /** Requests served with no upstream fetch. */
    hits: number;
    /** Of the requests, those the front answered from its own cache (coalesced or repeated blobs). */
    frontHits: number;
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

/** What a cache fetched upstream, as its supervisor keeps it in the volume. */
export interface UpstreamFigures {
    /** Epoch seconds: when the volume began counting. */
    since: number;
    /** Requests the registry had to fetch upstream for. */
    misses: number;
    bytes: number;
}

/** The supervisor's `figures` line (`upstream <since> <misses> <bytes>`); undefined for anything else. */
export function parseUpstreamFigures(text: string): UpstreamFigures | undefined {
    const match = /^upstream (\d+) (\d+) (\d+)$/m.exec(text);
    return match
        ? { since: Number(match[1]), misses: Number(match[2]), bytes: Number(match[3]) }
        : undefined;
}

/** Repositories and images (tags) in a registry's storage, from the paths of its tag links. */
export function countImages(tagLinks: string): { repositories: number; images: number } {
    const links = tagLinks.split("\n").filter(Boolean);
    const repositories = new Set(links.map((link) => link.split(`/${storageLayout.tags}/`)[0]));
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
    /** The front's ledger: its figures for this cache and since when it counts (epoch seconds). */
    served: ServedFigures;
    servedSince?: number;
    /** Undefined when the cache keeps none (registry 2, which has no metrics). */
    upstream?: UpstreamFigures;
    lastCheck: CacheCheck | null;
}

const isoTime = (seconds?: number) =>
    seconds === undefined ? "" : new Date(seconds * 1000).toISOString();

/** One cache's status from what was read; the cause of trouble first. */
export function cacheStatus(cache: CacheEndpoint, readings: CacheReadings): CacheStatus {
    const { health, front, lastCheck } = readings;
    const problem =
        health.problem ??
        (front.ok ? undefined : `clients get ${front.answer} at ${cache.hostEndpoint}/v2/`);
    const { served, upstream } = readings;
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
        since: { requests: isoTime(readings.servedSince), upstream: isoTime(upstream?.since) },
        ...figures(served, upstream),
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
        since: { requests: "", upstream: "" },
        ...figures({ requests: 0, bytes: 0, frontHits: 0 }),
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

function figures(served: ServedFigures, upstream?: UpstreamFigures) {
    const { requests } = served;
    const misses = upstream?.misses ?? 0;
    const upstreamBytes = upstream?.bytes ?? 0;
    const hits = Math.max(0, requests - misses);
    return {
        requests,
        hits,
        frontHits: served.frontHits,
        misses,
        servedBytes: served.bytes,
        upstreamBytes,
        hitRatio: requests > 0 ? hits / requests : null,
        savedBytes: Math.max(0, served.bytes - upstreamBytes),
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

/** A registry clients asked the one port for, which no cache serves (nodes fetched it directly). */
export interface UnservedRegistry {
    /** The `ns` clients sent, lower case; `(none)` for requests without one. */
    registry: string;
    requests: number;
    /** The last such request, ISO 8601. */
    lastRequest: string;
}

/** The ledger's unrouted requests, most asked first. */
export function unservedRegistries(ledger: Ledger | undefined): UnservedRegistry[] {
    return [...(ledger?.unrouted ?? [])]
        .map(([registry, { requests, last }]) => ({
            registry,
            requests,
            lastRequest: new Date(last * 1000).toISOString(),
        }))
        .sort((a, b) => b.requests - a.requests || a.registry.localeCompare(b.registry));
}

/** One line per unserved registry: what to do about it. */
function formatUnserved(unserved: readonly UnservedRegistry[]): string[] {
    return unserved.map(({ registry, requests }) => {
        const count = `${requests} request${requests === 1 ? "" : "s"}`;
        return registry === "(none)"
            ? `  no ns: ${count} from clients that do not name their registry: give them a cache's own port`
            : `  ${registry}: ${count}, no cache (nodes fetched it directly): add an upstream`;
    });
}

/** The status screen: a block per cache, bars where a terminal shows them. */
/** The front's server certificate, when it serves HTTPS. */
export interface CertificateStatus {
    /** When it stops being valid (ISO 8601). */
    expires: string;
    /** Whole days until then; 0 or less once expired. */
    daysLeft: number;
}

/** How the front's certificate stands at `now`; undefined without one (plain HTTP). */
export function certificateStatus(pem: string, now: Date): CertificateStatus | undefined {
    const expires = certificateExpiry(pem);
    if (!expires) return undefined;
    const daysLeft = Math.floor((expires.getTime() - now.getTime()) / 86_400_000);
    return { expires: expires.toISOString(), daysLeft };
}

/** Days before its end from which an `up` renews the stack's own certificate. */
const renewalDays = serverCertificateValidity.earlyRenewalHours / 24;

function formatCertificate(certificate: CertificateStatus): string {
    const until = `valid until ${formatUtc(new Date(certificate.expires))}`;
    if (certificate.daysLeft <= 0)
        return `! HTTPS certificate expired (${until}): clients refuse it; npm run up renews the stack's own, a given one must be replaced (tls.certificate)`;
    if (certificate.daysLeft <= renewalDays)
        return `! HTTPS certificate ${until}, ${certificate.daysLeft} days left: npm run up renews the stack's own`;
    return `  HTTPS certificate ${until}, ${certificate.daysLeft} days left`;
}

export function formatStatus(
    statuses: readonly CacheStatus[],
    bars: boolean,
    unserved: readonly UnservedRegistry[] = [],
    certificate?: CertificateStatus,
): string {
    const percent = (value: number) => `${Math.round(value * 100)}%`;
    const blocks = statuses.map((status) => {
        const diskShare =
            status.disk.usedBytes / Math.max(1, status.disk.usedBytes + status.disk.freeBytes);
        const ratio =
            status.hitRatio === null
                ? "no requests yet"
                : `${bars ? `${bar(status.hitRatio)} ` : ""}${percent(status.hitRatio)} (${status.hits} of ${status.requests} requests; ${status.misses} fetched upstream; ${status.frontHits} from the front's cache)`;
        return [
            `${status.degraded ? "!" : " "} ${status.registry}  :${status.port}  mode ${status.mode}, serving ${status.serving}, ${status.health}${status.problem ? `: ${status.problem}` : ""}`,
            `    disk   ${bars ? `${bar(diskShare)} ` : ""}${formatBytes(status.disk.usedBytes)} held${formatUploads(status.partialUploads)}, ${formatBytes(status.disk.freeBytes)} free; ${status.repositories} repositories, ${status.images} images`,
            `    hits   ${ratio}`,
            `    bytes  ${formatBytes(status.servedBytes)} served, ${formatBytes(status.upstreamBytes)} from upstream, ${formatBytes(status.savedBytes)} saved`,
            `    check  ${formatCheck(status.lastCheck)}`,
        ].join("\n");
    });
    const degraded = statuses.filter((status) => status.degraded).length;
    const counting = statuses.map((status) => status.since.requests).find(Boolean);
    return [
        ...blocks,
        ...(certificate ? ["", formatCertificate(certificate)] : []),
        ...(unserved.length > 0
            ? ["", "Asked of the one port, with no cache:", ...formatUnserved(unserved)]
            : []),
        "",
        counting
            ? `Counting since ${formatUtc(new Date(counting))}, across restarts and log rotation.`
            : "Nothing counted yet.",
        degraded === 0
            ? `All ${statuses.length} caches are healthy.`
            : `${degraded} of ${statuses.length} caches need attention (marked !).`,
    ].join("\n");
}
