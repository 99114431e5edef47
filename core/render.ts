/**
 * Client renderings of the cache plan: the stack outputs in the forms Talos, containerd and
 * `talosctl` take. Pure; every function maps caches to text or plain data.
 */
import { stringify as toYaml } from "yaml";
import type { MirrorEndpoint } from "./caches-types";
import { Cache, CacheEndpoint, cacheEndpoint } from "./plan";
import type { AnyRegistryEndpoint } from "./caches-types";
import type { Credential } from "../mirrors";

/**
 * What a client needs besides an endpoint: the CA to trust the front by (PEM; unset on plain
 * HTTP, or for a certificate the system's CAs trust) and the pull credential to send.
 */
export interface ClientAccess {
    ca?: string;
    credential?: Credential;
}

/** The `host:port` of an endpoint URL: the key Talos and containerd file its TLS and auth under. */
export const endpointHost = (endpoint: string) => new URL(endpoint).host;

/**
 * `machine.registries.config`: per endpoint, the CA (base64) and the credential, keyed by the
 * endpoint's `host:port` (Talos `configureEndpoint(u.Host, …)`); undefined when there is neither.
 */
function talosRegistryConfig(endpoints: readonly string[], { ca, credential }: ClientAccess) {
    if (ca === undefined && credential === undefined) return undefined;
    return Object.fromEntries(
        endpoints.map((endpoint) => [
            endpointHost(endpoint),
            {
                ...(ca !== undefined ? { tls: { ca: Buffer.from(ca).toString("base64") } } : {}),
                ...(credential ? { auth: { ...credential } } : {}),
            },
        ]),
    );
}

/** The Talos 1.12+ documents of the same: a `RegistryTLSConfig` (PEM) and a `RegistryAuthConfig` per endpoint. */
function talosAccessDocuments(endpoints: readonly string[], { ca, credential }: ClientAccess) {
    return endpoints.flatMap((endpoint) => [
        ...(ca !== undefined
            ? [
                  {
                      apiVersion: "v1alpha1",
                      kind: "RegistryTLSConfig",
                      name: endpointHost(endpoint),
                      ca,
                  },
              ]
            : []),
        ...(credential
            ? [
                  {
                      apiVersion: "v1alpha1",
                      kind: "RegistryAuthConfig",
                      name: endpointHost(endpoint),
                      ...credential,
                  },
              ]
            : []),
    ]);
}

const yamlDocuments = (documents: readonly object[]) =>
    documents.map((document) => toYaml(document)).join("---\n");

/**
 * The machine-config patch that gives a Talos node the CA and credential for `endpoints`, in
 * the form its release takes: documents from 1.12, `machine.registries.config` before. Empty
 * when there is nothing to give.
 */
export function talosAccessPatch(
    endpoints: readonly string[],
    access: ClientAccess,
    form: "talosConfigPatch" | "talosMirrorDocuments",
): string {
    if (form === "talosMirrorDocuments")
        return yamlDocuments(talosAccessDocuments(endpoints, access));
    const config = talosRegistryConfig(endpoints, access);
    return config ? toYaml({ machine: { registries: { config } } }) : "";
}

/** The `mirrors` output: each cache's endpoint, keyed by its registry. */
export type MirrorsOutput = Record<string, MirrorEndpoint>;

export function mirrorsByRegistry(caches: readonly Cache[]): MirrorsOutput {
    return Object.fromEntries(
        caches.map((cache) => {
            const { registry, ...mirror } = cacheEndpoint(cache);
            return [registry, mirror];
        }),
    );
}

/** The caches of a `mirrors` output, as the tools take them: the one way back from the outputs. */
export function cacheEndpoints(mirrors: MirrorsOutput): CacheEndpoint[] {
    return Object.entries(mirrors).map(([registry, mirror]) => ({ registry, ...mirror }));
}

/** `talosctl cluster create` flags: the flag is a string slice, so one pair per registry. */
export function registryMirrorFlags(caches: readonly Cache[]): string[] {
    return caches.flatMap((cache) => ["--registry-mirror", `${cache.registry}=${cache.endpoint}`]);
}

/** Legacy `machine.registries` patch (mirrors, and each endpoint's CA and credential): every Talos version. */
export function talosConfigPatch(caches: readonly Cache[], access: ClientAccess = {}): string {
    const mirrors = Object.fromEntries(
        caches.map((cache) => [cache.registry, { endpoints: [cache.endpoint] }]),
    );
    const config = talosRegistryConfig(
        caches.map((cache) => cache.endpoint),
        access,
    );
    return toYaml({ machine: { registries: { mirrors, ...(config ? { config } : {}) } } });
}

