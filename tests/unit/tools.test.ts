import { execFileSync } from "node:child_process";
/** The prewarm/verify tools' pure parts, and where the Talos image set comes from. */
import { createHash } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { emptySchematicId, retagTalosImages } from "../../core/prewarm";
import { detectTalosctl, readTalosImageSet } from "../../host/talosctl";
import { formatBytes } from "../../core/format";
import {
    formatPrewarmSummary,
    formatVerifyReport,
    progressIntervalMs,
    progressReporter,
} from "../../tools/report";
import { fromOutputs, fromStackConfig } from "../../tools/stack";
import { formatRepairs } from "../../tools/integrity";
import { Manifest, RegistryError, selectPlatforms } from "../../tools/registry-client";
import { oneLineCause } from "../../core/format";
import { Interrupted } from "../../tools/interrupt";
import { UsageError } from "../../tools/types";
import { limiter, routeImages } from "../../tools/warm";
import { talosctlStandIn } from "../../harness/talosctl";

describe("where the tools find caches and images", () => {
    let dir: string;
    beforeAll(() => (dir = mkdtempSync(path.join(tmpdir(), "pt-tools-"))));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    test("a stack config file is planned like pulumi up plans it; secure values are skipped", () => {
        const file = path.join(dir, "Pulumi.lab.yaml");
        writeFileSync(
            file,
            [
                "config:",
                "  pullthrough:bindAddress: 127.0.0.1",
                "  pullthrough:mode: offline",
                "  pullthrough:upstreams:",
                "    - {registry: docker.io, remote: 'https://registry-1.docker.io', port: 6000}",
                "  pullthrough:prewarm: [nginx:1.27]",
                "  pullthrough:credentials:",
                "    secure: v1:abc",
                "",
            ].join("\n"),
        );
        expect(fromStackConfig(file, "lab")).toEqual({
            caches: [
                {
                    registry: "docker.io",
                    remote: "https://registry-1.docker.io",
                    port: 6000,
                    mode: "offline",
                    endpoint: "http://10.5.0.1:6000",
                    hostEndpoint: "http://127.0.0.1:6000",
                    container: "registry-docker.io",
                    volume: "registry-docker.io",
                    network: "registry-net",
                },
            ],
            images: ["docker.io/library/nginx:1.27"],
            talosImages: expect.any(Function),
        });
    });

    test("with HTTPS, a given certificate and secure pull credentials the tools plan https endpoints", () => {
        const file = path.join(dir, "Pulumi.team.yaml");
        writeFileSync(
            file,
            [
                "config:",
                "  pullthrough:mirrorHost: cache.team.lan",
                "  pullthrough:upstreams:",
                "    - {registry: docker.io, remote: 'https://registry-1.docker.io', port: 6000}",
                "  pullthrough:tls:",
                "    enabled: true",
                "    certificate: not read by the tools",
                "    key:",
                "      secure: v1:abc",
                "  pullthrough:pullCredentials:",
                "    secure: v1:def",
                "",
            ].join("\n"),
        );
        expect(fromStackConfig(file, "team").caches[0]).toMatchObject({
            endpoint: "https://cache.team.lan:6000",
            hostEndpoint: "https://127.0.0.1:6000",
        });
    });

    test("invalid stack config stops the tools with the same errors as pulumi up", () => {
        const file = path.join(dir, "Pulumi.bad.yaml");
        writeFileSync(file, "config:\n  pullthrough:mode: online\n");
        expect(() => fromStackConfig(file, "bad")).toThrow(
            /pullthrough:mode: got "online"; expected "auto", "proxy" or "offline"/,
        );
        expect(() => fromStackConfig(path.join(dir, "Pulumi.none.yaml"), "none")).toThrow(
            UsageError,
        );
    });

    test("stack outputs are read as `pulumi stack output --json` prints them", () => {
        const mirror = {
            remote: "https://ghcr.io",
            mode: "auto",
            hostEndpoint: "http://127.0.0.1:5004",
            container: "registry-ghcr.io",
            volume: "registry-ghcr.io",
        };
        expect(
            fromOutputs(
                JSON.stringify({
                    mirrors: { "ghcr.io": mirror },
                    prewarmImages: ["ghcr.io/a/b:1"],
                    cluster: null,
                }),
            ),
        ).toEqual({
            caches: [{ registry: "ghcr.io", ...mirror }],
            images: ["ghcr.io/a/b:1"],
            dockerHost: undefined,
            talosImages: expect.any(Function),
        });
        expect(() => fromOutputs("{}")).toThrow(/no `mirrors` output/);
        expect(() => fromOutputs("Current stack is dev")).toThrow(/not JSON/);
    });

    test("an image is routed to its registry's cache, or refused by name", () => {
        const caches = fromOutputs(
            JSON.stringify({ mirrors: { "docker.io": {}, "ghcr.io": {} } }),
        ).caches;
        expect(
            routeImages(["nginx", "ghcr.io/a/b:1"], caches).map(({ image, cache }) => [
                image.canonical,
                cache.registry,
            ]),
        ).toEqual([
            ["docker.io/library/nginx:latest", "docker.io"],
            ["ghcr.io/a/b:1", "ghcr.io"],
        ]);
        expect(() => routeImages(["quay.io/x/y:1"], caches)).toThrow(
            "no cache serves quay.io (for quay.io/x/y:1); caches: docker.io, ghcr.io",
        );
    });
});

