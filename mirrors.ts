/**
 * The pure core of Pullthrough: the stack config contract, the cache plan derived from it, and
 * every client-side rendering of that plan. Nothing here talks to Pulumi or Docker, so each rule
 * is testable as a plain function and `index.ts` only maps the plan onto resources.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { stringify as toYaml } from "yaml";
import { parseImageReference } from "./images";
import {
    ClusterSettings,
    TalosctlVersion,
    clusterCreateArgv,
    clusterDestroyArgv,
    formatVersion,
    shellQuote,
    TalosImageSet,
    unsupportedSettings,
} from "./talosctl";

/** Pulumi project name, and so the namespace of every config key (`pullthrough:<key>`). */
export const configNamespace = "pullthrough";

/** Where the registry image keeps its data; each cache volume is mounted here. */
export const registryStoragePath = "/var/lib/registry";

/** The port the registry listens on inside its container (both `registry:2` and `registry:3`). */
export const registryContainerPort = 5000;

export interface Upstream {
    /** Registry host as it appears in image references, e.g. `docker.io`. */
    registry: string;
    /** Base URL the cache proxies, e.g. `https://registry-1.docker.io`. */
    remote: string;
    /** Host port the cache is published on. */
    port: number;
    /** How long cached content lives (Go duration, `0` = forever); overrides the stack-wide `ttl`. */
    ttl?: string;
}

export interface Credential {
    username: string;
    password: string;
}

/** The Talos guide's layout: one cache per upstream a Talos cluster pulls from. */
export const defaultUpstreams: readonly Upstream[] = [
    { registry: "docker.io", remote: "https://registry-1.docker.io", port: 5000 },
    { registry: "registry.k8s.io", remote: "https://registry.k8s.io", port: 5001 },
    { registry: "quay.io", remote: "https://quay.io", port: 5002 },
    { registry: "gcr.io", remote: "https://gcr.io", port: 5003 },
    { registry: "ghcr.io", remote: "https://ghcr.io", port: 5004 },
    { registry: "factory.talos.dev", remote: "https://factory.talos.dev", port: 5006 },
];

/** The `prewarm` entry that stands for the configured Talos cluster's image set. */
export const talosImageSet = "talos";

// ---------------------------------------------------------------------------------------------
// Config contract
// ---------------------------------------------------------------------------------------------

