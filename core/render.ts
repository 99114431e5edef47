/**
 * Client renderings of the cache plan: the stack outputs in the forms Talos, containerd and
 * `talosctl` take. Pure; every function maps caches to text or plain data.
 */
import { stringify as toYaml } from "yaml";
import type { MirrorEndpoint } from "./caches-types";
import { Cache, CacheEndpoint, cacheEndpoint } from "./plan";
import type { AnyRegistryEndpoint } from "./caches-types";

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

/** Legacy `machine.registries.mirrors` patch: understood by every Talos version. */
export function talosConfigPatch(caches: readonly Cache[]): string {
    const mirrors = Object.fromEntries(
        caches.map((cache) => [cache.registry, { endpoints: [cache.endpoint] }]),
    );
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
        caches.map((cache) => [cache.registry, hostsToml(cache.remote, cache.endpoint)]),
    );
}

/** One registry's `hosts.toml`: pull from `mirror`, and from `server` when the mirror fails. */
export const hostsToml = (server: string, mirror: string) =>
    `server = ${JSON.stringify(server)}\n\n[host.${JSON.stringify(mirror)}]\n  capabilities = ["pull", "resolve"]\n`;

/** `machine.registries.mirrors."*"`: one mirror for every registry, the one port (Talos 1.4+). */
export function talosAnyRegistryPatch(anyRegistry: AnyRegistryEndpoint): string {
    return toYaml({
        machine: { registries: { mirrors: { "*": { endpoints: [anyRegistry.endpoint] } } } },
    });
}

/** The same as a `RegistryMirrorConfig` document named `*` (Talos 1.12+). */
export function talosAnyRegistryDocuments(anyRegistry: AnyRegistryEndpoint): string {
    return toYaml({
        apiVersion: "v1alpha1",
        kind: "RegistryMirrorConfig",
        name: "*",
        endpoints: [{ url: anyRegistry.endpoint }],
    });
}

/**
 * containerd's `_default/hosts.toml` (1.6.17+, 1.7+): the one port for any registry without its
 * own folder. No `server`: containerd then falls back to the image's own registry, as Talos
 * renders a `*` mirror.
 */
export const containerdDefaultHosts = (anyRegistry: AnyRegistryEndpoint) =>
    `[host.${JSON.stringify(anyRegistry.endpoint)}]\n  capabilities = ["pull", "resolve"]\n`;

/** `talosctl cluster create --registry-mirror '*=<endpoint>'`: talosctl passes `*` through. */
export const anyRegistryMirrorFlags = (anyRegistry: AnyRegistryEndpoint) => [
    "--registry-mirror",
    `*=${anyRegistry.endpoint}`,
];