describe("reports", () => {
    test("verify prints one row per image, the reason for each missing one, and a count", () => {
        const report = formatVerifyReport([
            {
                image: "docker.io/library/nginx:1.27",
                registry: "docker.io",
                present: true,
                blobs: 7,
                bytes: 72_500_000,
            },
            {
                image: "ghcr.io/a/b:1",
                registry: "ghcr.io",
                present: false,
                reason: "tag 1: not in the cache",
                blobs: 0,
                bytes: 0,
            },
        ]);
        expect(report.split("\n")).toEqual([
            "IMAGE                         STATUS   DETAIL",
            "docker.io/library/nginx:1.27  present  7 blobs, 72.5 MB",
            "ghcr.io/a/b:1                 missing  tag 1: not in the cache",
            "",
            "1 of 2 images are missing.",
        ]);
    });

    test("the prewarm summary gives totals and throughput, and lists failures", () => {
        const ok = {
            image: "a",
            registry: "docker.io",
            ok: true,
            blobs: 2,
            bytes: 50_000_000,
            transferred: 40_000_000,
            seconds: 2,
        };
        const failed = {
            image: "b",
            registry: "docker.io",
            ok: false,
            error: "tag 1: not found",
            blobs: 0,
            bytes: 0,
            transferred: 0,
            seconds: 0,
        };
        expect(formatPrewarmSummary([ok, failed], 4)).toBe(
            "Warmed 1 of 2 images (50.0 MB); read 40.0 MB through the caches in 4.0 s (10.0 MB/s).\nFailed:\n  b: tag 1: not found",
        );
    });

    test.each([
        [0, "0 B"],
        [999, "999 B"],
        [1_500, "1.5 kB"],
        [2_340_000_000, "2.3 GB"],
    ])("%d bytes is %s", (bytes, text) => expect(formatBytes(bytes)).toBe(text));
});

