/**
 * Pullthrough: one pull-through registry cache per upstream, on this host's Docker engine.
 * All decisions live in ./mirrors; this file only turns the plan into resources and outputs.
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import * as plan from "./mirrors";

const settings = loadSettings();
const caches = plan.planCaches(settings, { project: pulumi.getProject(), stack: pulumi.getStack() });

for (const cache of caches) {
    // The cache's storage; kept on destroy when keepCache is set, so the next up starts warm.
    const volume = new docker.Volume(cache.name, plan.cacheVolume(cache), plan.volumeOptions(settings));
    // The registry in proxy mode; `wait` holds `pulumi up` until its healthcheck passes.
    const { secretEnvs, ...container } = plan.cacheContainer(cache);
    const envs = secretEnvs.length > 0 ? pulumi.secret([...container.envs, ...secretEnvs]) : container.envs;
    new docker.Container(cache.name, { ...container, envs }, { ...plan.containerOptions(), dependsOn: volume });
}

export const mirrors = plan.mirrorsByRegistry(caches);
export const registryMirrorFlags = plan.registryMirrorFlags(caches);
export const talosConfigPatch = plan.talosConfigPatch(caches);
export const talosMirrorDocuments = plan.talosMirrorDocuments(caches);
export const containerdHosts = plan.containerdHosts(caches);

/** Reads and validates the stack config; an invalid config stops the program before any resource. */
function loadSettings(): plan.Settings {
    try {
        return plan.parseSettings(pulumi.runtime.allConfig());
    } catch (error) {
        // RunError prints the message alone, without a stack trace.
        throw error instanceof plan.ConfigError ? new pulumi.RunError(error.message) : error;
    }
}