const hostLabel = "[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?";
const hostName = `${hostLabel}(?:\\.${hostLabel})*`;
const ipv4Octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
const ipv4Pattern = new RegExp(`^${ipv4Octet}(?:\\.${ipv4Octet}){3}$`);
const hostNamePattern = new RegExp(`^${hostName}$`);
const registryPattern = new RegExp(`^${hostName}(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?$`);
/** Go's `time.ParseDuration` grammar without a sign: `0`, `168h`, `1h30m`, `1.5s`. */
const goDurationPattern = /^(?:0|(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+)$/;
/** The distribution reference grammar, loosely: `[host[:port]/]path[:tag][@sha256:digest]`. */
const imagePattern =
    /^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;
/** Docker's container and volume name grammar, allowing an empty prefix. */
const namePrefixPattern = /^(?:[a-zA-Z0-9][a-zA-Z0-9_.-]*)?$/;

const isIPv4 = (value: string) => ipv4Pattern.test(value);
const isIPv4Cidr = (value: string) => {
    const [address, prefix, ...rest] = value.split("/");
    return rest.length === 0 && isIPv4(address) && /^(?:[0-9]|[12][0-9]|3[0-2])$/.test(prefix ?? "");
};
/** A host name or IPv4 address; an all-numeric name must be a real IPv4 address. */
const isHost = (value: string) => (/^[0-9.]+$/.test(value) ? isIPv4(value) : hostNamePattern.test(value));

function isRemoteUrl(value: string): boolean {
    let url: URL;
    try {
        url = new URL(value);
    } catch {
        return false;
    }
    return (
        (url.protocol === "http:" || url.protocol === "https:") &&
        url.pathname === "/" &&
        !url.search &&
        !url.hash &&
        !url.username &&
        !url.password &&
        // `new URL` accepts `https:host` and `https:/host`; insist on the absolute form.
        /^https?:\/\/[^/]/.test(value)
    );
}

/** What each key accepts, in words; every config error ends with one of these. */
const expected = {
    upstreams: "a non-empty list of {registry, remote, port, ttl?} objects",
    registry: 'a registry host name as used in image references, optionally with a port (e.g. "docker.io", "registry.local:5000")',
    remote: 'an absolute http(s) URL with no path, query or credentials (e.g. "https://registry-1.docker.io")',
    port: "an integer port from 1 to 65535",
    duration: 'a Go duration such as "168h" or "90m", or "0" for never',
    image: 'a Docker image reference (e.g. "registry:3")',
    ipv4: 'an IPv4 address (e.g. "0.0.0.0" or "127.0.0.1")',
    host: 'a host name or IPv4 address the cluster nodes can reach (e.g. "172.17.0.1")',
    boolean: "true or false",
    namePrefix: 'letters, digits, "_", "." or "-", starting with a letter or digit (e.g. "registry-"), or empty',
    credentials: 'an object mapping a configured registry to {username, password} (e.g. {"docker.io": {"username": "me", "password": "…"}})',
    nonEmpty: "a non-empty string",
    cluster: "an object of cluster settings (see README: enabled, provisioner, name, cidr, …)",
    provisioner: '"docker" or "qemu"',
    clusterName: 'lower-case letters, digits and "-" (e.g. "talos-default")',
    cidr: 'an IPv4 network in CIDR form (e.g. "10.5.0.0/24")',
    controlplanes: "an integer of at least 1",
    workers: "an integer of at least 0",
    argList: 'a list of strings (e.g. ["--memory", "4096"])',
    mode: '"auto", "proxy" or "offline"',
    prewarm: 'a list of image references and/or "talos" (e.g. ["talos", "docker.io/library/nginx:1.27"])',
    prewarmImage: 'an image reference such as "docker.io/library/nginx:1.27", or "talos"',
} as const;

const duration = z.string(expected.duration).regex(goDurationPattern, expected.duration);
const port = z.number(expected.port).int(expected.port).min(1, expected.port).max(65535, expected.port);

const upstreamSchema = z.strictObject(
    {
        registry: z.string(expected.registry).regex(registryPattern, expected.registry),
        remote: z.string(expected.remote).refine(isRemoteUrl, expected.remote),
        port,
        ttl: duration.optional(),
    },
    expected.upstreams,
);

const credentialSchema = z.strictObject(
    {
        username: z.string(expected.nonEmpty).min(1, expected.nonEmpty),
        password: z.string(expected.nonEmpty).min(1, expected.nonEmpty),
    },
    expected.credentials,
);

const clusterSchema = z.strictObject(
    {
        enabled: z.boolean(expected.boolean).default(false),
        provisioner: z.enum(["docker", "qemu"], expected.provisioner).default("docker"),
        name: z.string(expected.clusterName).regex(/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/, expected.clusterName).default("talos-default"),
        cidr: z.string(expected.cidr).refine(isIPv4Cidr, expected.cidr).default("10.5.0.0/24"),
        controlplanes: z.number(expected.controlplanes).int(expected.controlplanes).min(1, expected.controlplanes).default(1),
        workers: z.number(expected.workers).int(expected.workers).min(0, expected.workers).default(1),
        talosVersion: z.string(expected.nonEmpty).min(1, expected.nonEmpty).optional(),
        kubernetesVersion: z.string(expected.nonEmpty).min(1, expected.nonEmpty).optional(),
        state: z.string(expected.nonEmpty).min(1, expected.nonEmpty).optional(),
        talosctl: z.string(expected.nonEmpty).min(1, expected.nonEmpty).default("talosctl"),
        extraArgs: z.array(z.string(expected.argList), expected.argList).default([]),
    },
    expected.cluster,
);

const settingsObject = z.strictObject({
        upstreams: z
            .array(upstreamSchema, expected.upstreams)
            .min(1, expected.upstreams)
            .default(() => defaultUpstreams.map((upstream) => ({ ...upstream })))
            .superRefine(requireDistinctRegistriesAndPorts),
        image: z.string(expected.image).regex(imagePattern, expected.image).default("registry:3"),
        bindAddress: z.string(expected.ipv4).refine(isIPv4, expected.ipv4).default("0.0.0.0"),
        // Derived from the cluster when unset: see defaultMirrorHost.
        mirrorHost: z.string(expected.host).refine(isHost, expected.host).optional(),
        ttl: duration.default("0"),
        keepCache: z.boolean(expected.boolean).default(true),
        namePrefix: z.string(expected.namePrefix).regex(namePrefixPattern, expected.namePrefix).default("registry-"),
        credentials: z.record(z.string(), credentialSchema, expected.credentials).default({}),
        cluster: clusterSchema.default(() => clusterSchema.parse({})),
        mode: z.enum(["auto", "proxy", "offline"], expected.mode).default("auto"),
        prewarm: z
            .array(z.string(expected.prewarmImage).refine((ref) => ref === talosImageSet || parseImageReference(ref) !== undefined, expected.prewarmImage), expected.prewarm)
            .default([]),
    });

const settingsSchema = settingsObject
    .superRefine(requireCredentialsForConfiguredRegistries)
    .superRefine(requireCachesForPrewarmImages)
    .superRefine(requireRoomForClusterNodes)
    .transform((settings) => ({ ...settings, mirrorHost: settings.mirrorHost ?? defaultMirrorHost(settings.cluster) }));

export type Settings = z.output<typeof settingsSchema>;

/** How a cache treats its upstream; see cache-supervisor.sh. */
export type CacheMode = Settings["mode"];

/**
 * Where nodes find the host: QEMU nodes at their network's gateway (a host bridge address),
 * Docker nodes at the docker0 bridge, as the Talos guide has it.
 */
export function defaultMirrorHost(cluster: Pick<ClusterSettings, "provisioner" | "cidr">): string {
    return cluster.provisioner === "qemu" ? cidrAddress(cluster.cidr, 1) : "172.17.0.1";
}

/** The address at `offset` in an IPv4 network: 1 is Talos's gateway, 2 its first node. */
export function cidrAddress(cidr: string, offset: number): string {
    const [address, prefix] = cidr.split("/");
    const base = address.split(".").reduce((value, octet) => value * 256 + Number(octet), 0);
    const network = Number(prefix) === 0 ? 0 : base - (base % 2 ** (32 - Number(prefix)));
    const value = network + offset;
    return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

function requireRoomForClusterNodes(settings: { cluster: ClusterSettings }, ctx: z.RefinementCtx) {
    const { cidr, controlplanes, workers } = settings.cluster;
    if (!isIPv4Cidr(cidr)) return; // reported by the field's own check
    const size = 2 ** (32 - Number(cidr.split("/")[1]));
    const nodes = controlplanes + workers;
    // Talos puts the gateway at offset 1 and nodes from offset 2; the last address is broadcast.
    if (nodes + 3 > size) {
        const widest = 32 - Math.ceil(Math.log2(nodes + 3));
        ctx.addIssue({ code: "custom", path: ["cluster", "cidr"], input: cidr, message: `a network with room for a gateway and ${nodes} nodes (/${widest} or wider)` });
    }
}

function requireDistinctRegistriesAndPorts(upstreams: Upstream[], ctx: z.RefinementCtx) {
    for (const field of ["registry", "port"] as const) {
        const firstIndex = new Map<unknown, number>();
        upstreams.forEach((upstream, index) => {
            const first = firstIndex.get(upstream[field]);
            if (first === undefined) {
                firstIndex.set(upstream[field], index);
                return;
            }
            ctx.addIssue({
                code: "custom",
                path: [index, field],
                input: upstream[field],
                message: `a ${field} no other upstream uses (upstreams[${first}] has it)`,
            });
        });
    }
}

function requireCredentialsForConfiguredRegistries(settings: { upstreams: Upstream[]; credentials: Record<string, Credential> }, ctx: z.RefinementCtx) {
    const registries = settings.upstreams.map((upstream) => upstream.registry);
    for (const registry of Object.keys(settings.credentials)) {
        if (!registries.includes(registry)) {
            ctx.addIssue({
                code: "custom",
                path: ["credentials", registry],
                input: settings.credentials[registry],
                message: `credentials only for configured registries (${registries.join(", ")})`,
            });
        }
    }
}

function requireCachesForPrewarmImages(settings: { upstreams: Upstream[]; prewarm: string[] }, ctx: z.RefinementCtx) {
    const registries = settings.upstreams.map((upstream) => upstream.registry);
    settings.prewarm.forEach((ref, index) => {
        const image = ref === talosImageSet ? undefined : parseImageReference(ref);
        if (image && !registries.includes(image.registry)) {
            ctx.addIssue({ code: "custom", path: ["prewarm", index], input: ref, message: noCacheFor(image.registry, registries) });
        }
    });
}

const noCacheFor = (registry: string, registries: readonly string[]) => `an image from a registry with a cache (${registry} has none; caches: ${registries.join(", ")})`;

/** Keys whose config value is JSON (structured or boolean); the others are plain strings. */
const jsonKeys: ReadonlySet<string> = new Set(["upstreams", "credentials", "keepCache", "cluster", "prewarm"]);

/** Thrown for invalid config; lists every problem found, one per line, each naming its key. */
export class ConfigError extends Error {
    constructor(readonly problems: readonly string[]) {
        super(`Invalid ${configNamespace} config:\n${problems.map((problem) => `  - ${problem}`).join("\n")}`);
        this.name = "ConfigError";
    }
}

/**
 * Validates the stack's config and fills in defaults.
 *
 * @param allConfig every config value as Pulumi hands it to the program (`<namespace>:<key>` →
 *   string; structured values are JSON). Keys of other namespaces (`docker:host`) are ignored.
 * @throws ConfigError naming each bad key, its value and what would be valid.
 */
export function parseSettings(allConfig: Readonly<Record<string, string>>): Settings {
    const prefix = `${configNamespace}:`;
    const values: Record<string, unknown> = {};
    const problems: string[] = [];
    for (const [fullKey, raw] of Object.entries(allConfig)) {
        if (!fullKey.startsWith(prefix)) continue;
        const key = fullKey.slice(prefix.length);
        if (!jsonKeys.has(key)) {
            values[key] = raw;
            continue;
        }
        try {
            values[key] = JSON.parse(raw);
        } catch {
            problems.push(`${formatKey([key])}: got ${formatValue([key], raw)}, which is not JSON; expected ${expectedFor(key)}`);
        }
    }
    const result = settingsSchema.safeParse(values, { reportInput: true });
    if (!result.success) problems.push(...result.error.issues.flatMap(describeIssue));
    if (problems.length > 0) throw new ConfigError(problems);
    return result.data!;
}

function expectedFor(key: string): string {
    return ({ keepCache: expected.boolean, credentials: expected.credentials, cluster: expected.cluster, prewarm: expected.prewarm } as Record<string, string>)[key] ?? expected.upstreams;
}

/** Known keys of the object at `path`, for "did you mean" hints. */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
    if (path.length === 0) return Object.keys(settingsObject.shape);
    if (path[0] === "upstreams") return Object.keys(upstreamSchema.shape);
    if (path[0] === "cluster") return Object.keys(clusterSchema.shape);
    return Object.keys(credentialSchema.shape);
}

function describeIssue(issue: z.core.$ZodIssue): string[] {
    if (issue.code === "unrecognized_keys") {
        const known = knownKeysAt(issue.path);
        return issue.keys.map((key) => {
            const nearest = nearestKey(key, known);
            const hint = nearest ? `did you mean "${nearest}"? ` : "";
            return `${formatKey([...issue.path, key])}: unknown key; ${hint}valid keys are ${known.join(", ")}`;
        });
    }
    const input = (issue as { input?: unknown }).input;
    return [`${formatKey(issue.path)}: got ${formatValue(issue.path, input)}; expected ${issue.message}`];
}

/** Renders a config path the way `pulumi config set --path` spells it. */
function formatKey(path: readonly PropertyKey[]): string {
    let key = configNamespace + ":";
    path.forEach((segment, index) => {
        if (typeof segment === "number") key += `[${segment}]`;
        else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(String(segment))) key += index === 0 ? String(segment) : `.${String(segment)}`;
        else key += `[${JSON.stringify(String(segment))}]`;
    });
    return key;
}

