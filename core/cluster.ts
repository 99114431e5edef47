/**
 * `talosctl cluster create` and `destroy` command lines for the detected talosctl version.
 * The command changed shape in v1.12 (subcommands per provisioner, `--subnet` for docker, no
 * control-plane count for docker), so every argv is built for one version family.
 */
import type { ClusterOutput } from "./caches-types";
import * as path from "node:path";
import type * as command from "@pulumi/command";
import type * as pulumi from "@pulumi/pulumi";
import { ClusterSettings, Settings, formatValue } from "../mirrors";
import { cidrAddress } from "./network";
import { ConfigError } from "./config-error";
import { Cache } from "./plan";
import { ClientAccess, registryMirrorFlags, talosAccessPatch } from "./render";
import { Release, atLeast, formatRelease, parseRelease, talos1_12 } from "./release";

/** The version of the talosctl that builds the cluster. */
export type TalosctlVersion = Release;

/** The oldest talosctl whose `cluster create` flags this program knows. */
const oldestSupported: Release = { major: 1, minor: 7, patch: 0 };

/**
 * Reads `Talos v1.12.1` (with or without a `Client:` line) from `talosctl version --client
 * --short`. A development build (`v1.11.0-alpha.1-12-gabcdef`) counts as its release: it has
 * that release's flags.
 */
export function parseTalosctlVersion(output: string): TalosctlVersion {
    const version = /\bv\d+\.\d+\.\d+/.exec(output);
    const release = version && parseRelease(version[0]);
    if (!release)
        throw new Error(
            `cannot read a version from talosctl's output: ${JSON.stringify(output.trim())}`,
        );
    return release;
}

/** v1.12 split `cluster create` into `create docker` / `create qemu`. */
export const hasProvisionerSubcommands = (version: TalosctlVersion) => atLeast(version, talos1_12);

/**
 * Settings this talosctl cannot express, as `[key, value, reason]`: the caller turns them into
 * config errors before anything is created.
 */
