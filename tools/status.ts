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
import { registryStoragePath as storage, registryStorageRoot } from "../core/container-facts";
import { CacheEndpoint } from "../core/plan";
import { CacheStatus, cacheStatus, missingCacheStatus, readFrontLog } from "../core/status-report";
import { CacheCheck, lastCheckFile, parseListing } from "../core/storage-layout";
import { readCacheHealth } from "./cache-view";
import { DockerCli } from "./docker";
import { frontOf } from "./front";
import { readUploads } from "./storage";

/** The registry's debug address in the official registry:3 config (`http.debug.addr`). */
const metricsPort = 5001;

/**
 * The registry's Prometheus metrics, asked inside its container, so any engine will do. HTTP/1.0
 * through busybox nc: busybox 1.35's wget crashes on this response (seen in the registry 3
 * fixture). The headers come along and match no counter.
 */
async function registryMetrics(docker: DockerCli, container: string): Promise<string> {
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

/** The volume's use (`du`, `df`) and the tag links under the registry's storage. */
async function readVolume(docker: DockerCli, container: string) {
    const inside = await docker(
        ...["exec", container, "sh", "-c"],
        `du -sk ${storage} && df -Pk ${storage} && find ${registryStorageRoot}/repositories -path '*/_manifests/tags/*/current/link' 2>/dev/null || true`,
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

const containerStarted = (docker: DockerCli, container: string) =>
    docker("inspect", "--format", "{{.State.StartedAt}}", container);

/** Everything `status` shows for one cache; a missing container is a status, not an error. */
export async function readCacheStatus(
    docker: DockerCli,
    cache: CacheEndpoint,
): Promise<CacheStatus> {
    const health = await readCacheHealth(docker, cache.container);
    if (!health) return missingCacheStatus(cache);
    const front = await askThroughFront(cache.hostEndpoint);
    const { disk, tagLinks } = await readVolume(docker, cache.container);
    const { uploads } = parseListing(await readUploads(docker, cache.container));
    const frontContainer = await frontOf(docker, cache.port);
    const served = frontContainer
        ? readFrontLog(await docker("logs", frontContainer), cache.port)
        : { requests: 0, bytes: 0 };
    return cacheStatus(cache, {
        health,
        front,
        disk,
        uploads,
        tagLinks,
        served,
        metrics: await registryMetrics(docker, cache.container),
        since: {
            front: frontContainer ? await containerStarted(docker, frontContainer) : "",
            registry: await containerStarted(docker, cache.container),
        },
        lastCheck: await readLastCheck(docker, cache.container),
    });
}
