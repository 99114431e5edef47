/**
 * The stack config contract: every `pullthrough:<key>`, its zod schema, the defaults (in code,
 * since mocks and tools never see Pulumi.yaml's), and errors that name the key, the value and
 * what would be valid. Everything downstream (core/, host/, tools/) takes `Settings` from here.
 */
import { distance as levenshtein } from "fastest-levenshtein";
import { z } from "zod";
import { ConfigError, ConfigProblem, argumentSpelling, configNamespace } from "./core/config-error";
import { dockerHostAddress, parseDockerHost } from "./core/docker-host-url";
import { parseSize } from "./core/format";
import { parseImageReference } from "./core/image-reference";
import {
    cidrAddress,
    isClusterCidr,
    isIPv4,
    isIPv4Cidr,
    isLoopbackAddress,
    isLoopbackOnly,
    networkSize,
} from "./core/network";
import { parseRelease, parseReleaseOrMinor } from "./core/release";
import { certificateProblems } from "./core/tls";

/** The Talos guide's layout: one cache per upstream a Talos cluster pulls from. */
export const defaultUpstreams = [
    { registry: "docker.io", remote: "https://registry-1.docker.io", port: 5000 },
    { registry: "registry.k8s.io", remote: "https://registry.k8s.io", port: 5001 },
    { registry: "quay.io", remote: "https://quay.io", port: 5002 },
    { registry: "gcr.io", remote: "https://gcr.io", port: 5003 },
    { registry: "ghcr.io", remote: "https://ghcr.io", port: 5004 },
    { registry: "factory.talos.dev", remote: "https://factory.talos.dev", port: 5006 },
] as const satisfies readonly Upstream[];

/** The `prewarm` entry that stands for the configured Talos cluster's image set. */
export const talosImageSet = "talos";

// ---------------------------------------------------------------------------------------------
// Config contract
// ---------------------------------------------------------------------------------------------

const hostLabel = "[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?";
const hostName = `${hostLabel}(?:\\.${hostLabel})*`;
const hostNamePattern = new RegExp(`^${hostName}$`);
const registryPattern = new RegExp(
    `^${hostName}(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?$`,
);
/** Go's `time.ParseDuration` grammar without a sign: `0`, `168h`, `1h30m`, `1.5s`. */
const goDurationPattern = /^(?:0|(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+)$/;
/** Docker's container and volume name grammar, allowing an empty prefix. */
const namePrefixPattern = /^(?:[a-zA-Z0-9][a-zA-Z0-9_.-]*)?$/;

/** Docker keeps a volume in a folder of its name; with the longest registry it must fit a file name. */
const namePrefixMaxLength = 64;
/** A host name or IPv4 address; an all-numeric name must be a real IPv4 address. */
const isHost = (value: string) =>
    /^[0-9.]+$/.test(value) ? isIPv4(value) : hostNamePattern.test(value);

/** Inside the cache's container a loopback address is the cache itself. */
function isLoopbackHost(hostname: string): boolean {
    const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
    return host === "localhost" || host.endsWith(".localhost") || isLoopbackAddress(host);
}

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
        !isLoopbackHost(url.hostname) &&
        // `new URL` accepts `https:host` and `https:/host`; insist on the absolute form.
        /^https?:\/\/[^/]/.test(value)
    );
}

