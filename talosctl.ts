/**
 * `talosctl cluster create` and `destroy` command lines for the detected talosctl version.
 * The command changed shape in v1.12 (subcommands per provisioner, `--subnet` for docker, no
 * control-plane count for docker), so every argv is built for one version family.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";

export interface TalosctlVersion {
    major: number;
    minor: number;
    patch: number;
}

/** Cluster settings as validated by `parseSettings` (`pullthrough:cluster`). */
export interface ClusterSettings {
    enabled: boolean;
    provisioner: "docker" | "qemu";
    name: string;
    cidr: string;
    controlplanes: number;
    workers: number;
    talosVersion?: string;
    kubernetesVersion?: string;
    state?: string;
    talosctl: string;
    extraArgs: string[];
}

/** The oldest talosctl whose `cluster create` flags this program knows. */
export const oldestSupported: TalosctlVersion = { major: 1, minor: 7, patch: 0 };

export const formatVersion = (version: TalosctlVersion) => `v${version.major}.${version.minor}.${version.patch}`;

/** Reads `Talos v1.12.1` (with or without a `Client:` line) from `talosctl version --client --short`. */
export function parseTalosctlVersion(output: string): TalosctlVersion {
    const match = /\bv(\d+)\.(\d+)\.(\d+)/.exec(output);
    if (!match) throw new Error(`cannot read a version from talosctl's output: ${JSON.stringify(output.trim())}`);
    return { major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3]) };
}

/** Runs the binary for its client version; a missing binary is an error that says what to set. */
export function readTalosctlVersion(talosctl: string): TalosctlVersion {
    let output: string;
    try {
        output = execFileSync(talosctl, ["version", "--client", "--short"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 });
    } catch (error) {
        const reason = (error as NodeJS.ErrnoException).code === "ENOENT" ? "not found" : String((error as Error).message);
        throw new Error(`talosctl (${talosctl}) ${reason}: install talosctl or set pullthrough:cluster.talosctl to its path`);
    }
    return parseTalosctlVersion(output);
}

/** v1.12 split `cluster create` into `create docker` / `create qemu`. */
export const hasProvisionerSubcommands = (version: TalosctlVersion) => version.major > 1 || version.minor >= 12;

const atLeast = (version: TalosctlVersion, floor: TalosctlVersion) =>
    version.major !== floor.major ? version.major > floor.major : version.minor !== floor.minor ? version.minor > floor.minor : version.patch >= floor.patch;

/**
 * Settings this talosctl cannot express, as `[key, value, reason]`: the caller turns them into
 * config errors before anything is created.
 */
export function unsupportedSettings(cluster: ClusterSettings, version: TalosctlVersion): [string, unknown, string][] {
    const problems: [string, unknown, string][] = [];
    const shown = formatVersion(version);
    if (!atLeast(version, oldestSupported)) {
        problems.push(["cluster.talosctl", cluster.talosctl, `talosctl ${formatVersion(oldestSupported)} or newer (found ${shown})`]);
    } else if (hasProvisionerSubcommands(version) && cluster.provisioner === "docker") {
        if (cluster.controlplanes !== 1) {
            problems.push(["cluster.controlplanes", cluster.controlplanes, `1: talosctl ${shown} "cluster create docker" always makes one control plane`]);
        }
        if (cluster.talosVersion !== undefined) {
            problems.push(["cluster.talosVersion", cluster.talosVersion, `no value: talosctl ${shown} "cluster create docker" takes the Talos version from its --image (use extraArgs)`]);
        }
    }
    return problems;
}

