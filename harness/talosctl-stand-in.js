#!/usr/bin/env node
/*
 * A test stand-in for talosctl. It claims the version in TALOSCTL_STAND_IN_VERSION and accepts
 * exactly the `cluster create` / `cluster destroy` flags of that version family, rejecting any
 * other. `cluster create` does what a Talos node does with mirrors: turns every
 * `--registry-mirror` into a containerd hosts.toml (fallback closed off) and pulls the images in
 * TALOSCTL_STAND_IN_IMAGES through them with ctr, against the containerd at
 * TALOSCTL_STAND_IN_CONTAINERD. `image default` lists those images (`cmd/talosctl/cmd/talos/image.go`:
 * the command on 1.11, an alias of `image k8s-bundle` from 1.12, which from 1.13 also prints
 * kube-network-policies). Every call is appended to <state>/calls.jsonl.
 *
 * State and teardown follow the real provisioners (`pkg/provision`): 1.12+ writes
 * `<state>/<name>/state.yaml` for every cluster and destroys by it, failing without one; 1.7–1.11
 * wrote it only for QEMU and destroyed docker clusters by `--provisioner` and labels. With
 * `--image`, a docker cluster is real Docker objects as the docker provisioner labels them: a
 * network and one created container per node, whose image this host's Docker daemon pulls as
 * the provisioner has it do, but only from a loopback registry. Without it (talosctl's default,
 * ghcr.io itself) no node is made: nothing here may pull from the internet.
 */
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const claimed = process.env.TALOSCTL_STAND_IN_VERSION ?? "v1.12.0";
const [, major, minor] = /^v(\d+)\.(\d+)\.\d+$/.exec(claimed) ?? [];
const atLeast = (wanted) => Number(major) > 1 || Number(minor) >= wanted;
const modern = atLeast(12);

function fail(message) {
    process.stderr.write(`talosctl stand-in ${claimed}: ${message}\n`);
    process.exit(1);
}

/** The QEMU flags Pullthrough may pass, in every version. */
const qemuFlags = [
    "name",
    "state",
    "cidr",
    "controlplanes",
    "workers",
    "talos-version",
    "kubernetes-version",
    "registry-mirror",
];

/** Flags (all taking a value) per command shape of the claimed version. */
const valueFlags = modern
    ? {
          "create docker": [
              "name",
              "state",
              "subnet",
              "workers",
              "kubernetes-version",
              "registry-mirror",
              "image",
          ],
          "create qemu": qemuFlags,
          // The hidden bare `cluster create` of 1.12+ (create/cmd_dev.go): a QEMU cluster, whatever
          // --provisioner says.
          "create dev": [...qemuFlags, "provisioner", "wait-timeout"],
          destroy: ["name", "state", "provisioner"],
      }
    : {
          create: [
              ...qemuFlags,
              "provisioner",
              "wait-timeout",
              "image",
              "vmlinuz-path",
              "initrd-path",
          ],
          destroy: ["provisioner", "name", "state"],
      };

function parseFlags(shape, args) {
    const allowed = valueFlags[shape];
    if (!allowed) fail(`unknown command "cluster ${shape}"`);
    const flags = {};
    for (let i = 0; i < args.length; i += 2) {
        const name = args[i].replace(/^--/, "");
        if (!args[i].startsWith("--") || !allowed.includes(name))
            fail(`unknown flag: ${args[i]} for "cluster ${shape}"`);
        if (args[i + 1] === undefined) fail(`flag needs an argument: ${args[i]}`);
        (flags[name] ??= []).push(args[i + 1]);
    }
    return flags;
}

const last = (flags, name, fallback) =>
    flags[name] ? flags[name][flags[name].length - 1] : fallback;
const clusterDir = (flags) =>
    path.join(
        last(flags, "state", path.join(os.homedir(), ".talos/clusters")),
        last(flags, "name", "talos-default"),
    );