/** What each key accepts, in words; every config error ends with one of these. */
const expected = {
    upstreams: "a non-empty list of {registry, remote, port, ttl?} objects",
    registry:
        'a lower-case registry host name as used in image references, optionally with a port (e.g. "docker.io", "registry.local:5000")',
    remote: 'an absolute http(s) URL with no path, query or credentials, not on loopback, which inside the cache container is the cache itself (e.g. "https://registry-1.docker.io", or "http://172.17.0.1:5000" for a registry on this host)',
    port: "an integer port from 1 to 65535",
    duration: 'a Go duration such as "168h" or "90m", or "0" for never',
    image: 'a Docker image reference (e.g. "registry:3")',
    ipv4: 'an IPv4 address (e.g. "0.0.0.0" or "127.0.0.1")',
    host: 'a host name or IPv4 address the cluster nodes can reach (e.g. "10.5.0.1")',
    boolean: "true or false",
    namePrefix: `up to ${namePrefixMaxLength} letters, digits, "_", "." or "-", starting with a letter or digit (e.g. "registry-"), or empty`,
    credentials:
        'an object mapping a configured registry to {username, password} (e.g. {"docker.io": {"username": "me", "password": "…"}})',
    nonEmpty: "a non-empty string",
    cluster: "an object of cluster settings (see README: enabled, provisioner, name, cidr, …)",
    provisioner: '"docker" or "qemu"',
    clusterName: 'lower-case letters, digits and "-" (e.g. "talos-default")',
    cidr: 'an IPv4 network in CIDR form, /8 or narrower (e.g. "10.5.0.0/24")',
    kubernetesVersion: 'a Kubernetes release such as "1.34.0" or "v1.34.0"',
    talosVersion:
        'a Talos release such as "v1.11.0" (or, for QEMU, a minor release such as "v1.11")',
    controlplanes: "an integer of at least 1",
    workers: "an integer of at least 0",
    argList: 'a list of strings (e.g. ["--memory", "4096"])',
    mode: '"auto", "proxy" or "offline"',
    prewarm:
        'a list of image references and/or "talos" (e.g. ["talos", "docker.io/library/nginx:1.27"])',
    prewarmImage: 'an image reference such as "docker.io/library/nginx:1.27", or "talos"',
    allowFrom: 'a list of IPv4 networks or addresses (e.g. ["192.168.1.0/24", "10.0.0.7"])',
    network: 'an IPv4 network in CIDR form or an IPv4 address (e.g. "192.168.1.0/24")',
    size: 'a size in bytes with a unit, decimal or binary (e.g. "20GiB", "500MB", "1.5TB")',
    logs: "an object of log limits per container: {maxSize?, maxFiles?}",
    logSize:
        'a whole number of kilobytes, megabytes or gigabytes as Docker\'s json-file max-size takes it (e.g. "10m", "500k", "1g")',
    logFiles: "an integer from 1 to 100",
    bundle: "the path of a bundle made by npm run export (an OCI image layout directory or .tar)",
    tls: "an object: {enabled, certificate?, key?, ca?} (see docs/team-cache.md)",
    pem: "a PEM text",
    pullCredentials:
        'a list of {username, password} objects (e.g. [{"username": "ci", "password": "…"}])',
    pullUsername: 'a non-empty user name without ":" or spaces',
    dockerHost:
        'a Docker engine address as DOCKER_HOST takes it: "ssh://user@host" (optionally :port), "tcp://host:2376" (TLS) or "unix:///path/to/docker.sock"',
} as const;

/** One grammar for every image reference in config: the one the tools and caches use. */
const imageReference = (message: string) =>
    z.string(message).refine((ref) => parseImageReference(ref) !== undefined, message);

// YAML reads an unquoted `ttl: 0` as a number; 0 is unambiguous, any other number lacks a unit.
const duration = z.union(
    [
        z.string(expected.duration).regex(goDurationPattern, expected.duration),
        z.literal(0, expected.duration).transform(() => "0"),
    ],
    expected.duration,
);
const port = z
    .number(expected.port)
    .int(expected.port)
    .min(1, expected.port)
    .max(65535, expected.port);

const upstreamSchema = z.strictObject(
    {
        /** Registry host as it appears in image references, e.g. `docker.io`. */
        registry: z
            .string(expected.registry)
            .regex(registryPattern, expected.registry)
            .refine((registry) => registry === registry.toLowerCase(), expected.registry),
        /** Base URL the cache proxies, e.g. `https://registry-1.docker.io`. */
        remote: z.string(expected.remote).refine(isRemoteUrl, expected.remote),
        /** Host port the cache is published on. */
        port,
        /** How long cached content lives; overrides the stack-wide `ttl`. */
        ttl: duration.optional(),
    },
    expected.upstreams,
);

export type Upstream = z.output<typeof upstreamSchema>;

const credentialSchema = z.strictObject(
    {
        username: z.string(expected.nonEmpty).min(1, expected.nonEmpty),
        password: z.string(expected.nonEmpty).min(1, expected.nonEmpty),
    },
    expected.credentials,
);

