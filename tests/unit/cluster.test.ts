import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { ClusterSettings, encodeConfig, parseSettings } from "../../mirrors";
import { planCaches } from "../../core/plan";
import { registryMirrorFlags } from "../../core/render";
import {
    planCluster,
    clusterCreateArgv,
    clusterDestroyArgv,
    parseTalosctlVersion,
    qemuBootAssets,
    shellQuote,
    unsupportedSettings,
} from "../../core/cluster";

const standIn = path.join(__dirname, "../../harness/talosctl-stand-in.js");
const mirrors = [
    "--registry-mirror",
    "docker.io=http://10.5.0.1:5000",
    "--registry-mirror",
    "ghcr.io=http://10.5.0.1:5004",
];
/**
 * Caches published on a LAN address, so this host reaches them there and not on loopback: nodes
 * get `mirrors`, and the node image comes from ghcr.io itself.
 */
const lanCaches = planCaches(
    parseSettings(
        encodeConfig({
            bindAddress: "192.168.1.10",
            upstreams: [
                { registry: "docker.io", remote: "https://registry-1.docker.io", port: 5000 },
                { registry: "ghcr.io", remote: "https://ghcr.io", port: 5004 },
            ],
        }),
    ),
    { project: "pullthrough", stack: "dev" },
);
/** The default cluster settings, enabled, with overrides. */
const cluster = (overrides: Partial<ClusterSettings> = {}): ClusterSettings => ({
    ...parseSettings({}).cluster,
    enabled: true,
    ...overrides,
});

describe("version", () => {
    test.each([
        ["Client:\nTalos v1.12.1\n", { major: 1, minor: 12, patch: 1 }],
        ["Talos v1.9.5", { major: 1, minor: 9, patch: 5 }],
        ["Client:\nTalos v1.11.0-alpha.1-12-gabcdef\n", { major: 1, minor: 11, patch: 0 }],
    ])("reads %j", (output, version) => {
        expect(parseTalosctlVersion(output)).toEqual(version);
    });

    test("output without a version is an error that shows it", () => {
        expect(() => parseTalosctlVersion("command not found")).toThrow(
            /cannot read a version.*command not found/,
        );
    });
});

const v = (text: string) => parseTalosctlVersion(text);
const host = { arch: "amd64", projectDir: "/home/me/pullthrough" };

describe("QEMU boot assets", () => {
    test("talosctl 1.7–1.11 QEMU gets the kernel and initramfs from cluster.bootAssets, by absolute path", () => {
        const qemu = cluster({ provisioner: "qemu", talosVersion: "v1.10.4" });
        expect(qemuBootAssets(qemu, v("v1.11.0"), host)).toEqual([
            {
                flag: "--vmlinuz-path",
                path: "/home/me/pullthrough/_out/vmlinuz-amd64",
                url: "https://github.com/siderolabs/talos/releases/download/v1.10.4/vmlinuz-amd64",
            },
            {
                flag: "--initrd-path",
                path: "/home/me/pullthrough/_out/initramfs-amd64.xz",
                url: "https://github.com/siderolabs/talos/releases/download/v1.10.4/initramfs-amd64.xz",
            },
        ]);
        const elsewhere = cluster({ provisioner: "qemu", bootAssets: "/srv/talos-assets" });
        const assets = qemuBootAssets(elsewhere, v("v1.9.5"), { ...host, arch: "arm64" });
        expect(assets.map((asset) => asset.path)).toEqual([
            "/srv/talos-assets/vmlinuz-arm64",
            "/srv/talos-assets/initramfs-arm64.xz",
        ]);
        // Without a talosVersion the nodes run talosctl's own release.
        expect(assets[0].url).toMatch(/\/download\/v1\.9\.5\/vmlinuz-arm64$/);
    });

    test("docker, and QEMU on 1.12+ (an image-factory ISO), need none", () => {
        expect(qemuBootAssets(cluster({ provisioner: "docker" }), v("v1.11.0"), host)).toEqual([]);
        expect(qemuBootAssets(cluster({ provisioner: "qemu" }), v("v1.12.0"), host)).toEqual([]);
    });
});

