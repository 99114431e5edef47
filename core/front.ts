/**
 * The coalescing front: one nginx for all caches, publishing every cache port and passing each to
 * its registry over a stack-private network. The registry, in proxy mode, sends every request for
 * a blob it is still fetching straight to the upstream (distribution `proxyblobstore.go`, #3969);
 * nginx's `proxy_cache_lock` lets one request per content-addressed path through and holds the
 * others until the response is cached, so a cold pull by many nodes fetches each blob once.
 *
 * Only paths addressed by digest (`/v2/<name>/blobs/sha256:…`, `/v2/<name>/manifests/sha256:…`)
 * are cached: their content cannot change. Everything else, tags above all, passes straight
 * through, so a moved tag is seen at once. The front's cache is transient and bounded; the
 * registry's volume stays the cache of record.
 */
import { createHash } from "node:crypto";
import type * as docker from "@pulumi/docker";
import type * as pulumi from "@pulumi/pulumi";
import { LogLimits, Settings } from "../mirrors";
import {
    Cache,
    StackIdentity,
    healthcheck,
    stackLabels,
    cacheViewAlias,
    logOptions,
    viewIdPattern,
    stackNetworkName,
    toLabelList,
} from "./plan";
import { accessLogFormat } from "./access-log";
import { sha256Hex } from "./digest";
import { registryContainerPort } from "./container-facts";
import { ledgerFiles, ledgerLogFormat, ledgerPathPattern, unroutedLogFormat } from "./ledger";

/**
 * How long a request waits for another request's fetch of the same blob before it is served on
 * its own (uncached). Well under containerd's 5-minute pull-progress timeout, and long enough for
 * a 1 GB layer at 100 Mbit/s.
 */
export const lockTimeoutSeconds = 120;

/**
 * How long a blob stays in the front's cache, and how large the cache may grow. It only has to
 * outlive the waiters of one fetch: later pulls are the registry's to serve, from its volume.
 */
const frontCacheInactive = "1m";
const frontCacheMaxSize = "10g";

/**
 * A request carrying this header skips the front's cache and reaches the registry. `prewarm`
 * sends it when it pulls again what a registry served but did not store (a proxy does not store
 * a blob it is already fetching for another request), which the front's copy would otherwise
 * keep answering.
 */
export const refreshHeader = "X-Pullthrough-Refresh";

/**
 * A request carrying this header goes to the cache's read-only view (tools/cache-view.ts), never
 * to the front's cache or the registry: how `verify` and `prewarm` see what the volume holds,
 * through the same port and allow-list as any pull, from this machine or another.
 */
export const viewHeader = "X-Pullthrough-View";

/** The internal location of the one port's answer to the API base, `/v2/`. */
const apiBaseLocation = "/pullthrough-api-base";

/** The internal location a view's requests are rewritten into. */
const viewLocation = "/pullthrough-view";

/** nginx's variable for a request header. */
const headerVariable = (header: string) => `$http_${header.toLowerCase().replaceAll("-", "_")}`;

/** Port of the front's own health endpoint, inside its container only. */
const healthPort = 8079;

/**
 * Everything the front writes: its blob cache, temp files and request bodies. The entry command
 * (container/front-entry.sh) empties it before nginx starts, so a killed front leaves nothing.
 */
const frontCacheRoot = "/var/cache/nginx/pullthrough";

/** The front's blob cache: nginx keeps each response in a file named by the md5 of its key. */
const frontCachePath = `${frontCacheRoot}/blobs`;

/**
 * The socket of the front's inner hop, which quotes the registry's ETags before they are cached.
 * A killed nginx leaves it behind and could not bind it again: it goes with the rest at start.
 */
const quotingSocket = `${frontCacheRoot}/quoting.sock`;

/** The registry a request to the inner hop goes to, set by the front and by no one else. */
const registryHeader = "X-Pullthrough-Registry";

