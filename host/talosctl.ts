/**
 * The talosctl binary on this host: its version, and the image set it says a cluster pulls.
 * Host I/O only; what to do with them is decided in core/cluster.ts and core/prewarm.ts.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readPackageFile } from "./assets";
import { ClusterSettings } from "../mirrors";
import { ConfigError } from "../core/config-error";
import {
    BootAsset,
    TalosctlVersion,
    formatVersion,
    parseTalosctlVersion,
    talosNodeImage,
} from "../core/cluster";
import { KeptImageSets, chooseKeptImageSet, pulledByDefault } from "../core/talos-images";
import { TalosImageSet, qemuInstallerImage, retagTalosImages } from "../core/prewarm";

/** Runs the binary for its client version; a missing binary is an error that says what to set. */
function readTalosctlVersion(talosctl: string): TalosctlVersion {
    let output: string;
    try {
        output = execFileSync(talosctl, ["version", "--client", "--short"], {
            encoding: "utf8",
            stdio: ["ignore", "pipe", "pipe"],
            timeout: 30_000,
        });
    } catch (error) {
        const reason =
            (error as NodeJS.ErrnoException).code === "ENOENT"
                ? "not found"
                : String((error as Error).message);
        throw new Error(
            `talosctl (${talosctl}) ${reason}: install talosctl or set pullthrough:cluster.talosctl to its path`,
            { cause: error },
        );
    }
    return parseTalosctlVersion(output);
}

/**
 * The talosctl version to build commands for: required when the stack creates the cluster, and
 * otherwise used when the binary happens to be there (for the `talosctlCreate` output).
 */
export function detectTalosctlVersion(
    cluster: Pick<ClusterSettings, "enabled" | "talosctl">,
): TalosctlVersion | undefined {
    try {
        return readTalosctlVersion(cluster.talosctl);
    } catch (error) {
        if (cluster.enabled) throw error;
        return undefined;
    }
}

/**
 * What a cluster of these settings pulls: `talosctl image default` when the binary is there (the
 * command on 1.11, an alias of `image k8s-bundle` from 1.12), else the set `talos-images.json`
 * keeps for that release; without the images a default cluster never pulls, retagged for a
 * configured Kubernetes or Talos version; plus what the nodes boot from outside that list: the
 * installer of a 1.12+ QEMU node, the node image of a docker one.
 *
 * @throws ConfigError when talosctl is absent and no release of `cluster.talosVersion`'s minor
 *   is kept
 */
export function readTalosImageSet(
    cluster: Pick<
        ClusterSettings,
        "talosctl" | "kubernetesVersion" | "talosVersion" | "provisioner"
    >,
): TalosImageSet {
    let listed: TalosImageSet;
    let talosctl: TalosctlVersion | undefined;
    let release: string;
    try {
        talosctl = readTalosctlVersion(cluster.talosctl);
        const output = execFileSync(cluster.talosctl, ["image", "default"], {
            encoding: "utf8",
            stdio: ["ignore", "pipe", "pipe"],
            timeout: 30_000,
        });
        listed = {
            images: output
                .split("\n")
                .map((line) => line.trim())
                .filter(Boolean),
            source: `talosctl ${formatVersion(talosctl)} image default`,
        };
        release = formatVersion(talosctl);
    } catch (error) {
        const why =
            (error as NodeJS.ErrnoException).code === "ENOENT" || /not found/.test(String(error))
                ? "talosctl not found"
                : "talosctl image default failed";
        const kept = JSON.parse(readPackageFile("data/talos-images.json")) as KeptImageSets;
        const chosen = chooseKeptImageSet(kept, cluster.talosVersion, why);
        listed = {
            images: chosen.images,
            source: `talos-images.json (Talos ${chosen.release}; ${why})`,
            ...(chosen.notice ? { notice: chosen.notice } : {}),
        };
        release = chosen.release;
    }
    const booted = [
        qemuInstallerImage(cluster, talosctl),
        cluster.provisioner === "docker"
            ? talosNodeImage(cluster.talosVersion ?? release)
            : undefined,
    ].filter((image) => image !== undefined);
    return {
        ...listed,
        images: [...retagTalosImages(pulledByDefault(listed.images), cluster), ...booted],
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
