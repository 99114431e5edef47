/**
 * `npm run status`: what each cache holds, whether it is well, and what it saved. Sources, each
 * since its container started:
 *
 * - the front's access log (core/front.ts): every content request of a cache's port, and the
 *   bytes sent to clients;
 * - the registry's Prometheus metrics (registry 3 serves them on its debug port, 5001, in its
 *   default config; read from inside the container): `registry_proxy_misses_total` and
 *   `registry_proxy_pulled_bytes_total`, what it had to fetch upstream;
 * - the cache container: its healthcheck (what it serves now, a full disk) and its volume (`du`,
 *   `df`, and the tags under the registry's storage);
 * - the path clients use: `GET /v2/` at the cache's published port, through the front. A healthy
 *   registry behind a front that cannot reach it looks well from the container alone.
 */
import { parsePublishedPorts, publishedPortsFormat } from "../host/engine";
import { formatBytes } from "./format";
import { readCacheHealth } from "./cache-view";
import { docker } from "./docker";
import { registryStoragePath as storage } from "../core/container-facts";
import { CacheCheck, lastCheckFile, parseListing, readUploads } from "./storage";
import { CacheEndpoint } from "../core/plan";

/** The registry's debug address in the official registry:3 config (`http.debug.addr`). */
const metricsPort = 5001;

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

/** A content request of a cache's port in the front's access log; group 1: status, 2: bytes. */
const contentRequest =
    /"(?:GET|HEAD) \/v2\/\S+\/(?:blobs|manifests)\/\S+ HTTP\/[\d.]+" (\d{3}) (\d+)/;

/** Content requests answered with 2xx or 304 on `port`, and the bytes sent, from the front's log. */
export function readFrontLog(log: string, port: number): { requests: number; bytes: number } {
    const onPort = ` port=${port} `;
    let requests = 0;
    let bytes = 0;
    for (const line of log.split("\n")) {
        if (!line.includes(onPort)) continue;
        const match = contentRequest.exec(line);
        if (!match || !/^(?:2\d\d|304)$/.test(match[1])) continue;
        requests++;
        bytes += Number(match[2]);
    }
    return { requests, bytes };
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

async function containerStarted(container: string): Promise<string> {
    return docker("inspect", "--format", "{{.State.StartedAt}}", container);
}

/** The front container publishing `port`. */
export async function frontOf(port: number): Promise<string | undefined> {
    return parsePublishedPorts(await docker("ps", "--format", publishedPortsFormat)).get(port);
}

/**
 * The registry's Prometheus metrics, asked inside its container, so any engine will do. HTTP/1.0
 * through busybox nc: busybox 1.35's wget crashes on this response (seen in the registry 3
 * fixture). The headers come along and match no counter.
 */
async function registryMetrics(container: string): Promise<string> {
    const request = `GET /metrics HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n`;
    // No debug port (registry 2, a custom config): no upstream figures.
    return docker(
        ...["exec", container, "sh", "-c"],
        `printf '${request}' | nc -w 3 127.0.0.1 ${metricsPort}`,
    ).catch(() => "");
}

/**
 * What a client gets from the cache's published port. `/v2/` answers 200, or 401 from a registry
 * that wants a token; anything else (a 502 from a front that cannot reach the registry, a 403
 * for this host, no answer) means pulls fail.
 */
async function askThroughFront(hostEndpoint: string): Promise<{ ok: boolean; answer: string }> {
    try {
        const response = await fetch(`${hostEndpoint}/v2/`, { signal: AbortSignal.timeout(5000) });
        await response.body?.cancel();
        return {
            ok: response.status === 200 || response.status === 401,
            answer: `${response.status} ${response.statusText}`,
        };
    } catch (error) {
        const cause = (error as { cause?: { code?: string } }).cause?.code;
        return { ok: false, answer: `no answer (${cause ?? (error as Error).message})` };
    }
}

/** Everything `status` shows for one cache; a missing container is a status, not an error. */
export async function readCacheStatus(cache: CacheEndpoint): Promise<CacheStatus> {
    const base = {
        registry: cache.registry,
        port: cache.port,
        mode: cache.mode,
    };
    const health = await readCacheHealth(cache.container);
    if (!health) {
        return {
            ...base,
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
    const { serving } = health;
    const front = await askThroughFront(cache.hostEndpoint);
    const problem =
        health.problem ??
        (front.ok ? undefined : `clients get ${front.answer} at ${cache.hostEndpoint}/v2/`);
    const inside = await docker(
        ...["exec", cache.container, "sh", "-c"],
        `du -sk ${storage} && df -Pk ${storage} && find ${storage}/docker/registry/v2/repositories -path '*/_manifests/tags/*/current/link' 2>/dev/null || true`,
    );
    const [duLine = "", , dfLine = "", ...links] = inside.split("\n");
    const usedBytes = Number(duLine.split(/\s+/)[0] ?? 0) * 1024;
    const { uploads } = parseListing(await readUploads(cache.container));
    const freeBytes = Number(dfLine.trim().split(/\s+/)[3] ?? 0) * 1024;
    const frontContainer = await frontOf(cache.port);
    const served = frontContainer
        ? readFrontLog(await docker("logs", frontContainer), cache.port)
        : { requests: 0, bytes: 0 };
    const metrics = await registryMetrics(cache.container);
    const lastCheck = await readLastCheck(cache.container);
    const misses = counter(metrics, "registry_proxy_misses_total");
    const upstreamBytes = counter(metrics, "registry_proxy_pulled_bytes_total");
    const status = health.status;
    return {
        ...base,
        serving,
        health: status,
        problem,
        frontAnswer: front.answer,
        degraded:
            status !== "healthy" ||
            problem !== undefined ||
            (cache.mode !== "offline" && serving === "offline") ||
            unrepaired(lastCheck) > 0,
        disk: { usedBytes, freeBytes },
        partialUploads: {
            count: uploads.length,
            bytes: uploads.reduce((total, upload) => total + upload.size, 0),
        },
        ...countImages(links.join("\n")),
        since: {
            front: frontContainer ? await containerStarted(frontContainer) : "",
            registry: await containerStarted(cache.container),
        },
        ...figures(served.requests, misses, served.bytes, upstreamBytes),
        lastCheck,
    };
}

async function readLastCheck(container: string): Promise<CacheCheck | null> {
    const text = await docker("exec", container, "cat", lastCheckFile).catch(() => "");
    try {
        return text ? (JSON.parse(text) as CacheCheck) : null;
    } catch {
        return null;
    }
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
    const when = check.checkedAt.replace("T", " ").replace(/\.\d+Z$/, " UTC");
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