/** Shows the offending value, except inside `credentials`, whose values never reach a log. */
function formatValue(path: readonly PropertyKey[], value: unknown): string {
    if (value === undefined) return "nothing";
    if (path[0] === "credentials") return "[secret]";
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** The known key closest to `key` by edit distance, if it is close enough to be a typo. */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
    let best: { key: string; distance: number } | undefined;
    for (const candidate of known) {
        const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
        if (!best || distance < best.distance) best = { key: candidate, distance };
    }
    return best && best.distance <= Math.max(2, Math.floor(key.length / 3)) ? best.key : undefined;
}

function editDistance(a: string, b: string): number {
    let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
        const current = [i];
        for (let j = 1; j <= b.length; j++) {
            current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
        }
        previous = current;
    }
    return previous[b.length];
}

// ---------------------------------------------------------------------------------------------
// Plan
// ---------------------------------------------------------------------------------------------

/** Everything about one cache that names, ports and client renderings must agree on. */
export interface Cache {
    registry: string;
    remote: string;
    /** Host port the cache is published on. */
    port: number;
    ttl: string;
    mode: CacheMode;
    /** Name of both the container and its volume. */
    name: string;
    image: string;
    bindAddress: string;
    /** URL cluster nodes pull through: `http://<mirrorHost>:<port>`. */
    endpoint: string;
    /** URL this host pulls through (prewarm, verify, local tools). */
    hostEndpoint: string;
    /** Docker labels that tie the container and volume to their stack and upstream. */
    labels: Record<string, string>;
    credential?: Credential;
}

