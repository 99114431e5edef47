/**
 * Talos's default image sets by release, kept in data/talos-images.json for when talosctl cannot
 * be run, and the choice among them. Pure: the caller reads the file (host/talosctl.ts).
 */
import { ConfigError } from "./config-error";
import { compareReleases, parseRelease, parseReleaseOrMinor } from "./release";

/** data/talos-images.json: what `talosctl image default` prints at each listed release. */
export interface KeptImageSets {
    source: string;
    releases: Record<
        string,
        { commit: string; command: string; kubernetesVersion: string; images: string[] }
    >;
}

/** The set chosen for a cluster, and the line to print when it is not that release's own. */
export interface ChosenImageSet {
    release: string;
    images: string[];
    notice?: string;
}

/**
 * The kept set for `talosVersion`: that release's own when listed; for an unlisted patch of a
 * listed minor, the newest listed release of that minor; with no version, the newest listed
 * final release. `why` says why talosctl's own list is not used.
 *
 * @throws ConfigError when no release of that minor is listed
 */
export function chooseKeptImageSet(
    kept: KeptImageSets,
    talosVersion: string | undefined,
    why: string,
): ChosenImageSet {
    const listed = Object.keys(kept.releases)
        .map((tag) => ({ tag, release: parseRelease(tag)! }))
        .sort((a, b) => compareReleases(a.release, b.release));
    const chosen = (tag: string, notice?: string): ChosenImageSet => ({
        release: tag,
        images: kept.releases[tag].images,
        ...(notice ? { notice } : {}),
    });
    if (talosVersion === undefined) {
        const newest = listed.filter(({ release }) => release.pre === undefined).at(-1)!.tag;
        return chosen(
            newest,
            `pullthrough: no cluster.talosVersion and ${why}: warming Talos ${newest}'s image set, the newest release listed in data/talos-images.json`,
        );
    }
    // A minor (`v1.11`) asks for that minor's newest listed release.
    const wanted = parseReleaseOrMinor(talosVersion);
    const exact = listed.find(
        ({ release }) =>
            parseRelease(talosVersion) !== undefined && compareReleases(release, wanted!) === 0,
    );
    if (exact) return chosen(exact.tag);
    const sameMinor = listed.filter(
        ({ release }) => release.major === wanted?.major && release.minor === wanted?.minor,
    );
    if (sameMinor.length > 0) {
        const newest = sameMinor.at(-1)!.tag;
        return chosen(
            newest,
            `pullthrough: Talos ${talosVersion} has no image set in data/talos-images.json and ${why}: warming ${newest}'s, the newest ${wanted!.major}.${wanted!.minor} release listed`,
        );
    }
    throw new ConfigError([
        {
            key: ["prewarm"],
            detail: `"talos" for Talos ${talosVersion} needs talosctl (${why}): data/talos-images.json lists ${listed.map(({ tag }) => tag).join(", ")}, and image sets differ between minor releases. Install talosctl ${talosVersion}, or list the images in prewarm`,
        },
    ]);
}

/**
 * Images a default cluster never pulls, though `image default` lists them: kube-network-policies
 * (1.13+) runs only with `cluster.network.cni.flannel.kubeNetworkPoliciesEnabled`, false by
 * default (`pkg/machinery/config/types/v1alpha1/v1alpha1_cniconfig.go`).
 */
const notPulledByDefault = /^registry\.k8s\.io\/networking\/kube-network-policies:/;

export const pulledByDefault = (images: readonly string[]) =>
    images.filter((image) => !notPulledByDefault.test(image));
