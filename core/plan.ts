/**
 * The cache plan: one cache per upstream, derived from validated settings, and the Docker
 * resources that run it as plain data. Pure: index.ts wraps secrets and wires dependencies, and
 * the verify view and the bench build their containers from the same definitions.
 */
import type { AnyRegistryEndpoint, MirrorEndpoint } from "./caches-types";
import type * as docker from "@pulumi/docker";
import type * as pulumi from "@pulumi/pulumi";
import { CacheMode, Credential, LogLimits, Settings, defaultLogLimits } from "../mirrors";
import { dockerHostAddress } from "./docker-host-url";
import { healthcheckCommand, registryStoragePath, supervisorFacts } from "./container-facts";

/** Everything about one cache that names, ports and client renderings must agree on. */
export interface Cache {
    registry: string;
    remote: string;
    /** Host port the front publishes the cache on. */
    port: number;
    ttl: string;
    mode: CacheMode;
    /** Name of both the registry container and its volume. */
    name: string;
    /** The stack-private network the registry and the front share. */
    network: string;
    image: string;
    /** URL cluster nodes pull through: `http(s)://<mirrorHost>:<port>`. */
    endpoint: string;
    /** URL this host pulls through (prewarm, verify, local tools). */
    hostEndpoint: string;
    /**
     * Docker labels that tie the container and volume to their stack and registry: the cache's
     * identity only, so no setting change touches the volume's inputs.
     */
    labels: Record<string, string>;
    credential?: Credential;
    logs: LogLimits;
}

/**
 * A cache as the stack outputs carry it (`mirrors.<registry>`), with its registry: everything a
 * tool needs to reach it and look inside it.
 */
export interface CacheEndpoint extends MirrorEndpoint {
    registry: string;
}

export const cacheEndpoint = (cache: Cache): CacheEndpoint => ({
    registry: cache.registry,
    remote: cache.remote,
    port: cache.port,
    mode: cache.mode,
    endpoint: cache.endpoint,
    hostEndpoint: cache.hostEndpoint,
    container: cache.name,
    volume: cache.name,
    network: cache.network,
});

export interface StackIdentity {
    project: string;
    stack: string;
}

/** The stack-private network of the caches and their front. */
export const stackNetworkName = (settings: Pick<Settings, "namePrefix">) =>
    `${settings.namePrefix}net`;

/** Where this machine reaches the front: the engine's machine, at its bind address if one is set. */
function frontHostAddress(settings: Pick<Settings, "dockerHost" | "bindAddress">): string {
    const dockerHostMachine = dockerHostAddress(settings.dockerHost) ?? "127.0.0.1";
    return settings.bindAddress === "0.0.0.0" ? dockerHostMachine : settings.bindAddress;
}

/** The scheme every port of the front speaks. */
const frontScheme = (settings: Pick<Settings, "tls">) => (settings.tls.enabled ? "https" : "http");

/** The front's one port for every registry: where nodes and this host reach it. */
export function planAnyRegistry(settings: Settings): AnyRegistryEndpoint {
    const port = settings.anyRegistryPort;
    const scheme = frontScheme(settings);
    return {
        port,
        endpoint: `${scheme}://${settings.mirrorHost}:${port}`,
        hostEndpoint: `${scheme}://${frontHostAddress(settings)}:${port}`,
    };
}

/** Every host a client reaches the front at: what a server certificate must name. */
export const frontHosts = (settings: Settings) => [settings.mirrorHost, frontHostAddress(settings)];