export interface StackIdentity {
    project: string;
    stack: string;
}

/** Derives one cache per upstream from validated settings. */
export function planCaches(settings: Settings, identity: StackIdentity): Cache[] {
    const hostAddress = settings.bindAddress === "0.0.0.0" ? "127.0.0.1" : settings.bindAddress;
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
            image: settings.image,
            bindAddress: settings.bindAddress,
            endpoint: `http://${settings.mirrorHost}:${upstream.port}`,
            hostEndpoint: `http://${hostAddress}:${upstream.port}`,
            labels: {
                "pullthrough.project": identity.project,
                "pullthrough.stack": identity.stack,
                "pullthrough.registry": upstream.registry,
                "pullthrough.remote": remote,
                "pullthrough.mode": settings.mode,
            },
            credential: settings.credentials[upstream.registry],
        };
    });
}

// ---------------------------------------------------------------------------------------------
// Docker resources (plain data; index.ts wraps secrets and wires dependencies)
// ---------------------------------------------------------------------------------------------

const toLabelList = (labels: Record<string, string>) => Object.entries(labels).map(([label, value]) => ({ label, value }));

export function cacheVolume(cache: Cache) {
    return { name: cache.name, labels: toLabelList(cache.labels) };
}

/** The entry command of `auto` and `offline` caches: runs the image's registry under its own sh. */
export const cacheSupervisorScript = readFileSync(path.join(__dirname, "cache-supervisor.sh"), "utf8");