describe("prewarm progress", () => {
    const result = (image: string) => ({
        image,
        registry: "docker.io",
        ok: true,
        blobs: 1,
        bytes: 1_000_000,
        transferred: 1_000_000,
        seconds: 1,
    });
    let clock: number;
    beforeEach(() => {
        jest.useFakeTimers();
        clock = 0;
    });
    afterEach(() => jest.useRealTimers());

    test("without a terminal a status line comes at a steady pace, even while nothing finishes", () => {
        const lines: string[] = [];
        const stream = { isTTY: false, write: (text: string) => lines.push(text) > 0 };
        const progress = progressReporter(3, stream, () => clock);
        for (let second = 1; second <= 25; second++) {
            clock = second * 1000;
            progress.onEvent({ kind: "bytes", image: "a", bytes: 2_000_000 });
            jest.advanceTimersByTime(1000);
        }
        progress.onEvent({ kind: "finished", result: result("a") });
        progress.stop();
        jest.advanceTimersByTime(3 * progressIntervalMs);
        expect(lines).toEqual([
            "[0/3 images, 3 left] 20.0 MB read, 2.0 MB/s\n",
            "[0/3 images, 3 left] 40.0 MB read, 2.0 MB/s\n",
            "ok      a  1 blobs, 1.0 MB, 1.0 MB read, 1.0 s\n",
        ]);
    });

    test("on a terminal the status line is redrawn at most every 100 ms, however many chunks", () => {
        const writes: string[] = [];
        const stream = { isTTY: true, write: (text: string) => writes.push(text) > 0 };
        const progress = progressReporter(1, stream, () => clock);
        // 2,411 chunks over 5 s: what one 157 MB image made before.
        for (let chunk = 0; chunk < 2411; chunk++) {
            clock = Math.floor((chunk * 5000) / 2411);
            progress.onEvent({ kind: "bytes", image: "a", bytes: 65_000 });
        }
        progress.onEvent({ kind: "finished", result: result("a") });
        progress.stop();
        expect(writes.length).toBeLessThanOrEqual(5000 / 100 + 2);
        expect(writes.at(-2)).toContain("ok      a");
        expect(writes.at(-1)).toBe("\n");
    });
});

describe("platform selection", () => {
    const entry = (architecture: string, variant?: string) => ({
        mediaType: "m",
        digest: `sha256:${architecture}${variant ?? ""}`,
        size: 1,
        platform: { os: "linux", architecture, ...(variant ? { variant } : {}) },
    });
    const index: Manifest = {
        digest: "d",
        mediaType: "i",
        size: 1,
        isIndex: true,
        bytes: Buffer.from("{}"),
        blobs: [],
        manifests: [entry("amd64"), entry("arm64", "v8"), entry("arm", "v7")],
    };

    test("a platform without variant takes any variant; several platforms take several manifests", () => {
        expect(
            selectPlatforms(index, [{ os: "linux", architecture: "arm64" }]).map((m) => m.digest),
        ).toEqual(["sha256:arm64v8"]);
        expect(
            selectPlatforms(index, [
                { os: "linux", architecture: "amd64" },
                { os: "linux", architecture: "arm", variant: "v7" },
            ]).map((m) => m.digest),
        ).toEqual(["sha256:amd64", "sha256:armv7"]);
    });

    test("an index without the platform is an error naming what it has", () => {
        expect(() => selectPlatforms(index, [{ os: "linux", architecture: "s390x" }])).toThrow(
            new RegistryError(
                "no manifest for linux/s390x in the index (it has linux/amd64, linux/arm64/v8, linux/arm/v7)",
            ),
        );
    });
});

test("the limiter never runs more than its concurrency at once", async () => {
    const run = limiter(2);
    let running = 0;
    let most = 0;
    await Promise.all(
        Array.from({ length: 8 }, () =>
            run(async () => {
                most = Math.max(most, ++running);
                await new Promise((resolve) => setTimeout(resolve, 5));
                running--;
            }),
        ),
    );
    expect(most).toBe(2);
});

