/**
 * A look at what a cache's volume holds. A proxy answers for content it lacks by asking its
 * upstream, so its own API cannot tell "cached" from "available upstream". Instead a second
 * container of the cache's own image (never pulled: the running cache's image id) runs over the
 * volume on the stack's network, in `offline` mode over the volume mounted read-only, answering
 * only from storage exactly as the cache would with no network (verify, prewarm). The front sends
 * requests that carry its `viewHeader` with the view's id there, so a view is reached at the
 * cache's own endpoint, on any engine.
 */
import { randomBytes } from "node:crypto";
import { viewHeader } from "../core/front";
import { CacheHealth, readHealthcheck, supervisorFacts } from "../core/container-facts";
import { CacheEndpoint, cacheViewContainer, viewLabel, viewLeaseSeconds } from "../core/plan";
import { readCacheSupervisor } from "../host/assets";
import { DockerCli } from "./docker";
import { FrontAccess } from "./front";
import { untilInterrupted } from "./interrupt";
import { CacheView, EnvironmentError } from "./types";
import { RegistryClient } from "./registry-client";

/** How long a view may take to answer before the tool gives up on it. */
const viewStartSeconds = 60;

/** How often a tool renews its views' leases: several renewals fit in one lease. */
const leaseRenewalMs = (viewLeaseSeconds * 1000) / 6;

/** `docker run` flags for a view container: what the Docker provider makes of the same inputs. */
function dockerRunArgs(view: ReturnType<typeof cacheViewContainer>): string[] {
    const [entrypoint, ...args] = view.entrypoints;
    return [
        "--detach",
        "--log-driver",
        view.logDriver,
        ...Object.entries(view.logOpts).flatMap(([option, value]) => [
            "--log-opt",
            `${option}=${value}`,
        ]),
        ...view.labels.flatMap(({ label, value }) => ["--label", `${label}=${value}`]),
        ...view.envs.flatMap((env) => ["--env", env]),
        ...view.volumes.flatMap((volume) => [
            "--volume",
            `${volume.volumeName}:${volume.containerPath}${volume.readOnly ? ":ro" : ""}`,
        ]),
        ...view.networksAdvanced.flatMap((network) => [
            "--network",
            network.name,
            ...network.aliases.flatMap((alias) => ["--network-alias", alias]),
        ]),
        "--entrypoint",
        entrypoint,
        view.image,
        ...args,
    ];
}

/**
 * Starts a view of `cache` and keeps renewing its lease; `close` removes it. Should the tool die
 * without closing it, the view stops itself once its lease runs out, and `--rm` removes it.
 */
async function openCacheView(
    docker: DockerCli,
    cache: CacheEndpoint,
    front: FrontAccess,
): Promise<CacheView & { close(): Promise<void> }> {
    const image = await docker("inspect", "--format", "{{.Image}}", cache.container).catch(() => {
        throw new EnvironmentError(
            `the cache container ${cache.container} (for ${cache.registry}) does not exist; run npm run up first`,
        );
    });
    const viewId = randomBytes(16).toString("hex");
    const id = await docker(
        "run",
        "--rm",
        ...dockerRunArgs(cacheViewContainer(cache, readCacheSupervisor(), image, viewId)),
    );
    const renew = () =>
        void docker("exec", id, "touch", supervisorFacts.leaseFile).catch(() => undefined);
    const renewal = setInterval(renew, leaseRenewalMs).unref();
    const close = async () => {
        clearInterval(renewal);
        await docker("rm", "--force", "--volumes", id).catch(() => "");
    };
    try {
        const view: CacheView = {
            endpoint: cache.hostEndpoint,
            headers: { ...front.headers, [viewHeader]: viewId },
            trust: front.trust,
        };
        await untilInterrupted(waitUntilServing(viewClient(view, cache.registry)));
        return { ...view, close };
    } catch (error) {
        await close();
        throw error;
    }
}

/**
 * Until the view answers through the front. A busy engine can take a while to start a container
 * and make its name known to the front's resolver (Podman's aardvark-dns most of all).
 */
async function waitUntilServing(client: RegistryClient): Promise<void> {
    const deadline = Date.now() + viewStartSeconds * 1000;
    for (;;) {
        try {
            return await client.ping();
        } catch (error) {
            if (Date.now() > deadline) throw error;
            await new Promise((resolve) => setTimeout(resolve, 100));
        }
    }
}