const registryAnswers = `wget -q -O /dev/null http://127.0.0.1:${registryContainerPort}/v2/`;

/**
 * The registry container for one cache. `envs` is plain; `secretEnvs` carries the upstream
 * login and must be wrapped as a Pulumi secret before it reaches a resource.
 *
 * `proxy` runs the image as it ships. `auto` and `offline` run cache-supervisor.sh as the entry
 * command, which starts the same registry binary as a proxy or read-only, and whose healthcheck
 * prints what the cache serves now (`docker inspect` shows it under State.Health).
 */
export function cacheContainer(cache: Cache) {
    const supervised = cache.mode !== "proxy";
    const common = [`REGISTRY_PROXY_TTL=${cache.ttl}`, "REGISTRY_LOG_LEVEL=info"];
    return {
        name: cache.name,
        image: cache.image,
        ...(supervised ? { entrypoints: ["/bin/sh", "-c", cacheSupervisorScript] } : {}),
        envs: supervised
            ? [`PULLTHROUGH_MODE=${cache.mode}`, `PULLTHROUGH_REMOTE=${cache.remote}`, ...common]
            : [`REGISTRY_PROXY_REMOTEURL=${cache.remote}`, ...common],
        secretEnvs: cache.credential
            ? [`REGISTRY_PROXY_USERNAME=${cache.credential.username}`, `REGISTRY_PROXY_PASSWORD=${cache.credential.password}`]
            : [],
        volumes: [{ volumeName: cache.name, containerPath: registryStoragePath }],
        ports: [{ internal: registryContainerPort, external: cache.port, ip: cache.bindAddress, protocol: "tcp" }],
        restart: "always",
        // busybox wget is in both the registry:2 and registry:3 images; 127.0.0.1 needs no DNS.
        healthcheck: {
            tests: supervised ? ["CMD-SHELL", `${registryAnswers} && cat /tmp/pullthrough-serving`] : ["CMD", ...registryAnswers.split(" ")],
            interval: "3s",
            timeout: "3s",
            retries: 3,
            startPeriod: "5s",
        },
        wait: true,
        waitTimeout: 90,
        labels: toLabelList(cache.labels),
    };
}