describe("the Talos image set", () => {
    test("retagging puts the Kubernetes version on Kubernetes images and the Talos version on the installer", () => {
        const images = [
            "registry.k8s.io/kube-apiserver:v1.34.0",
            "ghcr.io/siderolabs/kubelet:v1.34.0",
            "ghcr.io/siderolabs/installer:v1.11.0",
            "registry.k8s.io/pause:3.10",
        ];
        expect(
            retagTalosImages(images, { kubernetesVersion: "1.33.4", talosVersion: "v1.11.5" }),
        ).toEqual([
            "registry.k8s.io/kube-apiserver:v1.33.4",
            "ghcr.io/siderolabs/kubelet:v1.33.4",
            "ghcr.io/siderolabs/installer:v1.11.5",
            "registry.k8s.io/pause:3.10",
        ]);
        expect(retagTalosImages(images, {})).toEqual(images);
    });

    const docker = "docker" as const;
    const absent = "/nonexistent/talosctl";
    /** The set as `up` reads it: talosctl detected once, then asked for its list. */
    const imageSet = (cluster: Parameters<typeof readTalosImageSet>[0]) =>
        readTalosImageSet(cluster, detectTalosctl(cluster));

    test("from the talosctl binary when it is there, else from the sets kept in the repo", () => {
        const fromBinary = imageSet({
            talosctl: talosctlStandIn("v1.12.1", { images: ["registry.k8s.io/pause:3.10"] }),
            provisioner: docker,
        });
        // Docker nodes also run talosctl's own node image, which the host's daemon pulls.
        expect(fromBinary).toEqual({
            images: ["registry.k8s.io/pause:3.10", "ghcr.io/siderolabs/talos:v1.12.1"],
            source: "talosctl v1.12.1 image default",
        });
        const kept = imageSet({ talosctl: absent, provisioner: "qemu" });
        expect(kept.source).toBe(
            "data/talos-images.json (Talos v1.13.9; talosctl (/nonexistent/talosctl) not found)",
        );
        expect(kept.notice).toBe(
            "pullthrough: no cluster.talosVersion and talosctl (/nonexistent/talosctl) not found: warming Talos v1.13.9's image set, the newest release listed in data/talos-images.json",
        );
    });

    test("a talosctl that is there and fails is an error, never a silent fallback to the kept sets", () => {
        const broken = path.join(mkdtempSync(path.join(tmpdir(), "pt-talosctl-")), "talosctl");
        writeFileSync(broken, "#!/bin/sh\necho 'error: not found: ~/.talos/config' >&2\nexit 1\n");
        chmodSync(broken, 0o755);
        expect(() => imageSet({ talosctl: broken, provisioner: "qemu" })).toThrow(
            `pullthrough:prewarm: "talos" needs the cluster's image set, and talosctl (${broken}) failed: error: not found: ~/.talos/config`,
        );
        rmSync(path.dirname(broken), { recursive: true });
    });

    test("a minor as talosVersion gets that minor's newest kept set", () => {
        expect(
            imageSet({ talosctl: absent, provisioner: "qemu", talosVersion: "v1.12" }).source,
        ).toBe(`data/talos-images.json (Talos v1.12.11; talosctl (${absent}) not found)`);
    });

    test.each(["v1.11", "v1.12", "v1.13"])(
        "talosctl %s: `image default` is the list, without what a default cluster never pulls",
        (minor) => {
            const talosctl = talosctlStandIn(`${minor}.2`, {
                images: ["registry.k8s.io/pause:3.10"],
            });
            const { images } = imageSet({ talosctl, provisioner: "qemu" });
            expect(images.filter((image) => !image.startsWith("factory.talos.dev/"))).toEqual([
                "registry.k8s.io/pause:3.10",
            ]);
        },
    );

    test("the stand-in lists as talosctl does: `k8s-bundle` from 1.12 with `default` its alias, kube-network-policies from 1.13", () => {
        const list = (version: string, subcommand: string) =>
            execFileSync(talosctlStandIn(version, { images: ["a/b:c"] }), ["image", subcommand], {
                encoding: "utf8",
            });
        expect(list("v1.11.6", "default")).toBe("a/b:c\n");
        expect(() => list("v1.11.6", "k8s-bundle")).toThrow(/unknown command/);
        expect(list("v1.12.11", "k8s-bundle")).toBe(list("v1.12.11", "default"));
        expect(list("v1.13.9", "default")).toBe(
            "a/b:c\nregistry.k8s.io/networking/kube-network-policies:v1.1.0\n",
        );
    });

    /** What `talos` stands for without talosctl, for a QEMU cluster of `talosVersion`. */
    const keptFor = (talosVersion: string) =>
        imageSet({ talosctl: absent, provisioner: "qemu", talosVersion });

    test.each([
        [
            "v1.11.6",
            [
                "ghcr.io/siderolabs/flannel:v0.27.4",
                "registry.k8s.io/coredns/coredns:v1.12.4",
                "gcr.io/etcd-development/etcd:v3.6.5",
                "registry.k8s.io/kube-apiserver:v1.34.1",
                "registry.k8s.io/kube-controller-manager:v1.34.1",
                "registry.k8s.io/kube-scheduler:v1.34.1",
                "registry.k8s.io/kube-proxy:v1.34.1",
                "ghcr.io/siderolabs/kubelet:v1.34.1",
                "ghcr.io/siderolabs/installer:v1.11.6",
                "registry.k8s.io/pause:3.10",
            ],
        ],
        [
            "v1.12.11",
            [
                "ghcr.io/siderolabs/flannel:v0.27.4",
                "registry.k8s.io/coredns/coredns:v1.14.2",
                "registry.k8s.io/etcd:v3.6.11",
                "registry.k8s.io/kube-apiserver:v1.35.4",
                "registry.k8s.io/kube-controller-manager:v1.35.4",
                "registry.k8s.io/kube-scheduler:v1.35.4",
                "registry.k8s.io/kube-proxy:v1.35.4",
                "ghcr.io/siderolabs/kubelet:v1.35.4",
                "registry.k8s.io/pause:3.10.1",
            ],
        ],
        [
            "v1.13.9",
            [
                // Upstream's tags as they are: flannel's has no `v` from 0.28.8.
                "ghcr.io/siderolabs/flannel:0.28.8",
                "registry.k8s.io/coredns/coredns:v1.14.6",
                "registry.k8s.io/etcd:v3.6.12",
                "registry.k8s.io/pause:3.10.1",
                "registry.k8s.io/kube-apiserver:v1.36.3",
                "registry.k8s.io/kube-controller-manager:v1.36.3",
                "registry.k8s.io/kube-scheduler:v1.36.3",
                "registry.k8s.io/kube-proxy:v1.36.3",
                "ghcr.io/siderolabs/kubelet:v1.36.3",
            ],
        ],
    ])(
        "without talosctl, Talos %s gets its own release's set, as its source has it",
        (version, set) => {
            const chosen = keptFor(version);
            expect(chosen.source).toBe(
                `data/talos-images.json (Talos ${version}; talosctl (${absent}) not found)`,
            );
            expect(chosen.notice).toBeUndefined();
            expect(
                chosen.images.filter((image) => !image.startsWith("factory.talos.dev/")),
            ).toEqual(set);
        },
    );

    test("an unlisted patch gets the newest listed of its minor, saying so; an unknown minor is an error", () => {
        const patch = keptFor("v1.13.4");
        expect(patch.source).toBe(
            "data/talos-images.json (Talos v1.13.9; talosctl (/nonexistent/talosctl) not found)",
        );
        expect(patch.notice).toBe(
            "pullthrough: Talos v1.13.4 has no image set in data/talos-images.json and talosctl (/nonexistent/talosctl) not found: warming v1.13.9's, the newest 1.13 release listed",
        );
        // Its own installer and Kubernetes images stay retaggable as before.
        expect(keptFor("v1.11.3").images).toContain("ghcr.io/siderolabs/installer:v1.11.3");
        expect(() => keptFor("v1.10.2")).toThrow(
            'pullthrough:prewarm: "talos" for Talos v1.10.2 needs talosctl (talosctl (/nonexistent/talosctl) not found): data/talos-images.json lists v1.11.0, v1.11.6, v1.12.0, v1.12.11, v1.13.0, v1.13.9, v1.14.0-rc.1, and image sets differ between minor releases. Install talosctl v1.10.2, or list the images in prewarm',
        );
    });

    test("docker clusters warm their node image too, of talosVersion or the chosen release", () => {
        expect(
            imageSet({ talosctl: absent, provisioner: docker, talosVersion: "v1.12.11" }).images,
        ).toContain("ghcr.io/siderolabs/talos:v1.12.11");
        expect(imageSet({ talosctl: absent, provisioner: docker }).images.at(-1)).toBe(
            "ghcr.io/siderolabs/talos:v1.13.9",
        );
    });

    test("a 1.12+ QEMU cluster also gets the image-factory installer its nodes install from", () => {
        const installer = (version: string) =>
            `factory.talos.dev/metal-installer/${emptySchematicId}:${version}`;
        const talosctl = talosctlStandIn("v1.12.1", { images: ["registry.k8s.io/pause:3.10"] });
        expect(imageSet({ talosctl, provisioner: "qemu" }).images).toEqual([
            "registry.k8s.io/pause:3.10",
            installer("v1.12.1"),
        ]);
        const pinned = imageSet({
            talosctl,
            provisioner: "qemu",
            talosVersion: "v1.13.0",
        });
        expect(pinned.images).toContain(installer("v1.13.0"));
        // Docker nodes install nothing (they run the node image); 1.7–1.11 QEMU lists its installer
        // in image default.
        expect(imageSet({ talosctl, provisioner: docker }).images).toEqual([
            "registry.k8s.io/pause:3.10",
            "ghcr.io/siderolabs/talos:v1.12.1",
        ]);
        const older = talosctlStandIn("v1.11.0", { images: ["registry.k8s.io/pause:3.10"] });
        expect(imageSet({ talosctl: older, provisioner: "qemu" }).images).toEqual([
            "registry.k8s.io/pause:3.10",
        ]);
    });

    test("the empty schematic's ID is the sha256 of its YAML", () => {
        const id = createHash("sha256").update("customization: {}\n").digest("hex");
        expect(emptySchematicId).toBe(id);
    });
});