/** Cache keys: the cache port, then the request path (`proxy_cache_key` in frontConfig). */
const frontCacheKey = (port: number | string, uri: string) => `${port}${uri}`;

/**
 * The file holding the front's copy of `uri` on `port`, for `levels=1:2`: the key's md5 under a
 * folder of its last hex digit and one of the two before (ngx_http_file_cache). Removing it makes
 * the next request a miss, so a repaired blob is not answered from a stale copy.
 */
export function frontCacheFile(port: number, uri: string): string {
    const key = createHash("md5").update(frontCacheKey(port, uri)).digest("hex");
    return `${frontCachePath}/${key.slice(-1)}/${key.slice(-3, -1)}/${key}`;
}

/** Where the rendered nginx config goes: the official image includes conf.d/*.conf in http {}. */
const frontConfigPath = "/etc/nginx/conf.d/default.conf";

export interface Front {
    /** Name of the front container. */
    name: string;
    /** The front's volume: the ledger of what was pulled (core/ledger.ts), kept like the caches'. */
    ledgerVolume: string;
    /** The stack-private network the front and the registries share. */
    network: string;
    image: string;
    bindAddress: string;
    /**
     * Who may pull, besides the front's own networks (added at start by the entry command):
     * loopback, a specific bind address (this host's clients arrive from it), the cluster
     * network, and `allowFrom`. Everyone else gets 403.
     */
    allowed: string[];
    labels: Record<string, string>;
    logs: LogLimits;
    /** The one port that serves every cache, routed by `ns` (`anyRegistryPort`). */
    anyRegistryPort: number;
    /** Every port speaks HTTPS, with the certificate in `frontFiles.certificate`. */
    tls: boolean;
    /** Every client must send one of the pull credentials (`frontFiles.users`). */
    pullAuth: boolean;
    /** The front fetches a pulled manifest's blobs before the client asks (container/prefetch.sh). */
    prefetch: boolean;
}

/**
 * The files the front is given besides its config: the server certificate and key, the CA the
 * tools trust it by, the pull credentials' htpasswd, and the API base's answer.
 */
export const frontFiles = {
    certificate: "/etc/nginx/pullthrough/server.crt",
    key: "/etc/nginx/pullthrough/server.key",
    ca: "/etc/nginx/pullthrough/ca.crt",
    users: "/etc/nginx/pullthrough/users",
    apiBase: "/etc/nginx/pullthrough/api-base.json",
    /** Written by the entry command at each start: the tools' token, and its nginx map. */
    toolToken: "/etc/nginx/pullthrough-tool-token",
    toolTokenMap: "/etc/nginx/pullthrough-tools.conf",
};

/**
 * A request carrying the front's tool token (`frontFiles.toolToken`, new at every start, read by
 * the tools with `docker exec`) needs no pull credential: whoever can read it commands the engine
 * the caches run on anyway.
 */
export const toolHeader = "X-Pullthrough-Tool";

/** The front's prefetcher's own requests carry this: they are not pulls, and trigger nothing. */
const prefetchHeader = "X-Pullthrough-Prefetch";

/** The prefetcher: its program, the pipe nginx tells it of pulled manifests through, its knobs. */
const prefetchFiles = {
    program: "/etc/nginx/pullthrough-prefetch.sh",
    pipe: "/tmp/pullthrough-prefetch.pipe",
};

/**
 * Blobs of one image fetched at once: containerd's own default is 3 per pull
 * (`max_concurrent_downloads`); one more keeps the link busy while a node asks for the next.
 */
const prefetchConcurrency = 4;

/**
 * A prefetch request that gets no byte for this long gives up its slot; nginx keeps the fetch
 * behind it going, as it does any cacheable response whose client left.
 */
const prefetchStallSeconds = 20;

