/**
 * The talosctl binary on this host: its version, and the image set it says a cluster pulls.
 * Host I/O only; what to do with them is decided in core/cluster.ts and core/prewarm.ts.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { ClusterSettings, ConfigError, formatKey } from "../mirrors";
import { BootAsset, TalosctlVersion, formatVersion, parseTalosctlVersion } from "../core/cluster";
import { TalosImageSet, qemuInstallerImage, retagTalosImages } from "../core/prewarm";

/** Runs the binary for its client version; a missing binary is an error that says what to set. */
export function readTalosctlVersion(talosctl: string): TalosctlVersion {
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

/** The set kept in data/talos-images.json for when talosctl cannot be run. */
interface KeptImageSet {
    talosVersion: string;
    images: string[];
}

const minorOf = (version: string) => /^v?(\d+\.\d+)/.exec(version)?.[1];

/**
 * What a cluster of these settings pulls: `talosctl image default` when the binary is there,
 * else the list kept in `talos-images.json`, which only holds for its own minor release; then
 * retagged for a configured Kubernetes or Talos version, plus the installer a 1.12+ QEMU node
 * pulls from the image factory.
 *
 * @throws ConfigError when talosctl is absent and `cluster.talosVersion` is of another minor
 *   release than the kept list
 */
export function readTalosImageSet(
    cluster: Pick<
        ClusterSettings,
        "talosctl" | "kubernetesVersion" | "talosVersion" | "provisioner"
    >,
): TalosImageSet {
    let listed: TalosImageSet;
    let talosctl: TalosctlVersion | undefined;
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
    } catch (error) {
        const why =
            (error as NodeJS.ErrnoException).code === "ENOENT" || /not found/.test(String(error))
                ? "talosctl not found"
                : "talosctl image default failed";
        const kept = JSON.parse(
            readFileSync(path.join(__dirname, "../data/talos-images.json"), "utf8"),
        ) as KeptImageSet;
        const wanted = cluster.talosVersion;
        if (wanted !== undefined && minorOf(wanted) !== minorOf(kept.talosVersion)) {
            throw new ConfigError([
                `${formatKey(["prewarm"])}: "talos" for Talos ${wanted} needs talosctl (${why}); the list kept for when it is absent is Talos ${kept.talosVersion}'s, and image sets differ between minor releases. Install talosctl ${wanted}, or list the images in pullthrough:prewarm`,
            ]);
        }
        listed = {
            images: kept.images,
            source: `talos-images.json (Talos ${kept.talosVersion}; ${why})`,
        };
    }
    const installer = qemuInstallerImage(cluster, talosctl);
    const images = retagTalosImages(listed.images, cluster);
    return { ...listed, images: installer ? [...images, installer] : images };
}

/** Stops before anything is created when a boot asset the cluster needs is not on this host. */
export function requireBootAssets(assets: readonly BootAsset[]): void {
    const missing = assets.filter((asset) => !existsSync(asset.path));
    if (missing.length === 0) return;
    throw new ConfigError(
        missing.map(
            (asset) =>
                `${formatKey(["cluster", "bootAssets"])}: ${asset.path} does not exist; talosctl 1.7–1.11 boots QEMU nodes from it (${asset.flag}). Download ${asset.url} into that folder, or set cluster.bootAssets to the folder that holds it`,
        ),
    );
}
