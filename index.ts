/**
 * Pullthrough: one pull-through registry cache per upstream on this host's Docker engine, and,
 * when asked, a Talos cluster that pulls through them. All decisions live in ./mirrors; this
 * file only turns the plan into resources and outputs.
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import * as command from "@pulumi/command";
import * as plan from "./mirrors";
import { detectTalosctlVersion, readTalosImageSet } from "./talosctl";

const { settings, caches, prewarmImages, clusterPlan } = loadPlan();

const cacheContainers = caches.map((cache) => {
    // The cache's storage; kept on destroy when keepCache is set, so the next up starts warm.
    const volume = new docker.Volume(cache.name, plan.cacheVolume(cache), plan.volumeOptions(settings));
    // The registry, run per `mode` (see cache-supervisor.sh); `wait` holds `pulumi up` until it is healthy.
    const { secretEnvs, ...container } = plan.cacheContainer(cache);
    const envs = secretEnvs.length > 0 ? pulumi.secret([...container.envs, ...secretEnvs]) : container.envs;
    return new docker.Container(cache.name, { ...container, envs }, { ...plan.containerOptions(), dependsOn: volume });
});

// Warms the caches before any node pulls, so even a first boot pulls from warm caches.
const prewarm =
    prewarmImages.length > 0
        ? [new command.local.Command("prewarm-caches", plan.prewarmCommand(prewarmImages, caches, __dirname), { dependsOn: cacheContainers })]
        : [];

if (settings.cluster.enabled) {
    // The Talos cluster boots only once every cache is healthy (and warm, with prewarm).
    new command.local.Command("talos-cluster", plan.clusterCommand(clusterPlan), { ...plan.clusterCommandOptions(), dependsOn: [...cacheContainers, ...prewarm] });
}

export const mirrors = plan.mirrorsByRegistry(caches);
export const registryMirrorFlags = plan.registryMirrorFlags(caches);
export const talosConfigPatch = plan.talosConfigPatch(caches);
export const talosMirrorDocuments = plan.talosMirrorDocuments(caches);
export const containerdHosts = plan.containerdHosts(caches);
export { prewarmImages };
export const talosctlCreate = clusterPlan.create;
// null, not undefined: an undefined export draws a warning on every `pulumi up`.
export const cluster = settings.cluster.enabled ? clusterPlan.output : null;

/** Validates config and plans everything; a bad setting stops the program before any resource. */
function loadPlan() {
    try {
        const settings = plan.parseSettings(pulumi.runtime.allConfig());
        const caches = plan.planCaches(settings, { project: pulumi.getProject(), stack: pulumi.getStack() });
        const prewarmImages = plan.planPrewarm(settings, caches, () => readTalosImageSet(settings.cluster));
        const clusterPlan = plan.planCluster(settings, caches, detectTalosctlVersion(settings.cluster));
        return { settings, caches, prewarmImages, clusterPlan };
    } catch (error) {
        // RunError prints the message alone, without a stack trace.
        throw new pulumi.RunError(error instanceof Error ? error.message : String(error));
    }
}