export function planFront(settings: Settings, identity: StackIdentity): Front {
    return {
        name: `${settings.namePrefix}front`,
        ledgerVolume: `${settings.namePrefix}ledger`,
        network: stackNetworkName(settings),
        image: settings.frontImage,
        bindAddress: settings.bindAddress,
        allowed: [
            ...new Set([
                "127.0.0.0/8",
                ...(settings.bindAddress === "0.0.0.0" ? [] : [settings.bindAddress]),
                settings.cluster.cidr,
                ...settings.allowFrom,
            ]),
        ],
        labels: stackLabels(identity),
        logs: settings.logs,
        anyRegistryPort: settings.anyRegistryPort,
        tls: settings.tls.enabled,
        pullAuth: settings.pullCredentials.length > 0,
        prefetch: settings.prefetch,
    };
}

/** The front's volume, which holds the ledger; its inputs never change, as a cache volume's. */
export function frontLedgerVolume(front: Front) {
    return {
        name: front.ledgerVolume,
        labels: toLabelList(front.labels),
    } satisfies docker.VolumeArgs;
}

/** The stack's private network: the front reaches each registry by container name. */
export function stackNetwork(front: Front) {
    return { name: front.network, labels: toLabelList(front.labels) } satisfies docker.NetworkArgs;
}

/** A Docker network's name is fixed, and the engine refuses a second one of the same name. */
export function networkOptions() {
    return { deleteBeforeReplace: true } satisfies pulumi.CustomResourceOptions;
}

/** Where the entry command (container/front-entry.sh) writes `allow` lines for the front's networks. */
const frontNetworksInclude = "/etc/nginx/pullthrough-networks.conf";

/**
 * Where the entry command writes the `resolver` line: the first nameserver of the container's
 * /etc/resolv.conf, which is the engine's DNS for container names (Docker's embedded 127.0.0.11,
 * Podman's the network's gateway).
 */
const frontResolverInclude = "/etc/nginx/pullthrough-resolver.conf";

/**
 * The nginx config of the front: what every cache port shares, a server per cache port, and the
 * one port for every registry.
 */
export function frontConfig(
    caches: readonly Cache[],
    front: Pick<Front, "allowed" | "anyRegistryPort" | "tls" | "pullAuth" | "prefetch">,
): string {
    return `${sharedFrontConfig(caches, front)}${caches.map((cache) => cacheServer(cache, front)).join("\n")}
${anyRegistryServer(front)}
`;
}

/**
 * The `ns` values that reach a registry's cache: its own name, and for docker.io the hosts
 * Docker Hub is also known by (containerd sends the image's registry as written, `docker.io`
 * for a bare name). nginx's `$arg_ns` is the query as sent, and Go's url.Values.Encode sends a
 * port's colon as `%3A`: a registry with a port is matched in that form too.
 */
const nsAliases = (registry: string) =>
    registry === "docker.io"
        ? [registry, "registry-1.docker.io", "index.docker.io"]
        : registry.includes(":")
          ? [registry, registry.replace(":", "%3A")]
          : [registry];

/**
 * The maps of the one port: `ns` to the cache's registry (nginx matches map strings ignoring
 * case, ngx_http_map_module), and a registry to its container and port, which the front's
 * cache keys by, so a blob is one copy and one fetch whichever port asked.
 */
function anyRegistryMaps(caches: readonly Cache[]): string {
    const rows = (pairs: [string, string][]) =>
        pairs.map(([from, to]) => `    "${from}" "${to}";`).join("\n");
    return `map $arg_ns $pullthrough_route {
    default "";
${rows(caches.flatMap((cache) => nsAliases(cache.registry).map((ns): [string, string] => [ns, cache.registry])))}
}
map $pullthrough_route $pullthrough_route_cache {
    default "";
${rows(caches.map((cache) => [cache.registry, cache.name]))}
}
map $pullthrough_route $pullthrough_route_port {
    default "";
${rows(caches.map((cache) => [cache.registry, String(cache.port)]))}
}
`;
}