/** Derives one cache per upstream from validated settings. */
export function planCaches(settings: Settings, identity: StackIdentity): Cache[] {
    const hostAddress = frontHostAddress(settings);
    const scheme = frontScheme(settings);
    return settings.upstreams.map((upstream) => {
        const remote = new URL(upstream.remote).origin;
        return {
            registry: upstream.registry,
            remote,
            port: upstream.port,
            ttl: upstream.ttl ?? settings.ttl,
            mode: settings.mode,
            // Docker names cannot hold ":", which a registry with a port has.
            name: settings.namePrefix + upstream.registry.replace(":", "_"),
            network: stackNetworkName(settings),
            image: settings.image,
            endpoint: `${scheme}://${settings.mirrorHost}:${upstream.port}`,
            hostEndpoint: `${scheme}://${hostAddress}:${upstream.port}`,
            labels: {
                ...stackLabels(identity),
                "pullthrough.registry": upstream.registry,
            },
            credential: settings.credentials[upstream.registry],
            logs: settings.logs,
        };
    });
}

/**
 * Docker's json-file log, rotated at `maxSize` into `maxFiles` files: the provider's `logDriver`
 * and `logOpts` (HostConfig.LogConfig). Podman takes the same through its Docker API: its
 * json-file log is capped at `maxSize` (conmon truncates it) and keeps no rotated files.
 */
export const logOptions = (limits: LogLimits) => ({
    logDriver: "json-file",
    logOpts: { "max-size": limits.maxSize, "max-file": String(limits.maxFiles) },
});

/** The labels that tie a container, volume or network to its project and stack. */
export const stackLabels = (identity: StackIdentity) => ({
    "pullthrough.project": identity.project,
    "pullthrough.stack": identity.stack,
});

/**
 * A container's Docker healthcheck, checked every 3 s: `up` waits for it (`wait`), and three
 * failures in a row make the container unhealthy.
 */
export const healthcheck = (command: string) => ({
    tests: ["CMD-SHELL", command],
    interval: "3s",
    timeout: "3s",
    retries: 3,
    startPeriod: "5s",
});

/** Docker labels as the provider takes them. */
export const toLabelList = (labels: Record<string, string>) =>
    Object.entries(labels).map(([label, value]) => ({ label, value }));

/**
 * The cache's storage. Its inputs are the cache's name and identity labels alone: a volume input
 * that changed would replace it, and a replaced fixed-name volume is the same volume, deleted.
 */
export function cacheVolume(cache: Cache) {
    return { name: cache.name, labels: toLabelList(cache.labels) } satisfies docker.VolumeArgs;
}

/** Settings every registry over a cache volume runs with. */
const storageEnvs = [
    "REGISTRY_LOG_LEVEL=info",
    // No in-memory blob descriptor cache: it outlives a blob `prune` removed, and the registry
    // would answer for it with 200 and no bytes instead of fetching it again. Any value but
    // "inmemory" or "redis" turns it off (distribution registry/handlers/app.go).
    "REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR=none",
];

/**
 * How the registry process of a cache runs: `supervisor` (the text of container/cache-supervisor.sh)
 * is the entry command in every mode. It starts the image's own registry binary as a proxy or
 * read-only, with the login file when there is one, and removes the partial uploads interrupted
 * fetches leave behind.
 */
function registryProcess(
    cache: { mode: CacheMode; remote: string; ttl: string },
    supervisor: string,
) {
    return {
        entrypoints: ["/bin/sh", "-c", supervisor],
        envs: [
            `PULLTHROUGH_MODE=${cache.mode}`,
            `PULLTHROUGH_REMOTE=${cache.remote}`,
            `REGISTRY_PROXY_TTL=${cache.ttl}`,
            ...storageEnvs,
        ],
    };
}

/**
 * The registry container of one cache, in the Docker provider's own input types. `args` is
 * plain; `secretUploads` carries the upstream login (the registry's `proxy.username` and
 * `proxy.password`) and must be wrapped as a Pulumi secret before it reaches a resource. Its
 * healthcheck prints what it serves now (`docker inspect` shows it under State.Health).
 */
