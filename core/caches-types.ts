/**
 * The `Caches` component's published types: its arguments and the shapes of its outputs, written
 * out with their meaning. They name no zod type, so a program that imports the component
 * type-checks under any tsconfig (zod's own declarations need `esModuleInterop`). mirrors.ts's
 * schema is the contract; tests/unit/config.test.ts holds these types equal to its input.
 * docs/configuration.md has every key's default and what changing it does.
 */

/** One upstream registry and its cache. */
export interface UpstreamArgs {
    /** The registry's host as image references name it: `docker.io`, `registry.local:5000`. */
    registry: string;
    /** The URL the cache proxies: http or https, no path (`https://registry-1.docker.io`). */
    remote: string;
    /** The host port the front publishes the cache on. */
    port: number;
    /** How long cached content lives, as a Go duration; overrides the component's `ttl`. */
    ttl?: string | 0;
}

/** An upstream login. */
export interface CredentialArgs {
    username: string;
    password: string;
}

/** HTTPS on the front (docs/team-cache.md). */
export interface TlsArgs {
    /** Default false: plain HTTP. With no certificate given, the stack makes its own CA. */
    enabled?: boolean;
    /** A server certificate (PEM, leaf first) naming `mirrorHost`, instead of the stack's own. */
    certificate?: string;
    /** Its private key (PEM); pass it as a secret. */
    key?: string;
    /** The CA that issued `certificate`, for the clients' settings; unset: the system's CAs. */
    ca?: string;
}

/** A Talos cluster on this host, created through the caches once they are ready. */
export interface ClusterArgs {
    /** Default false: caches only. */
    enabled?: boolean;
    /** `docker` (default) or `qemu`. */
    provisioner?: "docker" | "qemu";
    /** Default `talos-default`. */
    name?: string;
    /** The nodes' network, a /8 or narrower; default `10.5.0.0/24`. */
    cidr?: string;
    /** Default 1. */
    controlplanes?: number;
    /** Default 1. */
    workers?: number;
    /** `v1.12.0`, or a minor (`v1.12`); default the talosctl's own. */
    talosVersion?: string;
    /** Default the talosctl's own. */
    kubernetesVersion?: string;
    /** talosctl's `--state` folder. */
    state?: string;
    /** The talosctl to run; default `talosctl` on PATH. */
    talosctl?: string;
    /** The folder with QEMU boot assets for talosctl 1.7–1.11; default `_out`. */
    bootAssets?: string;
    /** More `talosctl cluster create` arguments. */
    extraArgs?: string[];
}

/** Docker's log of each container, rotated. */
export interface LogArgs {
    /** Rotate at this size: `500k`, `10m` (default), `1g`. */
    maxSize?: string;
    /** Keep this many files, 1 to 100; default 3. */
    maxFiles?: number;
}

/**
 * What `Caches` takes: the same settings as the stack config's `pullthrough:<key>`s, as plain
 * values. Every key is optional; with none, the six caches of Talos's own registry proxies.
 */
export interface CachesArgs {
    /** One cache per entry; default docker.io, registry.k8s.io, quay.io, gcr.io, ghcr.io and factory.talos.dev on 5000–5006. */
    upstreams?: UpstreamArgs[];
    /** The registry image every cache runs; default `registry:3`. */
    image?: string;
    /** The nginx image of the coalescing front; default `nginx:1`. */
    frontImage?: string;
    /** The host IPv4 address the cache ports are published on; default `0.0.0.0`. */
    bindAddress?: string;
    /** The host name or address nodes reach the caches at; default the cluster network's gateway. */
    mirrorHost?: string;
    /** The front's one port for every registry, routed by containerd's `ns`; default 5005. */
    anyRegistryPort?: number;
    /** How long cached content lives, as a Go duration; default `"0"`, forever. */
    ttl?: string | 0;
    /** Keep the cache volumes when the component is destroyed; default false. */
    keepCache?: boolean;
    /** Prefix of every container, volume and network name; default `registry-`. */
    namePrefix?: string;
    /** Upstream logins by registry; they reach the containers only as secrets. */
    credentials?: Record<string, CredentialArgs>;
    /** A Talos cluster created through the caches. */
    cluster?: ClusterArgs;
    /** What a cache does about its upstream: `auto` (default), `proxy` or `offline`. */
    mode?: "auto" | "proxy" | "offline";
    /** Images to pull through the caches once they are healthy; `"talos"` for the cluster's set. */
    prewarm?: string[];
    /** More IPv4 networks or addresses that may pull; everyone else gets 403. */
    allowFrom?: string[];
    /** HTTPS on every port of the front; default off. */
    tls?: TlsArgs;
    /** Who may pull: the front asks for one of these; the first is the one the renderings carry. */
    pullCredentials?: CredentialArgs[];
    /** Take pull credentials over plain HTTP off loopback; default false (refused). */
    allowPlainHttpCredentials?: boolean;
    /** Fetch a pulled image's blobs before its client asks for them; default true. */
    prefetch?: boolean;
    /** The engine the caches run on, as `DOCKER_HOST` takes it; default this machine's. */
    dockerHost?: string;
    /** A bundle made by `npm run export` to import once the caches are healthy. */
    importFrom?: string;
    /** A disk budget for all caches together (`"20GiB"`): prune keeps them inside it. */
    maxSize?: string;
    /** Docker's log of every container the component makes. */
    logs?: LogArgs;
}

/** One cache in the `mirrors` output. */
export interface MirrorEndpoint {
    /** The upstream's URL. */
    remote: string;
    /** The host port the front publishes the cache on. */
    port: number;
    mode: string;
    /** The URL cluster nodes pull through. */
    endpoint: string;
    /** The URL this host reaches the cache at. */
    hostEndpoint: string;
    container: string;
    volume: string;
    /** The stack network the front reaches the cache (and its views) on. */
    network: string;
}

/** The `anyRegistry` output: the one endpoint that serves every cache, routed by `ns`. */
export interface AnyRegistryEndpoint {
    port: number;
    /** The URL cluster nodes pull through: `http(s)://<mirrorHost>:<port>`. */
    endpoint: string;
    /** The URL this host reaches it at. */
    hostEndpoint: string;
}

/** The `cluster` output: what the created cluster is, and which mirror form its Talos takes. */
export interface ClusterOutput {
    name: string;
    provisioner: string;
    talosctlVersion: string;
    endpointHost: string;
    /** The output whose mirror settings this Talos version's machine config takes. */
    mirrorConfig: "talosConfigPatch" | "talosMirrorDocuments";
}