/**
 * `docker ps` arguments that list every view on an engine with the cache it is of. Docker ANDs
 * label filters: one for the key, the values are matched by the reader.
 */
export const viewListing = [
    ...["ps", "--all", "--no-trunc", "--filter", `label=${viewLabel}`],
    ...["--format", `{{.ID}} {{.Label "${viewLabel}"}}`],
];

/** viewListing's output: each view's id and the cache container it is of. */
export const parseViewListing = (listed: string) =>
    listed
        .split("\n")
        .filter(Boolean)
        .map((line) => {
            const [id, of = ""] = line.split(" ");
            return { id, of };
        });

/**
 * Removes the views of `caches` that no live tool holds: stopped ones, and running ones whose
 * lease ran out or that have none (made by a tool older than leases, then killed). Every tool
 * does this for its whole stack before it starts.
 */
export async function removeStaleViews(
    docker: DockerCli,
    caches: readonly CacheEndpoint[],
): Promise<void> {
    const containers = new Set(caches.map((cache) => cache.container));
    const views = parseViewListing(await docker(...viewListing))
        .filter((view) => containers.has(view.of))
        .map((view) => view.id);
    const stale = [];
    for (const id of views) if (await isStale(docker, id)) stale.push(id);
    if (stale.length > 0) await docker("rm", "--force", "--volumes", ...stale).catch(() => "");
}

async function isStale(docker: DockerCli, id: string): Promise<boolean> {
    const leaseAge = `[ -f ${supervisorFacts.leaseFile} ] && echo $(($(date +%s) - $(stat -c %Y ${supervisorFacts.leaseFile})))`;
    const age = await docker("exec", id, "sh", "-c", leaseAge).catch(() => "");
    return !/^\d+$/.test(age) || Number(age) >= viewLeaseSeconds;
}

/**
 * Runs `work` with a read-only view of each cache, by registry;
 * removes them afterwards, also when the tool is interrupted (SIGINT, SIGTERM).
 */
export async function withCacheViews<T>(
    docker: DockerCli,
    caches: readonly CacheEndpoint[],
    front: FrontAccess,
    work: (views: Map<string, CacheView>) => Promise<T>,
): Promise<T> {
    const opened = await Promise.allSettled(
        caches.map((cache) => openCacheView(docker, cache, front)),
    );
    const views = opened.flatMap((view) => (view.status === "fulfilled" ? [view.value] : []));
    try {
        const failure = opened.find((view) => view.status === "rejected");
        if (failure) throw failure.reason;
        return await untilInterrupted(
            work(new Map(caches.map((cache, index) => [cache.registry, views[index]]))),
        );
    } finally {
        await Promise.all(views.map((view) => view.close()));
    }
}

/** Undefined when there is no such container. */
export async function readCacheHealth(
    docker: DockerCli,
    container: string,
): Promise<CacheHealth | undefined> {
    let health: { Status?: string; Log?: { ExitCode: number; Output: string }[] } | null;
    try {
        health = JSON.parse(
            await docker("inspect", "--format", "{{json .State.Health}}", container),
        );
    } catch (error) {
        // Only an absent container is missing; an engine that does not answer is not.
        if (/No such (?:object|container)/i.test((error as Error).message)) return undefined;
        throw error;
    }
    // The last check, not the status: Docker calls a cache unhealthy only after 3 failed checks.
    const last = health?.Log?.at(-1);
    return {
        status: health?.Status ?? "none",
        ...readHealthcheck(last?.Output ?? "", last?.ExitCode ?? 0),
    };
}

/**
 * Why a cache cannot store what it is sent, if it cannot: its supervisor's word that the volume
 * is full (checked every second), else a failed last healthcheck. Undefined when all is well or
 * Docker cannot tell.
 */
export async function cacheTrouble(
    docker: DockerCli,
    cache: CacheEndpoint,
): Promise<string | undefined> {
    const full = await docker("exec", cache.container, "cat", supervisorFacts.diskFullFile).catch(
        () => "",
    );
    if (full) return `the ${cache.registry} cache's ${full}`;
    const health = await readCacheHealth(docker, cache.container);
    return health?.problem && `the ${cache.registry} cache is ${health.status}: ${health.problem}`;
}

/** A client of a view: through the front, with the view's headers and trust. */
export const viewClient = (view: CacheView, registry: string) =>
    new RegistryClient(view.endpoint, registry, view.headers, view.trust);
