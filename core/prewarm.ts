/**
 * The prewarm plan: which images `pulumi up` pulls through the caches before any node boots
 * (core/tool-commands.ts has the Command that pulls them). Pure; the Talos image set is read by
 * the caller (host/talosctl.ts).
 */
import { ClusterSettings, Settings, talosImageSet } from "../mirrors";
import { parseImageReference } from "./image-reference";
import { ConfigError, ConfigProblem } from "./config-error";
import { TalosctlVersion, hasProvisionerSubcommands } from "./cluster";
import { formatRelease } from "./release";
import { Cache } from "./plan";

/** The image set of a Talos cluster, where the list came from, and a line to print about it. */
export interface TalosImageSet {
    images: string[];
    source: string;
    /** Set when the list is not the release's own (see core/talos-images.ts). */
    notice?: string;
}

const kubernetesVersionedImages =
    /\/(?:kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|kubelet):/;
const talosVersionedImages = /\/installer:/;

/** Puts the configured Kubernetes version on the Kubernetes images and the Talos version on the installer. */
export function retagTalosImages(
    images: readonly string[],
    versions: Pick<ClusterSettings, "kubernetesVersion" | "talosVersion">,
): string[] {
    const withV = (version: string) => (version.startsWith("v") ? version : `v${version}`);
    return images.map((image) => {
        const retag = (version: string | undefined) =>
            version ? image.replace(/:[^:/@]+$/, `:${withV(version)}`) : image;
        if (kubernetesVersionedImages.test(image)) return retag(versions.kubernetesVersion);
        if (talosVersionedImages.test(image)) return retag(versions.talosVersion);
        return image;
    });
}

/**
 * The image-factory schematic talosctl 1.12+ uses when `--schematic-id` is empty: the ID of the
 * empty schematic, sha256 of its canonical YAML `customization: {}\n`.
 */
export const emptySchematicId = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

/**
 * The installer a QEMU node of talosctl 1.12+ installs itself from, which `image default` does not
 * list: `<factory>/metal-installer/<schematic>:<version>` (`clusterops/configmaker/preset`).
 * Undefined where there is none (docker, talosctl ≤1.11) or the version is not known.
 */
export function qemuInstallerImage(
    cluster: Pick<ClusterSettings, "provisioner" | "talosVersion">,
    talosctl: TalosctlVersion | undefined,
): string | undefined {
    if (cluster.provisioner !== "qemu") return undefined;
    if (talosctl !== undefined && !hasProvisionerSubcommands(talosctl)) return undefined;
    const version = cluster.talosVersion ?? (talosctl && formatRelease(talosctl));
    if (version === undefined) return undefined;
    const tag = version.startsWith("v") ? version : `v${version}`;
    return `factory.talos.dev/metal-installer/${emptySchematicId}:${tag}`;
}

/**
 * The images `pullthrough:prewarm` names, fully qualified, in config order and each once (the
 * `prewarmImages` output). `talos` expands to the cluster's image set, read only when listed.
 *
 * @throws ConfigError when an image of the `talos` set comes from a registry without a cache
 */
export function planPrewarm(
    settings: Settings,
    caches: readonly Cache[],
    readTalosImages: () => TalosImageSet,
): string[] {
    const registries = caches.map((cache) => cache.registry);
    const images = new Set<string>();
    const problems: ConfigProblem[] = [];
    settings.prewarm.forEach((entry, index) => {
        const talos = entry === talosImageSet ? readTalosImages() : undefined;
        for (const ref of talos?.images ?? [entry]) {
            const image = parseImageReference(ref);
            if (!image) {
                problems.push({
                    key: ["prewarm", index],
                    detail: `${talos!.source} lists ${JSON.stringify(ref)}, which is not an image reference`,
                });
            } else if (!registries.includes(image.registry)) {
                problems.push({
                    key: ["prewarm", index],
                    detail: `got "talos", whose ${image.canonical} needs a cache for ${image.registry}; add it to upstreams (caches: ${registries.join(", ")})`,
                });
            } else {
                images.add(image.canonical);
            }
        }
    });
    if (problems.length > 0) throw new ConfigError(problems);
    return [...images];
}