export function cacheContainer(cache: Cache, supervisor: string) {
    const args = {
        name: cache.name,
        image: cache.image,
        ...registryProcess(cache, supervisor),
        volumes: [{ volumeName: cache.name, containerPath: registryStoragePath }],
        // No published port: clients reach the registry through the front (core/front.ts).
        networksAdvanced: [{ name: cache.network }],
        restart: "always",
        healthcheck: healthcheck(healthcheckCommand()),
        wait: true,
        waitTimeout: 90,
        ...logOptions(cache.logs),
        labels: toLabelList({
            ...cache.labels,
            "pullthrough.remote": cache.remote,
            "pullthrough.mode": cache.mode,
        }),
    } satisfies docker.ContainerArgs;
    // A file the supervisor appends to the registry's config: unlike an environment variable it
    // is not in `docker inspect`. JSON strings are YAML strings: any password survives as it is.
    const secretUploads = cache.credential
        ? [
              {
                  file: supervisorFacts.credentialsFile,
                  content: [
                      "proxy:",
                      `  username: ${JSON.stringify(cache.credential.username)}`,
                      `  password: ${JSON.stringify(cache.credential.password)}`,
                      "",
                  ].join("\n"),
              },
          ]
        : [];
    return { args, secretUploads };
}

/**
 * A view's name on the stack network: one per view, so a name never outlives its container in a
 * resolver's cache and leads to another cache's view. The front sends requests carrying
 * `viewHeader: <viewId>` there.
 */
export const cacheViewAlias = (container: string, viewId: string) => `${container}-view-${viewId}`;

/**
 * A view's id: what the front accepts in `viewHeader`, so the header can name nothing else. 128
 * random bits: no other client of the front can guess a live view's id, so a view answers only
 * the tool that made it.
 */
export const viewIdPattern = "^[0-9a-f]{32}$";

/** The label that marks a container as a tool's view of a cache: its value is the cache container. */
export const viewLabel = "pullthrough.view-of";

/**
 * How long a view outlives its tool's last lease renewal (tools/cache-view.ts renews it every
 * few seconds): a tool killed outright leaves its views for at most this long.
 */
export const viewLeaseSeconds = 60;

/**
 * A second registry over a cache's volume, on the stack's network under cacheViewAlias, never
 * restarted, run by the cache's supervisor under a lease (`viewLeaseSeconds`): the registry in
 * `offline` mode over the volume mounted read-only. It answers only from storage, exactly as
 * the cache would with no network (verify, prewarm). `image` is the running cache's image id,
 * so nothing is pulled.
 */
export function cacheViewContainer(
    cache: Pick<CacheEndpoint, "remote" | "container" | "volume" | "network">,
    supervisor: string,
    image: string,
    viewId: string,
) {
    const registry = registryProcess(
        { mode: "offline", remote: cache.remote, ttl: "0" },
        supervisor,
    );
    return {
        image,
        entrypoints: registry.entrypoints,
        envs: [...registry.envs, `PULLTHROUGH_VIEW_LEASE_SECONDS=${viewLeaseSeconds}`],
        volumes: [{ volumeName: cache.volume, containerPath: registryStoragePath, readOnly: true }],
        networksAdvanced: [
            { name: cache.network, aliases: [cacheViewAlias(cache.container, viewId)] },
        ],
        ...logOptions(defaultLogLimits),
        labels: [{ label: viewLabel, value: cache.container }],
    } satisfies docker.ContainerArgs;
}

/**
 * With `keepCache`, destroy leaves the volumes (and their images) for the next `pulumi up`.
 * Labels are set once, at creation: the provider reads a volume's labels back from the engine,
 * so a volume made by an earlier release (other labels) would otherwise be replaced, which for
 * a fixed name means deleted.
 */
export function volumeOptions(settings: Pick<Settings, "keepCache">) {
    return {
        retainOnDelete: settings.keepCache,
        ignoreChanges: ["labels"],
    } satisfies pulumi.CustomResourceOptions;
}

/**
 * A cache's name and port are fixed, so a replacement must remove the old container first. The
 * provider records a healthcheck change without applying it (its Update applies restart and
 * resources only), so a changed healthcheck replaces the container.
 */
export function containerOptions() {
    return {
        deleteBeforeReplace: true,
        replaceOnChanges: ["healthcheck"],
    } satisfies pulumi.CustomResourceOptions;
}