/** The front's logs, its cache, the hop that quotes ETags and its health endpoint. */
function sharedFrontConfig(
    caches: readonly Cache[],
    {
        anyRegistryPort,
        tls,
        pullAuth,
        prefetch,
    }: Pick<Front, "anyRegistryPort" | "tls" | "pullAuth" | "prefetch">,
): string {
    const registries = [
        ...caches.map((cache) => `    ${cache.port} "${cache.registry}";`),
        `    ${anyRegistryPort} $pullthrough_route;`,
    ].join("\n");
    return `# Rendered by Pullthrough (core/front.ts); replaced with the front container on every change.
log_format pullthrough '${accessLogFormat}';
log_format pullthrough_ledger '${ledgerLogFormat}';
log_format pullthrough_unrouted '${unroutedLogFormat}';
# What the tools send to a cache's view (verify, prewarm's checks, import) is not a pull, nor is
# the prefetcher's: the access log and the ledger hold pulls only, and the ledger only pulls of
# content.
map "${headerVariable(viewHeader)}${headerVariable(prefetchHeader)}" $pullthrough_pull {
    "" 1;
    default 0;
}
map $uri $pullthrough_content {
    "~${ledgerPathPattern}" $pullthrough_pull;
    default 0;
}
map $server_port $pullthrough_registry {
${registries}
}
${anyRegistryMaps(caches)}# A request the one port has no cache for: content paths only, counted by its ns.
map "$pullthrough_route:$pullthrough_content" $pullthrough_unrouted {
    ":1" 1;
    default 0;
}
# The engine's DNS (written at start). A restarted registry may come back at another address:
# names are re-resolved every 2 s, and a connection to a stale address gives up after 2 s (a 502
# the client retries) instead of hanging for nginx's default 60 s.
include ${frontResolverInclude};
proxy_cache_path ${frontCachePath} levels=1:2 keys_zone=pullthrough:16m max_size=${frontCacheMaxSize} inactive=${frontCacheInactive} use_temp_path=off;
proxy_temp_path ${frontCacheRoot}/temp;
client_body_temp_path ${frontCacheRoot}/body;

${tls ? tlsConfig : ""}${pullAuth ? `include ${frontFiles.toolTokenMap};\n` : ""}${prefetch ? prefetchConfig(anyRegistryPort) : ""}
# The registry's proxy path sends an unquoted ETag (distribution registry/proxy/proxyblobstore.go,
# setResponseHeaders), its volume path a quoted one (registry/storage/blobserver.go). nginx checks
# If-None-Match against the ETag it received, before add_header applies, so the front's copies
# are quoted here, one hop before the cache, and answer 304 as the registry's do.
map $upstream_http_etag $pullthrough_quoted_etag {
    "" "";
    "~^\\"" $upstream_http_etag;
    default "\\"$upstream_http_etag\\"";
}
server {
    listen unix:${quotingSocket};
    access_log off;
    location / {
        proxy_pass ${headerVariable(registryHeader)};
        proxy_set_header Host $http_host;
        proxy_set_header ${registryHeader} "";
        proxy_http_version 1.1;
        proxy_connect_timeout 2s;
        proxy_read_timeout 900s;
        proxy_buffering off;
        proxy_hide_header ETag;
        add_header ETag $pullthrough_quoted_etag;
    }
}

server {
    listen 127.0.0.1:${healthPort};
    access_log off;
    location = /health {
        return 200 "front\\n";
    }
}
`;
}

/**
 * HTTPS for every client-facing server (`listen … ssl`): TLS 1.2 and 1.3, and sessions resumed
 * from a cache the workers share, so a node's many connections make one full handshake.
 */
const tlsConfig = `ssl_certificate ${frontFiles.certificate};
ssl_certificate_key ${frontFiles.key};
ssl_protocols TLSv1.2 TLSv1.3;
ssl_session_cache shared:pullthrough_tls:10m;
ssl_session_timeout 1h;
`;

/**
 * What tells the prefetcher of a platform manifest a client pulled: its cache's port (the one
 * port's routed cache), its path and digest, one line each into the prefetcher's pipe. An index
 * is never named, so only the platforms clients asked for are fetched; nor a view's or the
 * prefetcher's own request (`$pullthrough_pull`).
 */
