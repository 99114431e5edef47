/**
 * The Pullthrough stack: reads the stack config (`pullthrough:<key>`, mirrors.ts), makes one
 * `Caches` component from it (caches.ts) and exports the component's outputs as the stack's.
 */
import * as pulumi from "@pulumi/pulumi";
import { Caches } from "./caches";
import { parseSettings } from "./mirrors";
import { ConfigError, configSpelling } from "./core/config-error";

const caches = makeCaches();

export const mirrors = caches.mirrors;
export const registryMirrorFlags = caches.registryMirrorFlags;
export const talosConfigPatch = caches.talosConfigPatch;
export const talosMirrorDocuments = caches.talosMirrorDocuments;
export const containerdHosts = caches.containerdHosts;
export const anyRegistry = caches.anyRegistry;
export const talosAnyRegistryPatch = caches.talosAnyRegistryPatch;
export const talosAnyRegistryDocuments = caches.talosAnyRegistryDocuments;
export const containerdDefaultHosts = caches.containerdDefaultHosts;
export const anyRegistryMirrorFlags = caches.anyRegistryMirrorFlags;
export const caCertificate = caches.caCertificate;
export const dockerCaInstall = caches.dockerCaInstall;
export const prewarmImages = caches.prewarmImages;
export const talosctlCreate = caches.talosctlCreate;
// For the tools: the engine their `docker` commands must reach (null: this machine's).
export const dockerHost = caches.dockerHost;
export const cluster = caches.cluster;

/** The stack's caches; a bad setting stops the program, named by its config key, before any resource. */
function makeCaches(): Caches {
    try {
        return new Caches("pullthrough", parseSettings(pulumi.runtime.allConfig()));
    } catch (error) {
        // The component names arguments (`args.ttl`); a stack user set config keys (`pullthrough:ttl`).
        const named = error instanceof ConfigError ? error.spelledAs(configSpelling) : error;
        // RunError prints the message alone, without a stack trace.
        throw new pulumi.RunError(named instanceof Error ? named.message : String(named));
    }
}
