/**
 * `talosctl cluster create` and `destroy` command lines for the detected talosctl version.
 * The command changed shape in v1.12 (subcommands per provisioner, `--subnet` for docker, no
 * control-plane count for docker), so every argv is built for one version family.
 */
import type * as command from "@pulumi/command";
import type * as pulumi from "@pulumi/pulumi";
import {
    ClusterSettings,
    ConfigError,
    Settings,
    cidrAddress,
    formatKey,
    formatValue,
} from "../mirrors";
import { Cache } from "./plan";
import { registryMirrorFlags } from "./render";

export interface TalosctlVersion {
    major: number;
    minor: number;
    patch: number;
}

/** The oldest talosctl whose `cluster create` flags this program knows. */
export const oldestSupported: TalosctlVersion = { major: 1, minor: 7, patch: 0 };

export const formatVersion = (version: TalosctlVersion) =>
    `v${version.major}.${version.minor}.${version.patch}`;

/** Reads `Talos v1.12.1` (with or without a `Client:` line) from `talosctl version --client --short`. */
export function parseTalosctlVersion(output: string): TalosctlVersion {
    const match = /\bv(\d+)\.(\d+)\.(\d+)/.exec(output);
    if (!match)
        throw new Error(
            `cannot read a version from talosctl's output: ${JSON.stringify(output.trim())}`,
        );
    return { major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3]) };
}

/** v1.12 split `cluster create` into `create docker` / `create qemu`. */
export const hasProvisionerSubcommands = (version: TalosctlVersion) =>
    version.major > 1 || version.minor >= 12;

const atLeast = (version: TalosctlVersion, floor: TalosctlVersion) =>
    version.major !== floor.major
        ? version.major > floor.major
        : version.minor !== floor.minor
          ? version.minor > floor.minor
          : version.patch >= floor.patch;

/**
 * Settings this talosctl cannot express, as `[key, value, reason]`: the caller turns them into
 * config errors before anything is created.
 */
export function unsupportedSettings(
    cluster: ClusterSettings,
    version: TalosctlVersion,
): [string, unknown, string][] {
    const problems: [string, unknown, string][] = [];
    const shown = formatVersion(version);
    if (!atLeast(version, oldestSupported)) {
        problems.push([
            "cluster.talosctl",
            cluster.talosctl,
            `talosctl ${formatVersion(oldestSupported)} or newer (found ${shown})`,
        ]);
    } else if (hasProvisionerSubcommands(version) && cluster.provisioner === "docker") {
        if (cluster.controlplanes !== 1) {
            problems.push([
                "cluster.controlplanes",
                cluster.controlplanes,
                `1: talosctl ${shown} "cluster create docker" always makes one control plane`,
            ]);
        }
    }
    if (
        cluster.provisioner === "docker" &&
        cluster.talosVersion !== undefined &&
        talosImageTag(cluster.talosVersion) === undefined
    ) {
        problems.push([
            "cluster.talosVersion",
            cluster.talosVersion,
            'a full Talos release such as "v1.11.0": docker nodes run the image of that tag',
        ]);
    }
    return problems;
}

/** The Talos node image: talosctl's own default repository (`pkg/images`), at another tag. */
export const talosImageRepository = "ghcr.io/siderolabs/talos";

/** `v1.11.0` for `1.11.0` or `v1.11.0`; undefined for what is not a release (`v1.11`). */
function talosImageTag(talosVersion: string): string | undefined {
    const match = /^v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)$/.exec(talosVersion);
    return match ? `v${match[1]}` : undefined;
}

/**
 * How `talosVersion` reaches the nodes. Docker nodes run talosctl's own tag unless `--image`
 * says otherwise, whatever `--talos-version` says (that only versions the generated config), so
 * docker gets the image of that release, and on 1.7–1.11 the config version too. QEMU nodes
 * take `--talos-version`.
 */
function talosVersionArgs(cluster: ClusterSettings, modern: boolean): string[] {
    if (cluster.talosVersion === undefined) return [];
    if (cluster.provisioner === "qemu") return ["--talos-version", cluster.talosVersion];
    const image = ["--image", `${talosImageRepository}:${talosImageTag(cluster.talosVersion)}`];
    return modern ? image : ["--talos-version", cluster.talosVersion, ...image];
}