const prefetchConfig = (anyRegistryPort: number) => `map $server_port $pullthrough_cache_port {
    ${anyRegistryPort} $pullthrough_route_port;
    default $server_port;
}
map "$request_method:$status:$pullthrough_pull:$sent_http_content_type" $pullthrough_manifest_pulled {
    "~^GET:200:1:application/vnd\\.(oci\\.image\\.manifest\\.v1|docker\\.distribution\\.manifest\\.v2)\\+json" 1;
    default 0;
}
log_format pullthrough_prefetch '$pullthrough_cache_port $uri $sent_http_docker_content_digest';
`;

/** The line of a client-facing server that tells the prefetcher, when it runs. */
const prefetchLog = (prefetch: boolean) =>
    prefetch
        ? `\n    access_log ${prefetchFiles.pipe} pullthrough_prefetch if=$pullthrough_manifest_pulled;`
        : "";

/** A client-facing server's listen line. */
const listen = (port: number, tls: boolean) => `    listen ${port}${tls ? " ssl" : ""};`;

/**
 * What every client-facing server shares: who may pull (the allow-list, then a pull credential,
 * unless the tools' token says it is a tool), and how requests go to a registry.
 */
function clientServerCommon({ allowed, pullAuth }: Pick<Front, "allowed" | "pullAuth">): string {
    const access = [
        `include ${frontNetworksInclude};`,
        ...allowed.map((network) => `allow ${network};`),
        "deny all;",
        ...(pullAuth
            ? ["auth_basic $pullthrough_realm;", `auth_basic_user_file ${frontFiles.users};`]
            : []),
    ].join("\n    ");
    return `    # Who may pull (README, Security): everyone else gets 403${pullAuth ? ", or 401 without a pull credential" : ""}.
    ${access}
    # Pushes are refused by the registry; their bodies need not be buffered first.
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_http_version 1.1;
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_connect_timeout 2s;
    proxy_read_timeout 900s;`;
}

/**
 * Content addressed by digest, through the front's cache: one fetch per blob however many ask.
 * `keyPort` is the cache's port (or the variable holding it): every port that reaches a cache
 * shares its copies and its locks. `guard` runs first (the one port's refusal of an unknown ns).
 */
function digestLocation(keyPort: string, guard = ""): string {
    return `    location ~ "^/v2/.+/(blobs|manifests)/sha256:${sha256Hex}$" {${guard}
        proxy_pass http://unix:${quotingSocket};
        # A location's proxy_set_header replaces the server's: all three are set here.
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header ${registryHeader} $registry;
        proxy_cache pullthrough;
        proxy_cache_key "${frontCacheKey(keyPort, "$uri")}";
        proxy_cache_valid 200 ${frontCacheInactive};
        proxy_cache_lock on;
        proxy_cache_lock_timeout ${lockTimeoutSeconds}s;
        proxy_cache_lock_age ${lockTimeoutSeconds}s;
        proxy_cache_bypass ${headerVariable(refreshHeader)};
        proxy_ignore_headers Cache-Control Expires Set-Cookie X-Accel-Expires X-Accel-Buffering;
        # Byte ranges of every copy, cold or cached, as the registry answers from its volume; its
        # proxy path sends no Accept-Ranges (ngx_http_proxy_module, since nginx 1.7.7).
        proxy_force_ranges on;
        add_header X-Pullthrough-Cache $upstream_cache_status always;
    }`;
}

/** Everything else (tags, the API base, uploads), straight to the registry. */
const passLocation = (guard = "") => `    location / {${guard}
        proxy_pass $registry;
        proxy_buffering off;
    }`;