describe("create argv per version family", () => {
    const full = {
        controlplanes: 1,
        workers: 2,
        kubernetesVersion: "1.32.0",
        state: "/tmp/talos state",
    };
    test.each<[string, ClusterSettings["provisioner"], Partial<ClusterSettings>, string[]]>([
        [
            "v1.9.5",
            "docker",
            full,
            [
                "cluster",
                "create",
                "--provisioner",
                "docker",
                "--name",
                "talos-default",
                "--state",
                "/tmp/talos state",
                "--cidr",
                "10.5.0.0/24",
                "--controlplanes",
                "1",
                "--workers",
                "2",
                "--kubernetes-version",
                "1.32.0",
            ],
        ],
        [
            "v1.9.5",
            "qemu",
            { ...full, controlplanes: 3, talosVersion: "v1.9" },
            [
                "cluster",
                "create",
                "--provisioner",
                "qemu",
                "--name",
                "talos-default",
                "--state",
                "/tmp/talos state",
                "--cidr",
                "10.5.0.0/24",
                "--controlplanes",
                "3",
                "--workers",
                "2",
                "--talos-version",
                "v1.9",
                "--kubernetes-version",
                "1.32.0",
            ],
        ],
        [
            "v1.11.2",
            "docker",
            {},
            [
                "cluster",
                "create",
                "--provisioner",
                "docker",
                "--name",
                "talos-default",
                "--cidr",
                "10.5.0.0/24",
                "--controlplanes",
                "1",
                "--workers",
                "1",
            ],
        ],
        [
            "v1.11.2",
            "qemu",
            {},
            [
                "cluster",
                "create",
                "--provisioner",
                "qemu",
                "--name",
                "talos-default",
                "--cidr",
                "10.5.0.0/24",
                "--controlplanes",
                "1",
                "--workers",
                "1",
            ],
        ],
        [
            "v1.12.0",
            "docker",
            full,
            [
                "cluster",
                "create",
                "docker",
                "--name",
                "talos-default",
                "--state",
                "/tmp/talos state",
                "--subnet",
                "10.5.0.0/24",
                "--workers",
                "2",
                "--kubernetes-version",
                "1.32.0",
            ],
        ],
        [
            "v1.12.0",
            "qemu",
            full,
            [
                "cluster",
                "create",
                "qemu",
                "--name",
                "talos-default",
                "--state",
                "/tmp/talos state",
                "--cidr",
                "10.5.0.0/24",
                "--controlplanes",
                "1",
                "--workers",
                "2",
                "--kubernetes-version",
                "1.32.0",
            ],
        ],
        [
            "v1.13.1",
            "docker",
            { extraArgs: ["--image", "ghcr.io/siderolabs/talos:v1.13.1"] },
            [
                "cluster",
                "create",
                "docker",
                "--name",
                "talos-default",
                "--subnet",
                "10.5.0.0/24",
                "--workers",
                "1",
                "--image",
                "ghcr.io/siderolabs/talos:v1.13.1",
            ],
        ],
        [
            "v1.13.1",
            "qemu",
            { talosVersion: "v1.13.1" },
            [
                "cluster",
                "create",
                "qemu",
                "--name",
                "talos-default",
                "--cidr",
                "10.5.0.0/24",
                "--controlplanes",
                "1",
                "--workers",
                "1",
                "--talos-version",
                "v1.13.1",
            ],
        ],
    ])("talosctl %s, %s", (version, provisioner, overrides, expected) => {
        const settings = cluster({ provisioner, ...overrides });
        const argv = clusterCreateArgv(settings, v(version), lanCaches);
        const { extraArgs } = settings;
        expect(argv).toEqual([
            "talosctl",
            ...expected.slice(0, expected.length - extraArgs.length),
            ...mirrors,
            ...extraArgs,
        ]);
    });

    test.each([
        ["v1.9.5", false],
        ["v1.11.2", false],
        ["v1.12.0", true],
        ["v1.13.1", true],
    ])(
        "talosctl %s: the stand-in, holding that version's flag set, accepts create and destroy",
        (version, subcommands) => {
            for (const provisioner of ["docker", "qemu"] as const) {
                const state = mkdtempSync(path.join(tmpdir(), "pt-talosctl-"));
                try {
                    const settings = cluster({
                        provisioner,
                        talosctl: standIn,
                        state,
                        kubernetesVersion: "1.32.0",
                        bootAssets: state,
                    });
                    const assets = qemuBootAssets(settings, v(version), host);
                    for (const asset of assets) writeFileSync(asset.path, "");
                    const env = {
                        ...process.env,
                        TALOSCTL_STAND_IN_VERSION: version,
                        TALOSCTL_STAND_IN_IMAGES: "",
                    };
                    execFileSync(
                        "/bin/sh",
                        [
                            "-c",
                            shellQuote(clusterCreateArgv(settings, v(version), lanCaches, assets)),
                        ],
                        { env, stdio: "pipe" },
                    );
                    execFileSync(
                        "/bin/sh",
                        ["-c", shellQuote(clusterDestroyArgv(settings, v(version)))],
                        { env, stdio: "pipe" },
                    );
                    const calls = readFileSync(path.join(state, "calls.jsonl"), "utf8")
                        .trim()
                        .split("\n")
                        .map((line) => JSON.parse(line).command);
                    expect(calls).toEqual([
                        subcommands ? `cluster create ${provisioner}` : "cluster create",
                        "cluster destroy",
                    ]);
                } finally {
                    rmSync(state, { recursive: true, force: true });
                }
            }
        },
    );

    /** The stand-in as talosctl 1.12 with no image list. */
    const talosctl112Env = () => ({
        ...process.env,
        TALOSCTL_STAND_IN_VERSION: "v1.12.0",
        TALOSCTL_STAND_IN_IMAGES: "",
    });

    test("the stand-in does what the real talosctl 1.12 does: bare create builds QEMU, docker has no --controlplanes", () => {
        const state = mkdtempSync(path.join(tmpdir(), "pt-talosctl-"));
        const env = talosctl112Env();
        try {
            // The hidden bare `create` is the QEMU dev command; its --provisioner is ignored.
            execFileSync(
                standIn,
                ["cluster", "create", "--provisioner", "docker", "--state", state],
                { env, stdio: "pipe" },
            );
            const created = JSON.parse(
                readFileSync(path.join(state, "talos-default", "cluster.json"), "utf8"),
            );
            expect(created.shape).toBe("create dev");
        } finally {
            rmSync(state, { recursive: true, force: true });
        }
        expect(() =>
            execFileSync(standIn, ["cluster", "create", "docker", "--controlplanes", "3"], {
                env,
                stdio: "pipe",
            }),
        ).toThrow(/unknown flag: --controlplanes/);
    });

    test("the stand-in reads --registry-mirror as pflag does: a comma splits a value in two", () => {
        const state = mkdtempSync(path.join(tmpdir(), "pt-talosctl-"));
        const env = talosctl112Env();
        try {
            const mirrorFlag = "docker.io=http://10.5.0.1:5000,ghcr.io=http://10.5.0.1:5004";
            execFileSync(
                standIn,
                ["cluster", "create", "docker", "--state", state, "--registry-mirror", mirrorFlag],
                { env, stdio: "pipe" },
            );
            const created = JSON.parse(
                readFileSync(path.join(state, "talos-default", "cluster.json"), "utf8"),
            );
            expect(created.mirrors).toEqual({
                "docker.io": ["http://10.5.0.1:5000"],
                "ghcr.io": ["http://10.5.0.1:5004"],
            });
        } finally {
            rmSync(state, { recursive: true, force: true });
        }
        // Which is why Pullthrough repeats the flag and never joins values.
        expect(registryMirrorFlags(lanCaches)).toEqual(mirrors);
        expect(mirrors.filter((item) => item.includes(","))).toEqual([]);
    });
});