function record(flags, call) {
    const state = last(flags, "state", path.join(os.homedir(), ".talos/clusters"));
    fs.mkdirSync(state, { recursive: true });
    fs.appendFileSync(
        path.join(state, "calls.jsonl"),
        JSON.stringify({ version: claimed, ...call }) + "\n",
    );
}

function ctr(namespace, ...args) {
    return execFileSync(
        "ctr",
        ["--address", process.env.TALOSCTL_STAND_IN_CONTAINERD, "--namespace", namespace, ...args],
        { encoding: "utf8" },
    );
}

function docker(...args) {
    return execFileSync("docker", args, { encoding: "utf8" }).trim();
}

/** `pkg/provision/providers/docker`: nodes and network carry these labels; destroy finds them so. */
const labels = (name) => ["talos.owned=true", `talos.cluster.name=${name}`];
const labelFilters = (name) => labels(name).flatMap((label) => ["--filter", `label=${label}`]);

function createDockerNodes(name, flags) {
    const image = last(flags, "image");
    if (!image) return undefined;
    // What is not in a loopback registry must be here already: nothing is pulled from the internet.
    const pull = /^127\.[\d.]+:\d+\//.test(image) ? "missing" : "never";
    const labelArgs = labels(name).flatMap((label) => ["--label", label]);
    const subnet = last(flags, "subnet", last(flags, "cidr", "10.5.0.0/24"));
    docker("network", "create", ...labelArgs, "--subnet", subnet, name);
    const controlplanes = modern ? 1 : Number(last(flags, "controlplanes", "1"));
    const nodes = [
        ...Array.from({ length: controlplanes }, (_, i) => ["controlplane", i + 1]),
        ...Array.from({ length: Number(last(flags, "workers", "1")) }, (_, i) => ["worker", i + 1]),
    ];
    for (const [type, n] of nodes) {
        docker(
            "create",
            ...labelArgs,
            "--label",
            `talos.type=${type}`,
            "--network",
            name,
            "--name",
            `${name}-${type}-${n}`,
            "--pull",
            pull,
            image,
        );
    }
    return image;
}

function removeDockerNodes(name) {
    for (const node of docker("ps", "--all", "--quiet", ...labelFilters(name)).split("\n"))
        if (node) docker("rm", "--force", "--volumes", node);
    for (const network of docker("network", "ls", "--quiet", ...labelFilters(name)).split("\n"))
        if (network) docker("network", "rm", network);
}

const provisionerOf = (shape, flags) =>
    shape === "create"
        ? last(flags, "provisioner", "docker")
        : shape === "create docker"
          ? "docker"
          : "qemu";

/** talosctl 1.7–1.11 QEMU boots from these files, by default in `_out/` of the working folder. */
function requireBootAssets(flags) {
    const arch = { x64: "amd64", arm64: "arm64" }[process.arch] ?? process.arch;
    for (const file of [
        last(flags, "vmlinuz-path", `_out/vmlinuz-${arch}`),
        last(flags, "initrd-path", `_out/initramfs-${arch}.xz`),
    ])
        if (!fs.existsSync(file)) fail(`open ${file}: no such file or directory`);
}