/** The server of one cache port: who may pull, the front's cache, and the way to a view. */
function cacheServer(
    cache: Cache,
    front: Pick<Front, "allowed" | "tls" | "pullAuth" | "prefetch">,
): string {
    return `
# ${cache.registry}
server {
${listen(cache.port, front.tls)}
    access_log /var/log/nginx/access.log pullthrough if=$pullthrough_pull;
    access_log ${ledgerFiles.pipe} pullthrough_ledger if=$pullthrough_content;${prefetchLog(front.prefetch)}
${clientServerCommon(front)}
    # A variable makes nginx resolve the registry per request: a replaced registry has a new address.
    set $registry http://${cache.name}:${registryContainerPort};
    # A view's traffic (the tools reading or filling a volume) goes past the front's cache.
    if (${headerVariable(viewHeader)} ~ "${viewIdPattern}") {
        set $registry http://${cacheViewAlias(cache.name, headerVariable(viewHeader))}:${registryContainerPort};
        rewrite ^ ${viewLocation}$uri last;
    }

    location ${viewLocation}/ {
        internal;
        rewrite ^${viewLocation}(/.*)$ $1 break;
        proxy_pass $registry;
        # In memory only, in large buffers: a whole volume read through a view (export) goes at
        # 300+ MB/s, against 110 MB/s unbuffered and 220 MB/s through temp files (measured).
        proxy_buffers 16 64k;
        proxy_busy_buffers_size 256k;
        proxy_max_temp_file_size 0;
    }

${digestLocation(String(cache.port))}

${passLocation()}
}`;
}

/**
 * The registry API's answer for a registry with no cache here: a 404 at once, never sent
 * upstream, so containerd tries its next host and, last, the image's own registry.
 */
const unrouted = `
        if ($pullthrough_route = "") {
            return 404 '{"errors":[{"code":"NAME_UNKNOWN","message":"no cache here serves the registry this ns names; pull from the registry itself"}]}';
        }`;

/**
 * The one port for every registry: containerd's `ns` (the image's registry, on every request it
 * sends a mirror) picks the cache; an unknown or missing one gets a 404, counted by its ns in the
 * ledger (status names them). The tools' views are reached on the caches' own ports.
 */
function anyRegistryServer(
    front: Pick<Front, "allowed" | "anyRegistryPort" | "tls" | "pullAuth" | "prefetch">,
): string {
    return `
# every registry, by ns
server {
${listen(front.anyRegistryPort, front.tls)}
    access_log /var/log/nginx/access.log pullthrough if=$pullthrough_pull;
    access_log ${ledgerFiles.pipe} pullthrough_ledger if=$pullthrough_content;
    access_log ${ledgerFiles.pipe} pullthrough_unrouted if=$pullthrough_unrouted;${prefetchLog(front.prefetch)}
${clientServerCommon(front)}
    default_type application/json;
    add_header Docker-Distribution-API-Version registry/2.0 always;
    set $registry http://$pullthrough_route_cache:${registryContainerPort};

    # The API base answers for every registry: clients check it before they know one. A file,
    # not \`return\`, which would answer before the allow-list and the pull credentials apply;
    # reached by a rewrite, since a URI ending in "/" would be looked up as a folder.
    location = /v2/ {
        rewrite ^ ${apiBaseLocation} last;
    }

    location = ${apiBaseLocation} {
        internal;
        alias ${frontFiles.apiBase};
    }

${digestLocation("$pullthrough_route_port", unrouted)}

${passLocation(unrouted)}
}`;
}

/** What container/prefetch.sh is told, as its environment. */
const prefetchEnvs = (front: Pick<Front, "tls">) => [
    `PULLTHROUGH_PREFETCH_PROGRAM=${prefetchFiles.program}`,
    `PULLTHROUGH_PREFETCH_PIPE=${prefetchFiles.pipe}`,
    `PULLTHROUGH_PREFETCH_SEEN=${frontCacheRoot}/prefetched`,
    `PULLTHROUGH_PREFETCH_SCHEME=${front.tls ? "https" : "http"}`,
    `PULLTHROUGH_PREFETCH_CONCURRENCY=${prefetchConcurrency}`,
    `PULLTHROUGH_PREFETCH_STALL_SECONDS=${prefetchStallSeconds}`,
    `PULLTHROUGH_TOOL_HEADER_NAME=${toolHeader}`,
];