/** With `keepCache`, destroy leaves the volumes (and their images) for the next `pulumi up`. */
export function volumeOptions(settings: Pick<Settings, "keepCache">) {
    return { retainOnDelete: settings.keepCache };
}

/** A cache's name and port are fixed, so a replacement must remove the old container first. */
export function containerOptions() {
    return { deleteBeforeReplace: true };
}

// ---------------------------------------------------------------------------------------------
// Client renderings (stack outputs)
// ---------------------------------------------------------------------------------------------

export function mirrorsByRegistry(caches: readonly Cache[]) {
    return Object.fromEntries(
        caches.map((cache) => [
            cache.registry,
            {
                remote: cache.remote,
                port: cache.port,
                mode: cache.mode,
                endpoint: cache.endpoint,
                hostEndpoint: cache.hostEndpoint,
                container: cache.name,
                volume: cache.name,
            },
        ]),
    );
}

/** `talosctl cluster create` flags: the flag is a string slice, so one pair per registry. */
export function registryMirrorFlags(caches: readonly Cache[]): string[] {
    return caches.flatMap((cache) => ["--registry-mirror", `${cache.registry}=${cache.endpoint}`]);
}

/** Legacy `machine.registries.mirrors` patch: understood by every Talos version. */
export function talosConfigPatch(caches: readonly Cache[]): string {
    const mirrors = Object.fromEntries(caches.map((cache) => [cache.registry, { endpoints: [cache.endpoint] }]));
    return toYaml({ machine: { registries: { mirrors } } });
}

/** One `RegistryMirrorConfig` document per registry (Talos 1.12+). */
export function talosMirrorDocuments(caches: readonly Cache[]): string {
    return caches
        .map((cache) =>
            toYaml({
                apiVersion: "v1alpha1",
                kind: "RegistryMirrorConfig",
                name: cache.registry,
                endpoints: [{ url: cache.endpoint }],
            }),
        )
        .join("---\n");
}

/**
 * containerd `hosts.toml` per registry (`<config_path>/<registry>/hosts.toml`): the cache first,
 * the real registry as `server` so a node still pulls when the cache is down.
 */
export function containerdHosts(caches: readonly Cache[]): Record<string, string> {
    return Object.fromEntries(
        caches.map((cache) => [
            cache.registry,
            `server = ${JSON.stringify(cache.remote)}\n\n[host.${JSON.stringify(cache.endpoint)}]\n  capabilities = ["pull", "resolve"]\n`,
        ]),
    );
}

// ---------------------------------------------------------------------------------------------
// Prewarm
// ---------------------------------------------------------------------------------------------