/** The full `talosctl cluster create …` argv, mirrors included (one `--registry-mirror` item each). */
export function clusterCreateArgv(
    cluster: ClusterSettings,
    version: TalosctlVersion,
    registryMirrorFlags: readonly string[],
): string[] {
    const modern = hasProvisionerSubcommands(version);
    const argv = [cluster.talosctl, "cluster", "create"];
    argv.push(...(modern ? [cluster.provisioner] : ["--provisioner", cluster.provisioner]));
    argv.push("--name", cluster.name);
    if (cluster.state !== undefined) argv.push("--state", cluster.state);
    argv.push(modern && cluster.provisioner === "docker" ? "--subnet" : "--cidr", cluster.cidr);
    if (!(modern && cluster.provisioner === "docker"))
        argv.push("--controlplanes", String(cluster.controlplanes));
    argv.push("--workers", String(cluster.workers));
    argv.push(...talosVersionArgs(cluster, modern));
    if (cluster.kubernetesVersion !== undefined)
        argv.push("--kubernetes-version", cluster.kubernetesVersion);
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
    return argv
        .map((arg) =>
            /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`,
        )
        .join(" ");
}

export interface ClusterPlan {
    /** Shell command that creates the cluster with these mirrors (`talosctlCreate` output). */
    create: string;
    /** Shell command that destroys it; complete in itself, since delete runs the stored copy. */
    delete: string;
    createArgv: string[];
    /** Stack output `cluster`. */
    output: {
        name: string;
        provisioner: string;
        talosctlVersion: string;
        endpointHost: string;
        /** The output whose mirror settings this Talos version's machine config takes. */
        mirrorConfig: "talosConfigPatch" | "talosMirrorDocuments";
    };
}

/**
 * The talosctl commands for this cluster and these caches. Without a detected talosctl the
 * commands take the v1.12+ form.
 *
 * @throws ConfigError for settings the detected talosctl cannot express
 */
export function planCluster(
    settings: Settings,
    caches: readonly Cache[],
    version: TalosctlVersion = { major: 1, minor: 12, patch: 0 },
): ClusterPlan {
    const { cluster } = settings;
    const problems = unsupportedSettings(cluster, version).map(
        ([key, value, what]) =>
            `${formatKey(key.split("."))}: got ${formatValue([], value)}; expected ${what}`,
    );
    if (problems.length > 0) throw new ConfigError(problems);
    const createArgv = clusterCreateArgv(cluster, version, registryMirrorFlags(caches));
    return {
        create: shellQuote(createArgv),
        delete: shellQuote(clusterDestroyArgv(cluster, version)),
        createArgv,
        output: {
            name: cluster.name,
            provisioner: cluster.provisioner,
            talosctlVersion: formatVersion(version),
            // Docker nodes publish their APIs on the host; QEMU nodes answer on the bridge.
            endpointHost:
                cluster.provisioner === "docker" ? "127.0.0.1" : cidrAddress(cluster.cidr, 2),
            // `machine.registries` left the config schema in 1.12, for RegistryMirrorConfig.
            mirrorConfig: atLeast(version, { major: 1, minor: 12, patch: 0 })
                ? "talosMirrorDocuments"
                : "talosConfigPatch",
        },
    };
}

/**
 * The `command.local.Command` inputs: any change to the command (mirrors, settings, version
 * family) replaces the cluster, and the output streams to the user.
 */
export function clusterCommand(plan: ClusterPlan) {
    return {
        create: plan.create,
        delete: plan.delete,
        triggers: [plan.create],
        logging: "stdoutAndStderr",
    } satisfies command.local.CommandArgs;
}

/** The old cluster goes before the new one: both would have the same name. */
export function clusterCommandOptions() {
    return {
        deleteBeforeReplace: true,
        customTimeouts: { create: "30m", delete: "10m" },
    } satisfies pulumi.CustomResourceOptions;
}