describe("verify --deep --repair's report", () => {
    const repair = {
        registry: "ghcr.io",
        remote: "https://ghcr.io",
        removed: [`sha256:${"a".repeat(64)}`],
        images: ["ghcr.io/siderolabs/flannel:v0.27.4"],
    };

    test("online: the next pull fetches the images again", () => {
        expect(formatRepairs([{ ...repair, offline: false }])).toBe(
            "Removed 1 corrupt blob from the ghcr.io cache; ghcr.io/siderolabs/flannel:v0.27.4 will be fetched again from https://ghcr.io on the next pull.",
        );
    });

    test("offline: it says which images can no longer be served, and until when", () => {
        expect(formatRepairs([{ ...repair, offline: true }])).toBe(
            "Removed 1 corrupt blob from the ghcr.io cache. It serves offline: ghcr.io/siderolabs/flannel:v0.27.4 cannot be served until https://ghcr.io answers.",
        );
    });
});

describe("what a failed docker command says", () => {
    test("one line: the last thing its stderr said, never a dump of a container's output", () => {
        const dump = [
            "/docker-entrypoint.sh: Configuration complete; ready for start up",
            '2026/12/07 09:30:50 [notice] 1#1: using the "epoll" event method',
            "2026/12/07 09:30:50 [notice] 1#1: start worker processes",
            "",
            "the front's ledger did not write its record within 5 s",
            "",
        ].join("\n");
        expect(oneLineCause(dump, "Command failed")).toBe(
            "the front's ledger did not write its record within 5 s",
        );
        expect(oneLineCause("", "Command failed: docker logs x\nmore")).toBe(
            "Command failed: docker logs x",
        );
        expect(oneLineCause("x".repeat(1000), "")).toHaveLength(300);
    });

    test("an interrupted tool exits as the shell expects: 130 for SIGINT, 143 for SIGTERM", () => {
        expect(new Interrupted("SIGINT").exitCode).toBe(130);
        expect(new Interrupted("SIGTERM").exitCode).toBe(143);
    });
});
