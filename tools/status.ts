/**
 * `npm run status`: what each cache holds, whether it is well, and what it saved. Sources:
 *
 * - the front's ledger (core/ledger.ts), read once for all caches: every content request of a
 *   cache, the bytes sent to clients and those the front's own cache answered, since the ledger
 *   began;
 * - the upstream figures the cache's supervisor keeps in its volume: what the registry had to
 *   fetch upstream (registry 3's proxy counters, carried across its restarts);
 * - the cache container: its healthcheck (what it serves now, a full disk) and its volume (`du`,
 *   `df`, and the tags under the registry's storage);
 * - the path clients use: `GET /v2/` at the cache's published port, through the front. A healthy
 *   registry behind a front that cannot reach it looks well from the container alone.
 */
import { registryStoragePath as storage, registryStorageRoot } from "../core/container-facts";
import { Ledger, servedBy } from "../core/ledger";
import { CacheEndpoint } from "../core/plan";
import {
    CacheStatus,
    cacheStatus,
    missingCacheStatus,
    parseUpstreamFigures,
} from "../core/status-report";
import { CacheCheck, lastCheckFile, parseListing, tagLinksFind } from "../core/storage-layout";
import { readCacheSupervisor } from "../host/assets";
import { readCacheHealth } from "./cache-view";
import { DockerCli } from "./docker";
import { readUploads } from "./storage";

/** What the cache fetched upstream, from its supervisor; undefined when it keeps no figures. */
async function readUpstreamFigures(docker: DockerCli, container: string) {
    const output = await docker(
        ...["exec", container, "sh", "-c", readCacheSupervisor(), "sh", "figures"],
    ).catch(() => "");
    return parseUpstreamFigures(output);
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

/** The volume's use (`du`, `df`) and the tag links under the registry's storage. */
async function readVolume(docker: DockerCli, container: string) {
    const inside = await docker(
        ...["exec", container, "sh", "-c"],
        `du -sk ${storage} && df -Pk ${storage} && cd ${registryStorageRoot} 2>/dev/null && find ${tagLinksFind} 2>/dev/null || true`,
    );
    const [duLine = "", , dfLine = "", ...links] = inside.split("\n");
    return {
        disk: {
            usedBytes: Number(duLine.split(/\s+/)[0] ?? 0) * 1024,
            freeBytes: Number(dfLine.trim().split(/\s+/)[3] ?? 0) * 1024,
        },
        tagLinks: links.join("\n"),
    };
}

async function readLastCheck(docker: DockerCli, container: string): Promise<CacheCheck | null> {
    const text = await docker("exec", container, "cat", lastCheckFile).catch(() => "");
    try {
        return text ? (JSON.parse(text) as CacheCheck) : null;
    } catch {
        return null;
    }
}

/**
 * Everything `status` shows for one cache, with the front's `ledger` (undefined with no front);
 * a missing container is a status, not an error.
 */
export async function readCacheStatus(
    docker: DockerCli,
    cache: CacheEndpoint,
    ledger: Ledger | undefined,
): Promise<CacheStatus> {
    const health = await readCacheHealth(docker, cache.container);
    if (!health) return missingCacheStatus(cache);
    const [front, { disk, tagLinks }, uploads, upstream, lastCheck] = await Promise.all([
        askThroughFront(cache.hostEndpoint),
        readVolume(docker, cache.container),
        readUploads(docker, cache.container),
        readUpstreamFigures(docker, cache.container),
        readLastCheck(docker, cache.container),
    ]);
    return cacheStatus(cache, {
        health,
        front,
        disk,
        uploads: parseListing(uploads).uploads,
        tagLinks,
        served: servedBy(ledger, cache.registry),
        servedSince: ledger?.since,
        upstream,
        lastCheck,
    });
}