export type Credential = z.output<typeof credentialSchema>;

/** What the front serves: HTTPS with the stack's own CA, or with a certificate the user gives. */
const tlsSchema = z.strictObject(
    {
        enabled: z.boolean(expected.boolean).default(false),
        // The user's server certificate (leaf first, then any intermediates) and its key.
        certificate: z.string(expected.pem).min(1, expected.pem).optional(),
        key: z.string(expected.pem).min(1, expected.pem).optional(),
        // The CA that issued `certificate`, for the clients' renderings; unset: the system's.
        ca: z.string(expected.pem).min(1, expected.pem).optional(),
    },
    expected.tls,
);

type TlsSettings = z.output<typeof tlsSchema>;

const pullCredentialSchema = z.strictObject(
    {
        // Basic auth splits `user:password` at the first colon.
        username: z.string(expected.pullUsername).regex(/^[^:\s]+$/, expected.pullUsername),
        password: z.string(expected.nonEmpty).min(1, expected.nonEmpty),
    },
    expected.pullCredentials,
);

const clusterSchema = z.strictObject(
    {
        enabled: z.boolean(expected.boolean).default(false),
        provisioner: z.enum(["docker", "qemu"], expected.provisioner).default("docker"),
        name: z
            .string(expected.clusterName)
            .regex(/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/, expected.clusterName)
            .default("talos-default"),
        cidr: z.string(expected.cidr).refine(isClusterCidr, expected.cidr).default("10.5.0.0/24"),
        controlplanes: z
            .number(expected.controlplanes)
            .int(expected.controlplanes)
            .min(1, expected.controlplanes)
            .default(1),
        workers: z
            .number(expected.workers)
            .int(expected.workers)
            .min(0, expected.workers)
            .default(1),
        talosVersion: z
            .string(expected.talosVersion)
            .refine((text) => parseReleaseOrMinor(text) !== undefined, expected.talosVersion)
            .optional(),
        kubernetesVersion: z
            .string(expected.kubernetesVersion)
            .refine((text) => parseRelease(text) !== undefined, expected.kubernetesVersion)
            .optional(),
        state: z.string(expected.nonEmpty).min(1, expected.nonEmpty).optional(),
        talosctl: z.string(expected.nonEmpty).min(1, expected.nonEmpty).default("talosctl"),
        // talosctl's own default for `--vmlinuz-path`/`--initrd-path`, here from the project folder.
        bootAssets: z.string(expected.nonEmpty).min(1, expected.nonEmpty).default("_out"),
        extraArgs: z.array(z.string(expected.argList), expected.argList).default([]),
    },
    expected.cluster,
);

/**
 * Docker's log of every container the stack makes, rotated at `maxSize` with `maxFiles` files
 * kept: 3 × 10 MB by default, so a cache that runs for months holds at most 30 MB of log each.
 */
const logsSchema = z.strictObject(
    {
        maxSize: z
            .string(expected.logSize)
            .regex(/^[1-9][0-9]*[kmg]$/, expected.logSize)
            .default("10m"),
        maxFiles: z
            .number(expected.logFiles)
            .int(expected.logFiles)
            .min(1, expected.logFiles)
            .max(100, expected.logFiles)
            .default(3),
    },
    expected.logs,
);

/** `pullthrough:logs` as validated, defaults filled in. */
export type LogLimits = z.output<typeof logsSchema>;

/** The log limits of containers made outside the stack config: the tools' views. */
export const defaultLogLimits: LogLimits = logsSchema.parse({});

/** `pullthrough:cluster` as validated, defaults filled in. */
export type ClusterSettings = z.output<typeof clusterSchema>;

