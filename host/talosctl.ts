/**
 * The talosctl binary on this host: its version, and the image set it says a cluster pulls.
 * Host I/O only; what to do with them is decided in core/cluster.ts and core/prewarm.ts.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readPackageFile } from "./assets";
import { ClusterSettings } from "../mirrors";
import { ConfigError } from "../core/config-error";
import { BootAsset, TalosctlVersion, parseTalosctlVersion, talosNodeImage } from "../core/cluster";
import { KeptImageSets, chooseKeptImageSet, pulledByDefault } from "../core/talos-images";
import { formatRelease } from "../core/release";
import { oneLineCause } from "../core/format";
import { TalosImageSet, qemuInstallerImage, retagTalosImages } from "../core/prewarm";

/**
 * This host's talosctl, run once per `up` or tool: its version, or why there is none to use.
 * `missing` only when there is no such binary; one that is there and fails is `broken`.
 */
export type Talosctl = { version: TalosctlVersion } | { missing: string } | { broken: string };

export function detectTalosctl(cluster: Pick<ClusterSettings, "talosctl">): Talosctl {
    let output: string;
    try {
        output = execFileSync(cluster.talosctl, ["version", "--client", "--short"], {
            encoding: "utf8",
            stdio: ["ignore", "pipe", "pipe"],
            timeout: 30_000,
        });
    } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT")
            return { missing: `talosctl (${cluster.talosctl}) not found` };
        return { broken: `talosctl (${cluster.talosctl}) failed: ${oneLine(error)}` };
    }
    try {
        return { version: parseTalosctlVersion(output) };
    } catch (error) {
        return { broken: oneLine(error) };
    }
}

const oneLine = (error: unknown) =>
    oneLineCause(
        (error as { stderr?: string }).stderr ?? "",
        error instanceof Error ? error.message : String(error),
    );

/**
 * The talosctl version to build commands for: required when the stack creates the cluster, and
 * otherwise used when the binary happens to be there (for the `talosctlCreate` output).
 *
 * @throws ConfigError naming `cluster.talosctl` when the cluster needs one and there is none
 */
export function talosctlVersionFor(
    cluster: Pick<ClusterSettings, "enabled">,
    talosctl: Talosctl,
): TalosctlVersion | undefined {
    if ("version" in talosctl) return talosctl.version;
    if (!cluster.enabled) return undefined;
    const why = "missing" in talosctl ? talosctl.missing : talosctl.broken;
    throw new ConfigError([
        {
            key: ["cluster", "talosctl"],
            detail: `${why}: install talosctl, or set cluster.talosctl to its path`,
        },
    ]);
}

/**
 * What a cluster of these settings pulls: `talosctl image default` when the binary is there (the
 * command on 1.11, an alias of `image k8s-bundle` from 1.12), else the set `talos-images.json`
 * keeps for that release; without the images a default cluster never pulls, retagged for a
 * configured Kubernetes or Talos version; plus what the nodes boot from outside that list: the
 * installer of a 1.12+ QEMU node, the node image of a docker one. `source` always says where
 * the list came from.
 *
 * @throws ConfigError when talosctl is there and fails, or is absent and no release of
 *   `cluster.talosVersion`'s minor is kept
 */
export function readTalosImageSet(
    cluster: Pick<
        ClusterSettings,
        "talosctl" | "kubernetesVersion" | "talosVersion" | "provisioner"
    >,
    talosctl: Talosctl,
): TalosImageSet {
    if ("broken" in talosctl) throw talosImagesError(talosctl.broken);
    const listed =
        "version" in talosctl
            ? imageDefault(cluster, talosctl.version)
            : keptSet(cluster, talosctl.missing);
    const version = "version" in talosctl ? talosctl.version : undefined;
    const booted = [
        qemuInstallerImage(cluster, version),
        cluster.provisioner === "docker"
            ? talosNodeImage(cluster.talosVersion ?? listed.release)
            : undefined,
    ].filter((image) => image !== undefined);
    return {
        images: [...retagTalosImages(pulledByDefault(listed.images), cluster), ...booted],
        source: listed.source,
        ...(listed.notice ? { notice: listed.notice } : {}),
    };
}

/** Where the `talos` image set came from, and why, when it is not the release's own. */
export const talosImagesNotice = (set: TalosImageSet) =>
    set.notice ??
    `pullthrough: the "talos" image set: ${set.images.length} images from ${set.source}`;

const talosImagesError = (why: string) =>
    new ConfigError([
        { key: ["prewarm"], detail: `"talos" needs the cluster's image set, and ${why}` },
    ]);

/** `talosctl image default`, as this talosctl prints it. */
function imageDefault(
    cluster: Pick<ClusterSettings, "talosctl">,
    version: TalosctlVersion,
): { images: string[]; release: string; source: string; notice?: string } {
    let output: string;
    try {
        output = execFileSync(cluster.talosctl, ["image", "default"], {
            encoding: "utf8",
            stdio: ["ignore", "pipe", "pipe"],
            timeout: 30_000,
        });
    } catch (error) {
        throw talosImagesError(
            `talosctl ${formatRelease(version)} image default failed: ${oneLine(error)}`,
        );
    }
    return {
        images: output
            .split("\n")
            .map((line) => line.trim())
            .filter(Boolean),
        release: formatRelease(version),
        source: `talosctl ${formatRelease(version)} image default`,
    };
}

/** The set data/talos-images.json keeps for the cluster's release, when there is no talosctl. */
function keptSet(cluster: Pick<ClusterSettings, "talosVersion">, why: string) {
    const kept = JSON.parse(readPackageFile("data/talos-images.json")) as KeptImageSets;
    const chosen = chooseKeptImageSet(kept, cluster.talosVersion, why);
    return {
        images: chosen.images,
        release: chosen.release,
        source: `data/talos-images.json (Talos ${chosen.release}; ${why})`,
        ...(chosen.notice ? { notice: chosen.notice } : {}),
    };
}

/** Stops before anything is created when a boot asset the cluster needs is not on this host. */
export function requireBootAssets(assets: readonly BootAsset[]): void {
    const missing = assets.filter((asset) => !existsSync(asset.path));
    if (missing.length === 0) return;
    throw new ConfigError(
        missing.map((asset) => ({
            key: ["cluster", "bootAssets"],
            detail: `${asset.path} does not exist; talosctl 1.7–1.11 boots QEMU nodes from it (${asset.flag}). Download ${asset.url} into that folder, or set cluster.bootAssets to the folder that holds it`,
        })),
    );
}
