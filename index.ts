/**
 * Pullthrough: one pull-through registry cache per upstream on a Docker engine (this host's, or
 * `dockerHost`), behind one coalescing front, and, when asked, a Talos cluster on this host that
 * pulls through them. Every decision
 * lives in mirrors.ts (the config contract) and core/ (the plan and its renderings); this file
 * only turns the plan into resources and outputs.
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import * as command from "@pulumi/command";
import { parseSettings } from "./mirrors";
import { planCluster, clusterCommand, clusterCommandOptions } from "./core/cluster";
import {
    frontContainer,
    frontLedgerVolume,
    networkOptions,
    planFront,
    stackNetwork,
} from "./core/front";
import {
    cacheContainer,
    cacheVolume,
    containerOptions,
    planCaches,
    volumeOptions,
} from "./core/plan";
import { importCommand, planPrewarm, prewarmCommand, pruneCommand } from "./core/prewarm";
import * as render from "./core/render";
import { readCacheSupervisor, readFrontScripts } from "./host/assets";
import { dockerProviderArgs } from "./host/docker-host";
import { bundleToImport } from "./host/oci-layout";
import { checkHost } from "./host/preflight";
import { detectTalosctlVersion, readTalosImageSet, requireBootAssets } from "./host/talosctl";
import { hostPlatform } from "./core/images";

const { settings, caches, front, prewarmImages, clusterPlan, bundle } = loadPlan();
const supervisor = readCacheSupervisor();
const toolInput = { images: prewarmImages, caches, dockerHost: settings.dockerHost };

// The engine the caches run on: `dockerHost` (another machine's), else the provider's default.
const onDockerHost = settings.dockerHost
    ? { provider: new docker.Provider("docker-host", dockerProviderArgs(settings.dockerHost)) }
    : {};

// The stack's private network: the front reaches each registry on it by container name.
const network = new docker.Network(front.network, stackNetwork(front), {
    ...networkOptions(),
    ...onDockerHost,
});

const registries = caches.map((cache) => {
    // The cache's storage; kept on destroy when keepCache is set, so the next up starts warm.
    const volume = new docker.Volume(cache.name, cacheVolume(cache), {
        ...volumeOptions(settings),
        ...onDockerHost,
    });
    // The registry, run per `mode` (container/cache-supervisor.sh); `wait` holds `up` until healthy.
    const { args, secretUploads } = cacheContainer(cache, supervisor);
    const uploads = secretUploads.length > 0 ? pulumi.secret(secretUploads) : undefined;
    return new docker.Container(
        cache.name,
        { ...args, uploads },
        { ...containerOptions(), ...onDockerHost, dependsOn: [volume, network] },
    );
});

// The ledger of what was pulled (status's figures, prune's last pulls); kept like the caches.
const ledger = new docker.Volume(front.ledgerVolume, frontLedgerVolume(front), {
    ...volumeOptions(settings),
    ...onDockerHost,
});

// The coalescing front publishes every cache port, to allowed clients only: one upstream fetch per
// blob, however many ask.
const frontArgs = frontContainer(front, caches, readFrontScripts());
const coalescingFront = new docker.Container(front.name, frontArgs, {
    ...containerOptions(),
    ...onDockerHost,
    dependsOn: [...registries, ledger],
});

// Fills the caches from a bundle (`importFrom`), with no network needed, before anything pulls.
const imported = bundle
    ? [
          new command.local.Command("import-bundle", importCommand(bundle, toolInput, __dirname), {
              dependsOn: coalescingFront,
          }),
      ]
    : [];

// Warms the caches before any node pulls, so even a first boot pulls from warm caches.
const prewarm =
    prewarmImages.length > 0
        ? [
              new command.local.Command("prewarm-caches", prewarmCommand(toolInput, __dirname), {
                  dependsOn: [coalescingFront, ...imported],
              }),
          ]
        : [];

// Keeps the caches inside `maxSize` once warm: least recently pulled images go first.
const prune = settings.maxSize
    ? [
          new command.local.Command(
              "prune-caches",
              pruneCommand(settings.maxSize, toolInput, __dirname),
              { dependsOn: [coalescingFront, ...imported, ...prewarm] },
          ),
      ]
    : [];

if (settings.cluster.enabled) {
    // The Talos cluster boots only once every cache is healthy (and warm, with prewarm).
    new command.local.Command("talos-cluster", clusterCommand(clusterPlan), {
        ...clusterCommandOptions(),
        dependsOn: [coalescingFront, ...imported, ...prewarm, ...prune],
    });
}

export const mirrors = render.mirrorsByRegistry(caches);
export const registryMirrorFlags = render.registryMirrorFlags(caches);
export const talosConfigPatch = render.talosConfigPatch(caches);
export const talosMirrorDocuments = render.talosMirrorDocuments(caches);
export const containerdHosts = render.containerdHosts(caches);
export { prewarmImages };
export const talosctlCreate = clusterPlan.create;
// For the tools: the engine their `docker` commands must reach (null: this machine's).
export const dockerHost = settings.dockerHost ?? null;
// null, not undefined: an undefined export draws a warning on every `pulumi up`.
export const cluster = settings.cluster.enabled ? clusterPlan.output : null;

/** Validates config and plans everything; a bad setting stops the program before any resource. */
function loadPlan() {
    try {
        const settings = parseSettings(pulumi.runtime.allConfig());
        const identity = { project: pulumi.getProject(), stack: pulumi.getStack() };
        const caches = planCaches(settings, identity);
        const front = planFront(settings, identity);
        checkHost(settings, caches, front);
        const prewarmImages = planPrewarm(settings, caches, () => {
            const talosImages = readTalosImageSet(settings.cluster);
            if (talosImages.notice) pulumi.log.info(talosImages.notice);
            return talosImages;
        });
        const talosctlVersion = detectTalosctlVersion(settings.cluster);
        const host = { arch: hostPlatform().architecture, projectDir: __dirname };
        const clusterPlan = planCluster(settings, caches, host, talosctlVersion);
        if (settings.cluster.enabled) requireBootAssets(clusterPlan.bootAssets);
        const bundle = bundleToImport(settings.importFrom, __dirname);
        return { settings, caches, front, prewarmImages, clusterPlan, bundle };
    } catch (error) {
        // RunError prints the message alone, without a stack trace.
        throw new pulumi.RunError(error instanceof Error ? error.message : String(error));
    }
}