test("the cluster output names the mirror rendering the detected Talos version takes", () => {
    const settings = parseSettings({});
    const caches = planCaches(settings, { project: "pullthrough", stack: "dev" });
    const mirrorConfig = (version: string) =>
        planCluster(settings, caches, host, v(version)).output.mirrorConfig;
    expect([mirrorConfig("v1.7.0"), mirrorConfig("v1.11.5")]).toEqual([
        "talosConfigPatch",
        "talosConfigPatch",
    ]);
    expect([mirrorConfig("v1.12.0"), mirrorConfig("v1.14.0")]).toEqual([
        "talosMirrorDocuments",
        "talosMirrorDocuments",
    ]);
});

describe("destroy argv", () => {
    test("before 1.12 it names the provisioner; from 1.12 the state file does", () => {
        const qemu = cluster({ provisioner: "qemu", name: "lab", state: "/var/lib/talos" });
        expect(clusterDestroyArgv(qemu, v("v1.11.0"))).toEqual([
            "talosctl",
            "cluster",
            "destroy",
            "--provisioner",
            "qemu",
            "--name",
            "lab",
            "--state",
            "/var/lib/talos",
        ]);
        expect(clusterDestroyArgv(qemu, v("v1.12.0"))).toEqual([
            "talosctl",
            "cluster",
            "destroy",
            "--name",
            "lab",
            "--state",
            "/var/lib/talos",
        ]);
    });
});