export function unsupportedSettings(
    cluster: ClusterSettings,
    version: TalosctlVersion,
): [string, unknown, string][] {
    const problems: [string, unknown, string][] = [];
    const shown = formatRelease(version);
    if (!atLeast(version, oldestSupported)) {
        problems.push([
            "cluster.talosctl",
            cluster.talosctl,
            `talosctl ${formatRelease(oldestSupported)} or newer (found ${shown})`,
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
const talosImageRepository = "ghcr.io/siderolabs/talos";

/** `v1.11.0` for `1.11.0` or `v1.11.0`; undefined for what is not a release (`v1.11`). */
function talosImageTag(talosVersion: string): string | undefined {
    const match = /^v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)$/.exec(talosVersion);
    return match ? `v${match[1]}` : undefined;
}

/** The image docker nodes of `release` run: talosctl's own default at another tag (clusterops/options.go). */
export const talosNodeImage = (release: string) =>
    `${talosImageRepository}:${talosImageTag(release) ?? release}`;

/**
 * Where a docker cluster's node image is pulled from. The host's Docker daemon pulls it, not the
 * nodes' containerd, so the mirrors never apply to it (pkg/provision/providers/docker); it goes
 * through the ghcr.io cache when this host reaches that on loopback, which Docker trusts over
 * plain HTTP by default (moby registry/config.go, loadInsecureRegistries adds 127.0.0.0/8).
 * Undefined when there is no such cache.
 */
function nodeImageThroughCache(release: string, caches: readonly Cache[]): string | undefined {
    const ghcr = caches.find((cache) => cache.registry === "ghcr.io");
    if (!ghcr) return undefined;
    const endpoint = new URL(ghcr.hostEndpoint);
    if (!endpoint.hostname.startsWith("127.")) return undefined;
    return talosNodeImage(release).replace(/^ghcr\.io\//, `${endpoint.host}/`);
}

/**
 * How `talosVersion` reaches the nodes. Docker nodes run talosctl's own tag unless `--image`
 * says otherwise, whatever `--talos-version` says (that only versions the generated config), so
 * docker gets the image of that release, through the ghcr.io cache where it can, and on 1.7–1.11
 * the config version too. QEMU nodes take `--talos-version`.
 */
function talosVersionArgs(
    cluster: ClusterSettings,
    version: TalosctlVersion,
    caches: readonly Cache[],
): string[] {
    const withSubcommands = hasProvisionerSubcommands(version);
    if (cluster.provisioner === "qemu")
        return cluster.talosVersion === undefined ? [] : ["--talos-version", cluster.talosVersion];
    const release = cluster.talosVersion ?? formatRelease(version);
    const image = nodeImageThroughCache(release, caches) ?? talosNodeImage(release);
    const configVersion =
        !withSubcommands && cluster.talosVersion !== undefined
            ? ["--talos-version", cluster.talosVersion]
            : [];
    // talosctl's own default needs no flag.
    return image === talosNodeImage(formatRelease(version)) && configVersion.length === 0
        ? []
        : [...configVersion, "--image", image];
}

/** A file talosctl 1.7–1.11 boots QEMU nodes from, and where Talos publishes it. */
export interface BootAsset {
    flag: "--vmlinuz-path" | "--initrd-path";
    path: string;
    url: string;
}

/** Where the plan runs: the host's architecture (GOARCH names) and the project folder. */
export interface ClusterHost {
    arch: string;
    projectDir: string;
}

/**
 * The kernel and initramfs a QEMU cluster boots on talosctl 1.7–1.11, as release assets name
 * them. talosctl looks for them in `_out/` of its working folder; 1.12+ boots an image-factory
 * ISO instead, so there are none.
 */
export function qemuBootAssets(
    cluster: ClusterSettings,
    version: TalosctlVersion,
    host: ClusterHost,
): BootAsset[] {
    if (cluster.provisioner !== "qemu" || hasProvisionerSubcommands(version)) return [];
    const release =
        (cluster.talosVersion && talosImageTag(cluster.talosVersion)) ?? formatRelease(version);
    const folder = path.resolve(host.projectDir, cluster.bootAssets);
    return (
        [
            ["--vmlinuz-path", `vmlinuz-${host.arch}`],
            ["--initrd-path", `initramfs-${host.arch}.xz`],
        ] as const
    ).map(([flag, file]) => ({
        flag,
        path: path.join(folder, file),
        url: `https://github.com/siderolabs/talos/releases/download/${release}/${file}`,
    }));
}

/** The full `talosctl cluster create …` argv, mirrors included (one `--registry-mirror` item each). */
export function clusterCreateArgv(
    cluster: ClusterSettings,
    version: TalosctlVersion,
    caches: readonly Cache[],
    bootAssets: readonly BootAsset[] = [],
): string[] {
    const withSubcommands = hasProvisionerSubcommands(version);
    const argv = [cluster.talosctl, "cluster", "create"];
    argv.push(
        ...(withSubcommands ? [cluster.provisioner] : ["--provisioner", cluster.provisioner]),
    );
    argv.push("--name", cluster.name);
    if (cluster.state !== undefined) argv.push("--state", cluster.state);
    argv.push(
        withSubcommands && cluster.provisioner === "docker" ? "--subnet" : "--cidr",
        cluster.cidr,
    );
    if (!(withSubcommands && cluster.provisioner === "docker"))
        argv.push("--controlplanes", String(cluster.controlplanes));
    argv.push("--workers", String(cluster.workers));
    argv.push(...talosVersionArgs(cluster, version, caches));
    argv.push(...bootAssets.flatMap((asset) => [asset.flag, asset.path]));
    if (cluster.kubernetesVersion !== undefined)
        argv.push("--kubernetes-version", cluster.kubernetesVersion);
    argv.push(...registryMirrorFlags(caches), ...cluster.extraArgs);
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

/** Labels the docker provisioner puts on a cluster's nodes and network (`pkg/provision/providers/docker`). */
const dockerClusterFilters = (name: string) =>
    ["talos.owned=true", `talos.cluster.name=${name}`].flatMap((label) => [
        "--filter",
        `label=${label}`,
    ]);

/**
 * The delete command. talosctl 1.12+ destroys by `<state>/<name>/state.yaml`, which talosctl
 * 1.7–1.11 never wrote for a docker cluster, so for docker a failed destroy of a cluster without
 * one falls back to what talosctl ≤1.11 itself did: remove the provisioner's labelled containers
 * (with their volumes) and network, then the state folder, saying so line by line.
 */
function clusterDeleteScript(cluster: ClusterSettings, version: TalosctlVersion): string {
    const destroy = shellQuote(clusterDestroyArgv(cluster, version));
    if (cluster.provisioner !== "docker") return destroy;
    const name = shellQuote([cluster.name]);
    const filters = shellQuote(dockerClusterFilters(cluster.name));
    // ≤1.11 is the family that makes these clusters, and it keeps state in ~/.talos/clusters.
    const stateDir =
        cluster.state !== undefined ? shellQuote([cluster.state]) : '"$HOME/.talos/clusters"';
    const say = (what: string) => `echo "pullthrough: ${what}" >&2`;
    return [
        `${destroy} || {`,
        `  state=${stateDir}/${name}`,
        `  [ ! -e "$state/state.yaml" ] || exit 1`,
        `  ${say(`talosctl could not destroy ${cluster.name}, and $state has no state.yaml (a docker cluster made by talosctl 1.11 or older): removing what the docker provisioner labelled talos.cluster.name=${cluster.name}`)}`,
        `  for node in $(docker ps --all --format '{{.Names}}' ${filters}); do`,
        `    docker rm --force --volumes "$node" >/dev/null && ${say("removed node $node")} || exit 1`,
        `  done`,
        `  for network in $(docker network ls --format '{{.Name}}' ${filters}); do`,
        `    docker network rm "$network" >/dev/null && ${say("removed network $network")} || exit 1`,
        `  done`,
        `  if [ -d "$state" ]; then rm -rf "$state" && ${say("removed $state")}; fi`,
        `}`,
    ].join("\n");
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
    /** Shell script that destroys it; complete in itself, since delete runs the stored copy. */
    delete: string;
    createArgv: string[];
    /** Files the create needs on this host, checked before anything is created. */
    bootAssets: BootAsset[];
    /** Stack output `cluster`. */
    output: ClusterOutput;
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
    host: ClusterHost,
    version: TalosctlVersion = talos1_12,
): ClusterPlan {
    const { cluster } = settings;
    const problems = unsupportedSettings(cluster, version).map(([key, value, what]) => ({
        key: key.split("."),
        detail: `got ${formatValue([], value)}; expected ${what}`,
    }));
    if (problems.length > 0) throw new ConfigError(problems);
    const bootAssets = qemuBootAssets(cluster, version, host);
    const createArgv = clusterCreateArgv(cluster, version, caches, bootAssets);
    return {
        create: shellQuote(createArgv),
        delete: clusterDeleteScript(cluster, version),
        createArgv,
        bootAssets,
        output: {
            name: cluster.name,
            provisioner: cluster.provisioner,
            talosctlVersion: formatRelease(version),
            // Docker nodes publish their APIs on the host; QEMU nodes answer on the bridge.
            endpointHost:
                cluster.provisioner === "docker" ? "127.0.0.1" : cidrAddress(cluster.cidr, 2),
            // `machine.registries` left the config schema in 1.12, for RegistryMirrorConfig.
            mirrorConfig: atLeast(version, talos1_12) ? "talosMirrorDocuments" : "talosConfigPatch",
        },
    };
}

/**
 * The create command with the front's CA and pull credential for every cache endpoint: talosctl
 * has no flag for either (`--registry-insecure-skip-verify` only), so they go in as a config
 * patch, in the form the release's machine config takes.
 */
export function clusterCreateWithAccess(
    plan: ClusterPlan,
    caches: readonly Cache[],
    access: ClientAccess,
): string {
    const endpoints = caches.map((cache) => cache.endpoint);
    const patch = talosAccessPatch(endpoints, access, plan.output.mirrorConfig);
    return patch ? shellQuote([...plan.createArgv, "--config-patch", patch]) : plan.create;
}

/**
 * The `command.local.Command` inputs: any change to the command (mirrors, settings, version
 * family, the CA) replaces the cluster, and the output streams to the user.
 */
export function clusterCommand(plan: ClusterPlan, create: pulumi.Input<string> = plan.create) {
    return {
        create,
        delete: plan.delete,
        triggers: [create],
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