const settingsObject = z.strictObject({
    upstreams: z
        .array(upstreamSchema, expected.upstreams)
        .min(1, expected.upstreams)
        .default(() => defaultUpstreams.map((upstream) => ({ ...upstream })))
        .superRefine(requireDistinctRegistriesAndPorts),
    image: imageReference(expected.image).default("registry:3"),
    frontImage: imageReference(expected.image).default("nginx:1"),
    bindAddress: z.string(expected.ipv4).refine(isIPv4, expected.ipv4).default("0.0.0.0"),
    // Derived from the cluster when unset: see defaultMirrorHost.
    mirrorHost: z.string(expected.host).refine(isHost, expected.host).optional(),
    // The front's one port for every registry, routed by containerd's `ns` (docs/talos.md).
    anyRegistryPort: port.default(5005),
    ttl: duration.default("0"),
    keepCache: z.boolean(expected.boolean).default(true),
    namePrefix: z
        .string(expected.namePrefix)
        .regex(namePrefixPattern, expected.namePrefix)
        .max(namePrefixMaxLength, expected.namePrefix)
        .default("registry-"),
    credentials: z.record(z.string(), credentialSchema, expected.credentials).default({}),
    cluster: clusterSchema.default(() => clusterSchema.parse({})),
    mode: z.enum(["auto", "proxy", "offline"], expected.mode).default("auto"),
    prewarm: z
        .array(
            z
                .string(expected.prewarmImage)
                .refine(
                    (ref) => ref === talosImageSet || parseImageReference(ref) !== undefined,
                    expected.prewarmImage,
                ),
            expected.prewarm,
        )
        .default([]),
    allowFrom: z
        .array(
            z
                .string(expected.network)
                .refine((value) => isIPv4(value) || isIPv4Cidr(value), expected.network),
            expected.allowFrom,
        )
        .default([]),
    tls: tlsSchema.default(() => tlsSchema.parse({})),
    // Who may pull: the front asks for one of these (Basic auth); empty, anyone allowed may.
    pullCredentials: z
        .array(pullCredentialSchema, expected.pullCredentials)
        .default([])
        .superRefine(requireDistinctUsernames),
    allowPlainHttpCredentials: z.boolean(expected.boolean).default(false),
    // Off by default: the bench measured no gain (BENCHMARKS.md, "Prefetch").
    prefetch: z.boolean(expected.boolean).default(false),
    // Unset: this machine's engine, as the Docker provider's default.
    dockerHost: z
        .string(expected.dockerHost)
        .refine((value) => parseDockerHost(value) !== undefined, expected.dockerHost)
        .optional(),
    // A bundle `up` imports once the caches are healthy (README, Air gaps and CI).
    importFrom: z.string(expected.bundle).min(1, expected.bundle).optional(),
    // Off when unset: the caches grow with what is pulled (README, Disk budget).
    maxSize: z
        .string(expected.size)
        .refine((value) => parseSize(value) !== undefined, expected.size)
        .optional(),
    logs: logsSchema.default(() => logsSchema.parse({})),
});

const settingsSchema = settingsObject
    .superRefine(requireAnyRegistryPortOfItsOwn)
    .superRefine(requireCredentialsForConfiguredRegistries)
    .superRefine(requireCachesForPrewarmImages)
    .superRefine(requireRoomForClusterNodes)
    .superRefine(requireAllowFromForOtherDockerHost)
    .superRefine(requireWholeTlsSettings)
    .superRefine(requireTlsForCredentialsOffLoopback)
    .transform((settings) => ({
        ...settings,
        mirrorHost:
            settings.mirrorHost ??
            dockerHostAddress(settings.dockerHost) ??
            defaultMirrorHost(settings.cluster),
    }))
    .superRefine(requireUsableCertificate);

/** A certificate comes with its key, and a CA with the certificate it issued. */
function requireWholeTlsSettings(settings: { tls: TlsSettings }, ctx: z.RefinementCtx) {
    const { enabled, certificate, key, ca } = settings.tls;
    const problem = (field: string, input: unknown, message: string) =>
        ctx.addIssue({ code: "custom", path: ["tls", field], input, message });
    if (certificate !== undefined && key === undefined)
        problem("key", key, "the private key of tls.certificate, set with --secret");
    if (key !== undefined && certificate === undefined)
        problem("certificate", certificate, "the certificate of tls.key");
    if (ca !== undefined && certificate === undefined)
        problem("ca", ca, "nothing without tls.certificate: the stack's own CA needs no setting");
    if (!enabled && certificate !== undefined)
        problem("enabled", enabled, "true, to serve tls.certificate");
}

