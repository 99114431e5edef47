/**
 * Everything `up` decides before it declares a resource: the settings' plan (core/), checked
 * against this host (ports, the engine, talosctl, boot assets, the bundle). A bad setting stops
 * here, so nothing is created from it.
 */
import { hostPlatform } from "../core/images";
import { planCluster } from "../core/cluster";
import { planFront } from "../core/front";
import { StackIdentity, frontHosts, planAnyRegistry, planCaches } from "../core/plan";
import { htpasswdFile } from "../core/pull-auth";
import { serverNames } from "../core/tls";
import { planPrewarm } from "../core/prewarm";
import { Settings } from "../mirrors";
import { bundleToImport } from "./bundles";
import { checkHost } from "./preflight";
import {
    detectTalosctl,
    readTalosImageSet,
    requireBootAssets,
    talosImagesNotice,
    talosctlVersionFor,
} from "./talosctl";

/**
 * @param programDir the Pulumi program's folder, against which relative paths in the settings
 *   (`importFrom`, `cluster.bootAssets`) resolve
 * @param notice where to say what the plan chose on the user's behalf
 * @throws ConfigError naming each setting this host cannot satisfy
 */
export function planStack(
    settings: Settings,
    identity: StackIdentity,
    programDir: string,
    notice: (message: string) => void,
) {
    const caches = planCaches(settings, identity);
    const front = planFront(settings, identity);
    checkHost(settings, caches, front);
    const talosctl = detectTalosctl(settings.cluster);
    const prewarmImages = planPrewarm(settings, caches, () => {
        const talosImages = readTalosImageSet(settings.cluster, talosctl);
        notice(talosImagesNotice(talosImages));
        return talosImages;
    });
    const talosctlVersion = talosctlVersionFor(settings.cluster, talosctl);
    const host = { arch: hostPlatform().architecture, projectDir: programDir };
    const clusterPlan = planCluster(settings, caches, host, talosctlVersion);
    if (settings.cluster.enabled) requireBootAssets(clusterPlan.bootAssets);
    const bundle = bundleToImport(settings.importFrom, programDir);
    return {
        caches,
        front,
        anyRegistry: planAnyRegistry(settings),
        prewarmImages,
        clusterPlan,
        bundle,
        // What the stack's own server certificate must name, when it makes one.
        serverNames: serverNames(frontHosts(settings)),
        // The front's htpasswd, when there are pull credentials.
        htpasswd:
            settings.pullCredentials.length > 0
                ? htpasswdFile(settings.pullCredentials, identity)
                : undefined,
    };
}