/** The full `talosctl cluster create …` argv, mirrors included (one `--registry-mirror` item each). */
export function clusterCreateArgv(cluster: ClusterSettings, version: TalosctlVersion, registryMirrorFlags: readonly string[]): string[] {
    const modern = hasProvisionerSubcommands(version);
    const argv = [cluster.talosctl, "cluster", "create"];
    argv.push(...(modern ? [cluster.provisioner] : ["--provisioner", cluster.provisioner]));
    argv.push("--name", cluster.name);
    if (cluster.state !== undefined) argv.push("--state", cluster.state);
    argv.push(modern && cluster.provisioner === "docker" ? "--subnet" : "--cidr", cluster.cidr);
    if (!(modern && cluster.provisioner === "docker")) argv.push("--controlplanes", String(cluster.controlplanes));
    argv.push("--workers", String(cluster.workers));
    if (cluster.talosVersion !== undefined) argv.push("--talos-version", cluster.talosVersion);
    if (cluster.kubernetesVersion !== undefined) argv.push("--kubernetes-version", cluster.kubernetesVersion);
    argv.push(...registryMirrorFlags, ...cluster.extraArgs);
    return argv;
}

/** `talosctl cluster destroy` for the same cluster; before v1.12 it must be told the provisioner. */
export function clusterDestroyArgv(cluster: ClusterSettings, version: TalosctlVersion): string[] {
    const argv = [cluster.talosctl, "cluster", "destroy"];
    if (!hasProvisionerSubcommands(version)) argv.push("--provisioner", cluster.provisioner);
    argv.push("--name", cluster.name);
    if (cluster.state !== undefined) argv.push("--state", cluster.state);
    return argv;
}

/** POSIX shell quoting: the result runs `argv` exactly under `/bin/sh -c`. */
export function shellQuote(argv: readonly string[]): string {
    return argv.map((arg) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`)).join(" ");
}

/**
 * The talosctl version to build commands for: required when the stack creates the cluster, and
 * otherwise used when the binary happens to be there (for the `talosctlCreate` output).
 */
export function detectTalosctlVersion(cluster: Pick<ClusterSettings, "enabled" | "talosctl">): TalosctlVersion | undefined {
    try {
        return readTalosctlVersion(cluster.talosctl);
    } catch (error) {
        if (cluster.enabled) throw error;
        return undefined;
    }
}

/** The image set of a Talos cluster, and where the list came from. */
export interface TalosImageSet {
    images: string[];
    source: string;
}

/**
 * What a cluster of these settings pulls: `talosctl image default` when the binary is there,
 * else the list kept in `talos-images.json`; then retagged for a configured Kubernetes or
 * Talos version.
 */
export function readTalosImageSet(cluster: Pick<ClusterSettings, "talosctl" | "kubernetesVersion" | "talosVersion">): TalosImageSet {
    let listed: TalosImageSet;
    try {
        const version = formatVersion(readTalosctlVersion(cluster.talosctl));
        const output = execFileSync(cluster.talosctl, ["image", "default"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 });
        listed = { images: output.split("\n").map((line) => line.trim()).filter(Boolean), source: `talosctl ${version} image default` };
    } catch (error) {
        const why = (error as NodeJS.ErrnoException).code === "ENOENT" || /not found/.test(String(error)) ? "talosctl not found" : "talosctl image default failed";
        const kept = JSON.parse(readFileSync(path.join(__dirname, "talos-images.json"), "utf8")) as { talosVersion: string; images: string[] };
        listed = { images: kept.images, source: `talos-images.json (Talos ${kept.talosVersion}; ${why})` };
    }
    return { ...listed, images: retagTalosImages(listed.images, cluster) };
}

const kubernetesVersionedImages = /\/(?:kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|kubelet):/;
const talosVersionedImages = /\/installer:/;

/** Puts the configured Kubernetes version on the Kubernetes images and the Talos version on the installer. */
export function retagTalosImages(images: readonly string[], versions: Pick<ClusterSettings, "kubernetesVersion" | "talosVersion">): string[] {
    const withV = (version: string) => (version.startsWith("v") ? version : `v${version}`);
    return images.map((image) => {
        const retag = (version: string | undefined) => (version ? image.replace(/:[^:/@]+$/, `:${withV(version)}`) : image);
        if (kubernetesVersionedImages.test(image)) return retag(versions.kubernetesVersion);
        if (talosVersionedImages.test(image)) return retag(versions.talosVersion);
        return image;
    });
}