/** Passwords never cross a network in clear unless the user says so. */
function requireTlsForCredentialsOffLoopback(
    settings: {
        tls: TlsSettings;
        pullCredentials: Credential[];
        bindAddress: string;
        allowPlainHttpCredentials: boolean;
    },
    ctx: z.RefinementCtx,
) {
    const { tls, pullCredentials, bindAddress, allowPlainHttpCredentials } = settings;
    if (
        pullCredentials.length > 0 &&
        !tls.enabled &&
        !isLoopbackOnly(bindAddress) &&
        !allowPlainHttpCredentials
    )
        ctx.addIssue({
            code: "custom",
            path: ["pullCredentials"],
            input: pullCredentials,
            message: `credentials sent over HTTPS: with bindAddress ${bindAddress} and tls.enabled false they would cross the network in clear; set tls.enabled: true (or bindAddress 127.0.0.1, or allowPlainHttpCredentials: true to accept it)`,
        });
}

/** A user's certificate must match its key, be valid now and name the host nodes connect to. */
function requireUsableCertificate(
    settings: { tls: TlsSettings; mirrorHost: string },
    ctx: z.RefinementCtx,
) {
    const { certificate, key, ca } = settings.tls;
    if (certificate === undefined || key === undefined) return;
    for (const problem of certificateProblems(
        { certificate, key, ca },
        settings.mirrorHost,
        new Date(),
    ))
        ctx.addIssue({
            code: "custom",
            path: ["tls", problem.field],
            input: settings.tls[problem.field],
            message: problem.expected,
        });
}

function requireDistinctUsernames(credentials: Credential[], ctx: z.RefinementCtx) {
    const seen = new Set<string>();
    credentials.forEach(({ username }, index) => {
        if (seen.has(username))
            ctx.addIssue({
                code: "custom",
                path: [index, "username"],
                input: username,
                message: "a user name no other entry has",
            });
        seen.add(username);
    });
}

/**
 * On another machine the front sees this one's nodes and tools from this machine's own address,
 * which nothing in the default allow-list covers: everyone would get 403.
 */
function requireAllowFromForOtherDockerHost(
    settings: { dockerHost?: string; allowFrom: string[] },
    ctx: z.RefinementCtx,
) {
    const address = dockerHostAddress(settings.dockerHost);
    if (address && settings.allowFrom.length === 0)
        ctx.addIssue({
            code: "custom",
            path: ["allowFrom"],
            input: settings.allowFrom,
            message: `who may pull from ${address}, this machine at least: with dockerHost set, an empty list leaves every pull a 403 (${expected.allowFrom})`,
        });
}

export type Settings = z.output<typeof settingsSchema>;

/** How a cache treats its upstream; see cache-supervisor.sh. */
export type CacheMode = Settings["mode"];

/**
 * Where nodes find the host: their network's gateway, a host address for either provisioner
 * (QEMU's bridge; the bridge of the Docker network talosctl makes), as Talos 1.12+ documents it.
 * Unlike docker0's 172.17.0.1 it does not depend on how the Docker daemon is configured.
 */
function defaultMirrorHost(cluster: Pick<ClusterSettings, "cidr">): string {
    return cidrAddress(cluster.cidr, 1);
}

function requireRoomForClusterNodes(settings: { cluster: ClusterSettings }, ctx: z.RefinementCtx) {
    const { cidr, controlplanes, workers } = settings.cluster;
    if (!isIPv4Cidr(cidr)) return; // reported by the field's own check
    const size = networkSize(cidr);
    const nodes = controlplanes + workers;
    // Talos puts the gateway at offset 1 and nodes from offset 2; the last address is broadcast.
    if (nodes + 3 > size) {
        const widest = 32 - Math.ceil(Math.log2(nodes + 3));
        ctx.addIssue({
            code: "custom",
            path: ["cluster", "cidr"],
            input: cidr,
            message: `a network with room for a gateway and ${nodes} nodes (/${widest} or wider)`,
        });
    }
}