/** The scripts the front runs, from container/ (host/assets.ts reads them). */
export interface FrontScripts {
    /** container/front-entry.sh */
    entry: string;
    /** container/ledger.awk */
    ledgerProgram: string;
    /** container/prefetch.sh */
    prefetchProgram: string;
}

/**
 * The front container: the official nginx image with the rendered config uploaded in place of its
 * default site, every cache port published, on the stack network only, its ledger on its volume.
 */
export function frontContainer(front: Front, caches: readonly Cache[], scripts: FrontScripts) {
    const health = `http://127.0.0.1:${healthPort}/health`;
    return {
        name: front.name,
        image: front.image,
        // container/front-entry.sh: empties the front's files, allows its own networks, writes
        // the engine's resolver, then runs nginx and the ledger's fold until nginx stops.
        entrypoints: ["/bin/sh", "-c", scripts.entry],
        envs: [
            `PULLTHROUGH_FRONT_FILES=${frontCacheRoot}`,
            `PULLTHROUGH_NETWORKS_CONF=${frontNetworksInclude}`,
            `PULLTHROUGH_RESOLVER_CONF=${frontResolverInclude}`,
            `PULLTHROUGH_LEDGER_PIPE=${ledgerFiles.pipe}`,
            `PULLTHROUGH_LEDGER_RECORD=${ledgerFiles.record}`,
            `PULLTHROUGH_LEDGER_PROGRAM=${ledgerFiles.program}`,
            `PULLTHROUGH_TOOL_TOKEN=${frontFiles.toolToken}`,
            `PULLTHROUGH_TOOL_TOKEN_MAP=${frontFiles.toolTokenMap}`,
            `PULLTHROUGH_TOOL_HEADER=${headerVariable(toolHeader)}`,
            ...(front.prefetch ? prefetchEnvs(front) : []),
        ],
        uploads: [
            {
                file: frontConfigPath,
                content: frontConfig(caches, front),
            },
            { file: ledgerFiles.program, content: scripts.ledgerProgram },
            { file: frontFiles.apiBase, content: "{}" },
            ...(front.prefetch
                ? [{ file: prefetchFiles.program, content: scripts.prefetchProgram }]
                : []),
        ],
        volumes: [{ volumeName: front.ledgerVolume, containerPath: ledgerFiles.volumePath }],
        ports: [...caches.map((cache) => cache.port), front.anyRegistryPort].map((port) => ({
            internal: port,
            external: port,
            ip: front.bindAddress,
            protocol: "tcp",
        })),
        networksAdvanced: [{ name: front.network }],
        restart: "always",
        // The Debian-based official image has curl; the Alpine-based one has busybox wget.
        healthcheck: healthcheck(
            `curl -fsS -o /dev/null ${health} || wget -q -O /dev/null ${health}`,
        ),
        wait: true,
        waitTimeout: 60,
        ...logOptions(front.logs),
        labels: toLabelList(front.labels),
    } satisfies docker.ContainerArgs;
}

/** The front's TLS and pull-credential files, as far as the settings ask for them. */
export interface FrontAccessFiles {
    /** The server certificate (PEM, leaf first) and its key. */
    certificate?: string;
    key?: string;
    /** The CA that issued it, which the tools trust the front by. */
    ca?: string;
    /** The pull credentials' htpasswd (core/pull-auth.ts). */
    users?: string;
}

/**
 * The uploads that carry them: a secret upload, like a cache's upstream login, never shows in
 * `docker inspect`, and must be wrapped as a Pulumi secret before it reaches the container.
 */
export function frontAccessUploads(files: FrontAccessFiles) {
    return (["certificate", "key", "ca", "users"] as const).flatMap((name) => {
        const content = files[name];
        return content === undefined ? [] : [{ file: frontFiles[name], content }];
    });
}