/**
 * The images `pullthrough:prewarm` names, fully qualified, in config order and each once (the
 * `prewarmImages` output). `talos` expands to the cluster's image set, read only when listed.
 *
 * @throws ConfigError when an image of the `talos` set comes from a registry without a cache
 */
export function planPrewarm(settings: Settings, caches: readonly Cache[], readTalosImages: () => TalosImageSet): string[] {
    const registries = caches.map((cache) => cache.registry);
    const images = new Set<string>();
    const problems: string[] = [];
    settings.prewarm.forEach((entry, index) => {
        const talos = entry === talosImageSet ? readTalosImages() : undefined;
        for (const ref of talos?.images ?? [entry]) {
            const image = parseImageReference(ref);
            if (!image) {
                problems.push(`${formatKey(["prewarm", index])}: ${talos!.source} lists ${JSON.stringify(ref)}, which is not an image reference`);
            } else if (!registries.includes(image.registry)) {
                problems.push(`${formatKey(["prewarm", index])}: got "talos", whose ${image.canonical} needs a cache for ${image.registry}; add it to pullthrough:upstreams (caches: ${registries.join(", ")})`);
            } else {
                images.add(image.canonical);
            }
        }
    });
    if (problems.length > 0) throw new ConfigError(problems);
    return [...images];
}

/**
 * The `command.local.Command` that runs `npm run prewarm` once the caches are healthy. It reads
 * the same document `pulumi stack output --json` gives CI jobs, on stdin, so the tool has one
 * input format; a change of images or endpoints runs it again.
 */
export function prewarmCommand(images: readonly string[], caches: readonly Cache[], projectDir: string) {
    const outputs = JSON.stringify({ mirrors: mirrorsByRegistry(caches), prewarmImages: images });
    return {
        create: "npm run --silent prewarm -- --outputs -",
        stdin: outputs,
        dir: projectDir,
        triggers: [outputs],
        logging: "stdoutAndStderr" as const,
    };
}

// ---------------------------------------------------------------------------------------------
// Talos cluster
// ---------------------------------------------------------------------------------------------

export interface ClusterPlan {
    /** Shell command that creates the cluster with these mirrors (`talosctlCreate` output). */
    create: string;
    /** Shell command that destroys it; complete in itself, since delete runs the stored copy. */
    delete: string;
    createArgv: string[];
    /** Stack output `cluster`. */
    output: { name: string; provisioner: string; talosctlVersion: string; endpointHost: string };
}

/**
 * The talosctl commands for this cluster and these caches. Without a detected talosctl the
 * commands take the v1.12+ form.
 *
 * @throws ConfigError for settings the detected talosctl cannot express
 */
export function planCluster(settings: Settings, caches: readonly Cache[], version: TalosctlVersion = { major: 1, minor: 12, patch: 0 }): ClusterPlan {
    const { cluster } = settings;
    const problems = unsupportedSettings(cluster, version).map(
        ([key, value, what]) => `${formatKey(key.split("."))}: got ${formatValue([], value)}; expected ${what}`,
    );
    if (problems.length > 0) throw new ConfigError(problems);
    const createArgv = clusterCreateArgv(cluster, version, registryMirrorFlags(caches));
    return {
        create: shellQuote(createArgv),
        delete: shellQuote(clusterDestroyArgv(cluster, version)),
        createArgv,
        output: {
            name: cluster.name,
            provisioner: cluster.provisioner,
            talosctlVersion: formatVersion(version),
            // Docker nodes publish their APIs on the host; QEMU nodes answer on the bridge.
            endpointHost: cluster.provisioner === "docker" ? "127.0.0.1" : cidrAddress(cluster.cidr, 2),
        },
    };
}

/**
 * The `command.local.Command` inputs: any change to the command (mirrors, settings, version
 * family) replaces the cluster, and the output streams to the user.
 */
export function clusterCommand(plan: ClusterPlan) {
    return {
        create: plan.create,
        delete: plan.delete,
        triggers: [plan.create],
        logging: "stdoutAndStderr" as const,
    };
}

/** The old cluster goes before the new one: both would have the same name. */
export function clusterCommandOptions() {
    return { deleteBeforeReplace: true, customTimeouts: { create: "30m", delete: "10m" } };
}