describe("settings the version cannot express", () => {
    test("1.12+ docker makes exactly one control plane", () => {
        const settings = cluster({ controlplanes: 3, talosVersion: "v1.12.0" });
        expect(unsupportedSettings(settings, v("v1.12.0")).map(([key]) => key)).toEqual([
            "cluster.controlplanes",
        ]);
        expect(unsupportedSettings(settings, v("v1.11.0"))).toEqual([]);
        expect(unsupportedSettings({ ...settings, provisioner: "qemu" }, v("v1.12.0"))).toEqual([]);
    });

    test("docker needs a full release for talosVersion: it names the node image", () => {
        const settings = cluster({ talosVersion: "v1.11" });
        expect(unsupportedSettings(settings, v("v1.12.0")).map(([key]) => key)).toEqual([
            "cluster.talosVersion",
        ]);
        expect(unsupportedSettings({ ...settings, provisioner: "qemu" }, v("v1.11.0"))).toEqual([]);
    });

    test("talosVersion is what docker nodes run, on both talosctl families", () => {
        const settings = cluster({ talosVersion: "1.11.3" });
        const imageOf = (argv: string[]) => argv[argv.indexOf("--image") + 1];
        for (const version of ["v1.9.5", "v1.11.0", "v1.12.1", "v1.13.1"]) {
            expect(imageOf(clusterCreateArgv(settings, v(version), []))).toBe(
                "ghcr.io/siderolabs/talos:v1.11.3",
            );
        }
        // Before 1.12, --talos-version still versions the generated config.
        expect(clusterCreateArgv(settings, v("v1.11.0"), [])).toContain("--talos-version");
        expect(clusterCreateArgv(settings, v("v1.12.1"), [])).not.toContain("--talos-version");
    });

    test("docker nodes pull their image through the ghcr.io cache when this host reaches it on loopback", () => {
        const local = planCaches(parseSettings({}), { project: "pullthrough", stack: "dev" });
        const imageOf = (argv: string[]) =>
            argv.includes("--image") ? argv[argv.indexOf("--image") + 1] : undefined;
        // talosctl's own release, or talosVersion; on either talosctl family.
        expect(imageOf(clusterCreateArgv(cluster(), v("v1.12.1"), local))).toBe(
            "127.0.0.1:5004/siderolabs/talos:v1.12.1",
        );
        expect(imageOf(clusterCreateArgv(cluster(), v("v1.11.0"), local))).toBe(
            "127.0.0.1:5004/siderolabs/talos:v1.11.0",
        );
        const pinned = cluster({ talosVersion: "1.13.9" });
        expect(imageOf(clusterCreateArgv(pinned, v("v1.13.1"), local))).toBe(
            "127.0.0.1:5004/siderolabs/talos:v1.13.9",
        );
        // QEMU nodes pull nothing through the host's daemon; a LAN address needs daemon settings.
        expect(
            imageOf(clusterCreateArgv(cluster({ provisioner: "qemu" }), v("v1.12.1"), local)),
        ).toBeUndefined();
        expect(imageOf(clusterCreateArgv(cluster(), v("v1.12.1"), lanCaches))).toBeUndefined();
    });

    test("talosctl older than 1.7 is refused", () => {
        expect(unsupportedSettings(cluster(), v("v1.6.7"))).toEqual([
            ["cluster.talosctl", "talosctl", "talosctl v1.7.0 or newer (found v1.6.7)"],
        ]);
    });
});

describe("shellQuote", () => {
    test("runs the exact argv under /bin/sh, spaces, quotes and all", () => {
        const argv = ["printf", "%s\\n", "plain", "with space", "it's", "$HOME", "a=b,c"];
        expect(execFileSync("/bin/sh", ["-c", shellQuote(argv)], { encoding: "utf8" })).toBe(
            "plain\nwith space\nit's\n$HOME\na=b,c\n",
        );
    });
});