function requireAnyRegistryPortOfItsOwn(
    settings: { upstreams: Upstream[]; anyRegistryPort: number },
    ctx: z.RefinementCtx,
) {
    const index = settings.upstreams.findIndex(
        (upstream) => upstream.port === settings.anyRegistryPort,
    );
    if (index >= 0)
        ctx.addIssue({
            code: "custom",
            path: ["anyRegistryPort"],
            input: settings.anyRegistryPort,
            message: `a port no upstream uses (upstreams[${index}] has it)`,
        });
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

function requireCredentialsForConfiguredRegistries(
    settings: { upstreams: Upstream[]; credentials: Record<string, Credential> },
    ctx: z.RefinementCtx,
) {
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

function requireCachesForPrewarmImages(
    settings: { upstreams: Upstream[]; prewarm: string[] },
    ctx: z.RefinementCtx,
) {
    const registries = settings.upstreams.map((upstream) => upstream.registry);
    settings.prewarm.forEach((ref, index) => {
        const image = ref === talosImageSet ? undefined : parseImageReference(ref);
        if (image && !registries.includes(image.registry)) {
            ctx.addIssue({
                code: "custom",
                path: ["prewarm", index],
                input: ref,
                message: noCacheFor(image.registry, registries),
            });
        }
    });
}

const noCacheFor = (registry: string, registries: readonly string[]) =>
    `an image from a registry with a cache (${registry} has none; caches: ${registries.join(", ")})`;

/** Every top-level config key, in the order the schema declares them (and Pulumi.yaml lists them). */
export const configKeys = Object.keys(
    settingsObject.shape,
) as (keyof typeof settingsObject.shape)[];

/** The keys of `cluster`, in the order the schema declares them. */
export const clusterKeys = Object.keys(clusterSchema.shape) as (keyof ClusterSettings)[];

/** The Pulumi CLI hands a key over as a plain string when its schema takes one, else as JSON. */
const takesPlainString = (schema: z.ZodType): boolean => {
    const def = schema.def as {
        type: string;
        innerType?: z.ZodType;
        out?: z.ZodType;
        options?: z.ZodType[];
    };
    if (def.type === "default" || def.type === "optional") return takesPlainString(def.innerType!);
    if (def.type === "pipe") return takesPlainString(def.out!);
    if (def.type === "union") return def.options!.some(takesPlainString);
    return def.type === "string" || def.type === "enum";
};

/** `pulumi config set` stores plain strings for these keys; the others arrive as JSON. */
export const plainStringKeys: ReadonlySet<string> = new Set(
    configKeys.filter((key) => takesPlainString(settingsObject.shape[key])),
);

/** What a whole key accepts, for values that are not even JSON. */
const expectedForKey = {
    upstreams: expected.upstreams,
    image: expected.image,
    frontImage: expected.image,
    bindAddress: expected.ipv4,
    mirrorHost: expected.host,
    anyRegistryPort: expected.port,
    ttl: expected.duration,
    keepCache: expected.boolean,
    namePrefix: expected.namePrefix,
    credentials: expected.credentials,
    cluster: expected.cluster,
    mode: expected.mode,
    prewarm: expected.prewarm,
    allowFrom: expected.allowFrom,
    tls: expected.tls,
    pullCredentials: expected.pullCredentials,
    allowPlainHttpCredentials: expected.boolean,
    prefetch: expected.boolean,
    dockerHost: expected.dockerHost,
    importFrom: expected.bundle,
    maxSize: expected.size,
    logs: expected.logs,
} satisfies Record<(typeof configKeys)[number], string>;

/**
 * Config values as the Pulumi CLI hands them to a program: strings as they are, anything else as
 * JSON. Keys without a namespace go into `pullthrough:`; `docker:host` and the like stay as given.
 */
export function encodeConfig(values: Readonly<Record<string, unknown>>): Record<string, string> {
    return Object.fromEntries(
        // An undefined value is an unset key, as on the CLI.
        Object.entries(values)
            .filter(([, value]) => value !== undefined)
            .map(([key, value]) => [
                key.includes(":") ? key : `${configNamespace}:${key}`,
                typeof value === "string" ? value : JSON.stringify(value),
            ]),
    );
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
    const problems: ConfigProblem[] = [];
    for (const [fullKey, raw] of Object.entries(allConfig)) {
        if (!fullKey.startsWith(prefix)) continue;
        const key = fullKey.slice(prefix.length);
        if (!(key in expectedForKey) || plainStringKeys.has(key)) {
            values[key] = raw;
            continue;
        }
        try {
            values[key] = JSON.parse(raw);
        } catch {
            problems.push({
                key: [key],
                detail: `got ${formatValue([key], raw)}, which is not JSON; expected ${expectedForKey[key as keyof typeof expectedForKey]}`,
            });
        }
    }
    return validate(values, problems);
}

/**
 * The settings of the same contract, given as the `Caches` component's arguments: plain values,
 * validated by the same schema, with defaults filled in.
 *
 * @throws ConfigError naming each bad argument by its path (`args.upstreams[0].port`)
 */
export function parseCachesArgs(args: SettingsInput): Settings {
    try {
        return validate({ ...args }, []);
    } catch (error) {
        throw error instanceof ConfigError ? error.spelledAs(argumentSpelling) : error;
    }
}

/** What the schema takes: the stack config's keys, as values rather than strings (`CachesArgs`). */
export type SettingsInput = z.input<typeof settingsSchema>;

function validate(values: Record<string, unknown>, problems: ConfigProblem[]): Settings {
    problems.push(...protoKeys(values, []));
    const result = settingsSchema.safeParse(values, { reportInput: true });
    if (!result.success) problems.push(...result.error.issues.flatMap(describeIssue));
    if (problems.length > 0) throw new ConfigError(problems);
    return result.data!;
}

/**
 * `__proto__` keys, which JSON.parse keeps but any object copy (zod's too) silently drops: a
 * setting the user wrote must never vanish.
 */
function protoKeys(value: unknown, path: PropertyKey[]): ConfigProblem[] {
    if (typeof value !== "object" || value === null) return [];
    const own = Object.hasOwn(value, "__proto__")
        ? [{ key: [...path, "__proto__"], detail: "not a key this config takes" }]
        : [];
    return [
        ...own,
        ...Object.entries(value).flatMap(([key, child]) =>
            protoKeys(child, [...path, Array.isArray(value) ? Number(key) : key]),
        ),
    ];
}

/** Known keys of the object at `path`, for "did you mean" hints. */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
    if (path.length === 0) return Object.keys(settingsObject.shape);
    if (path[0] === "upstreams") return Object.keys(upstreamSchema.shape);
    if (path[0] === "cluster") return Object.keys(clusterSchema.shape);
    if (path[0] === "logs") return Object.keys(logsSchema.shape);
    if (path[0] === "tls") return Object.keys(tlsSchema.shape);
    if (path[0] === "pullCredentials") return Object.keys(pullCredentialSchema.shape);
    return Object.keys(credentialSchema.shape);
}

function describeIssue(issue: z.core.$ZodIssue): ConfigProblem[] {
    if (issue.code === "unrecognized_keys") {
        const known = knownKeysAt(issue.path);
        return issue.keys.map((key) => {
            const nearest = nearestKey(key, known);
            const hint = nearest ? `did you mean "${nearest}"? ` : "";
            return {
                key: [...issue.path, key],
                detail: `unknown key; ${hint}valid keys are ${known.join(", ")}`,
            };
        });
    }
    const input = (issue as { input?: unknown }).input;
    return [
        {
            key: issue.path,
            detail: `got ${formatValue(issue.path, input)}; expected ${issue.message}`,
        },
    ];
}

/** Keys whose values never reach a log: passwords, keys, and what holds them. */
const isSecretPath = (path: readonly PropertyKey[]) =>
    path[0] === "credentials" ||
    path[0] === "pullCredentials" ||
    (path[0] === "tls" && path[1] !== "enabled");

/** Shows the offending value, except a secret one. */
export function formatValue(path: readonly PropertyKey[], value: unknown): string {
    if (value === undefined) return "nothing";
    if (isSecretPath(path)) return "[secret]";
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** The known key closest to `key` by edit distance, if it is close enough to be a typo. */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
    let best: { key: string; distance: number } | undefined;
    for (const candidate of known) {
        const distance = levenshtein(key.toLowerCase(), candidate.toLowerCase());
        if (!best || distance < best.distance) best = { key: candidate, distance };
    }
    return best && best.distance <= Math.max(2, Math.floor(key.length / 3)) ? best.key : undefined;
}