function create(shape, args) {
    const flags = parseFlags(shape, args);
    const dir = clusterDir(flags);
    if (fs.existsSync(dir)) fail(`cluster ${path.basename(dir)} already exists`);
    const provisioner = provisionerOf(shape, flags);
    if (shape === "create" && provisioner === "qemu") requireBootAssets(flags);
    const hostsDir = path.join(dir, "hosts");
    fs.mkdirSync(hostsDir, { recursive: true });
    const mirrors = {};
    // A string-slice flag: pflag reads each value as CSV, so a comma splits it in two.
    for (const value of (flags["registry-mirror"] ?? []).flatMap((item) => item.split(","))) {
        const [registry, endpoint] = [
            value.slice(0, value.indexOf("=")),
            value.slice(value.indexOf("=") + 1),
        ];
        if (!/^https?:\/\//.test(endpoint))
            fail(`--registry-mirror ${value}: missing protocol scheme`);
        // Before 1.12 a repeated host keeps only the last value; from 1.12 they add up.
        mirrors[registry] = modern ? [...(mirrors[registry] ?? []), endpoint] : [endpoint];
    }
    for (const [registry, endpoints] of Object.entries(mirrors)) {
        fs.mkdirSync(path.join(hostsDir, registry), { recursive: true });
        const hosts = endpoints
            .map((url) => `[host.${JSON.stringify(url)}]\n  capabilities = ["pull", "resolve"]\n`)
            .join("\n");
        fs.writeFileSync(
            path.join(hostsDir, registry, "hosts.toml"),
            `server = "http://127.0.0.1:1"\n\n${hosts}`,
        );
    }
    const namespace = path.basename(dir);
    const pulled = [];
    for (const ref of (process.env.TALOSCTL_STAND_IN_IMAGES ?? "").split(/\s+/).filter(Boolean)) {
        ctr(namespace, "images", "pull", "--hosts-dir", hostsDir, ref);
        pulled.push(ref);
        process.stdout.write(`pulled ${ref}\n`);
    }
    const nodeImage = provisioner === "docker" ? createDockerNodes(namespace, flags) : undefined;
    fs.writeFileSync(
        path.join(dir, "cluster.json"),
        JSON.stringify({ shape, flags, mirrors, pulled, nodeImage }, null, 2),
    );
    if (modern || provisioner === "qemu")
        fs.writeFileSync(path.join(dir, "state.yaml"), `provisioner: ${provisioner}\n`);
    record(flags, { command: `cluster ${shape}`, args });
}

function destroy(args) {
    const flags = parseFlags("destroy", args);
    record(flags, { command: "cluster destroy", args });
    const dir = clusterDir(flags);
    const stateFile = path.join(dir, "state.yaml");
    const state = fs.existsSync(stateFile) ? fs.readFileSync(stateFile, "utf8") : undefined;
    if (modern && state === undefined) fail(`open ${stateFile}: no such file or directory`);
    const provisioner = modern
        ? /provisioner: (\S+)/.exec(state)[1]
        : last(flags, "provisioner", "docker");
    if (provisioner === "qemu" && state === undefined)
        fail(`open ${stateFile}: no such file or directory`);
    if (fs.existsSync(path.join(dir, "cluster.json"))) {
        const { pulled, nodeImage } = JSON.parse(
            fs.readFileSync(path.join(dir, "cluster.json"), "utf8"),
        );
        if (provisioner === "docker" && nodeImage) removeDockerNodes(path.basename(dir));
        if (pulled.length > 0) ctr(path.basename(dir), "images", "rm", ...pulled);
    }
    fs.rmSync(dir, { recursive: true, force: true });
}

const argv = process.argv.slice(2);
if (argv[0] === "version") {
    // `version --client --short`: "Client:", then pkg/version's Short(), "<Name> <Tag>".
    process.stdout.write(`Client:\nTalos ${claimed}\n`);
} else if (argv[0] === "image" && (argv[1] === "default" || (modern && argv[1] === "k8s-bundle"))) {
    // What a cluster of this version pulls: here, the images the stand-in's nodes pull; from 1.13
    // also the image only clusters with kubeNetworkPoliciesEnabled run.
    for (const ref of (process.env.TALOSCTL_STAND_IN_IMAGES ?? "").split(/\s+/).filter(Boolean))
        process.stdout.write(`${ref}\n`);
    if (atLeast(13))
        process.stdout.write("registry.k8s.io/networking/kube-network-policies:v1.1.0\n");
} else if (argv[0] === "cluster" && argv[1] === "create") {
    if (!modern) create("create", argv.slice(2));
    else if (["docker", "qemu"].includes(argv[2])) create(`create ${argv[2]}`, argv.slice(3));
    else create("create dev", argv.slice(2));
} else if (argv[0] === "cluster" && argv[1] === "destroy") {
    destroy(argv.slice(2));
} else {
    fail(`unknown command: ${argv.join(" ")}`);
}