/** One `RegistryMirrorConfig` document per registry, then each endpoint's TLS and auth (Talos 1.12+). */
export function talosMirrorDocuments(caches: readonly Cache[], access: ClientAccess = {}): string {
    return yamlDocuments([
        ...caches.map((cache) => ({
            apiVersion: "v1alpha1",
            kind: "RegistryMirrorConfig",
            name: cache.registry,
            endpoints: [{ url: cache.endpoint }],
        })),
        ...talosAccessDocuments(
            caches.map((cache) => cache.endpoint),
            access,
        ),
    ]);
}

/**
 * containerd `hosts.toml` per registry (`<config_path>/<registry>/hosts.toml`): the cache first,
 * the real registry as `server` so a node still pulls when the cache is down. With a CA, the
 * `caCertificate` output goes next to each as `ca.crt`.
 */
export function containerdHosts(
    caches: readonly Cache[],
    access: ClientAccess = {},
): Record<string, string> {
    return Object.fromEntries(
        caches.map((cache) => [cache.registry, hostsToml(cache.remote, cache.endpoint, access)]),
    );
}

/**
 * The file name of the CA next to each `hosts.toml`: containerd reads a relative `ca` from the
 * host's own folder (`makeAbsPath(cert, baseDir)`, core/remotes/docker/config/hosts.go).
 */
export const containerdCaFile = "ca.crt";

/** One registry's `hosts.toml`: pull from `mirror`, and from `server` when the mirror fails. */
export const hostsToml = (server: string, mirror: string, access: ClientAccess = {}) =>
    `server = ${JSON.stringify(server)}\n\n${hostEntry(mirror, access)}`;

/** A `[host."<endpoint>"]` entry: pull and resolve, trusting the CA when there is one. */
const hostEntry = (endpoint: string, { ca }: ClientAccess) =>
    `[host.${JSON.stringify(endpoint)}]\n  capabilities = ["pull", "resolve"]\n${ca !== undefined ? `  ca = ${JSON.stringify(containerdCaFile)}\n` : ""}`;

/**
 * `machine.registries.mirrors."*"`: one mirror for every registry, the one port (Talos 1.4+).
 * Its CA and credential go under the endpoint's own `host:port`: Talos refuses TLS for `*`.
 */
export function talosAnyRegistryPatch(
    anyRegistry: AnyRegistryEndpoint,
    access: ClientAccess = {},
): string {
    const config = talosRegistryConfig([anyRegistry.endpoint], access);
    return toYaml({
        machine: {
            registries: {
                mirrors: { "*": { endpoints: [anyRegistry.endpoint] } },
                ...(config ? { config } : {}),
            },
        },
    });
}

/** The same as a `RegistryMirrorConfig` document named `*`, and its TLS and auth (Talos 1.12+). */
export function talosAnyRegistryDocuments(
    anyRegistry: AnyRegistryEndpoint,
    access: ClientAccess = {},
): string {
    return yamlDocuments([
        {
            apiVersion: "v1alpha1",
            kind: "RegistryMirrorConfig",
            name: "*",
            endpoints: [{ url: anyRegistry.endpoint }],
        },
        ...talosAccessDocuments([anyRegistry.endpoint], access),
    ]);
}

/**
 * containerd's `_default/hosts.toml` (1.6.17+, 1.7+): the one port for any registry without its
 * own folder. No `server`: containerd then falls back to the image's own registry, as Talos
 * renders a `*` mirror.
 */
export const containerdDefaultHosts = (
    anyRegistry: AnyRegistryEndpoint,
    access: ClientAccess = {},
) => hostEntry(anyRegistry.endpoint, access);

/** `talosctl cluster create --registry-mirror '*=<endpoint>'`: talosctl passes `*` through. */
export const anyRegistryMirrorFlags = (anyRegistry: AnyRegistryEndpoint) => [
    "--registry-mirror",
    `*=${anyRegistry.endpoint}`,
];

/**
 * A script that makes Docker trust the front: the CA as `ca.crt` in `certs.d/<host:port>/` for
 * every endpoint (moby `loadTLSConfig` adds each `*.crt` there to the system's CAs, read at each
 * pull). `DOCKER_CERTS_D` points it at rootless Docker's folder. Null without a CA to install.
 */
export function dockerCaInstall(
    endpoints: readonly string[],
    ca: string | undefined,
): string | null {
    if (ca === undefined) return null;
    const hosts = endpoints.map(endpointHost).join(" ");
    return [
        "#!/bin/sh",
        "# Run as root: trust the Pullthrough front's CA in Docker (no restart needed).",
        "set -eu",
        'certs="${DOCKER_CERTS_D:-/etc/docker/certs.d}"',
        `ca='${ca.trim()}'`,
        `for endpoint in ${hosts}; do`,
        '    mkdir -p "$certs/$endpoint"',
        '    printf \'%s\\n\' "$ca" >"$certs/$endpoint/ca.crt"',
        '    echo "trusted for $endpoint: $certs/$endpoint/ca.crt"',
        "done",
        "",
    ].join("\n");
}
