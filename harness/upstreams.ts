/**
 * Fixture upstream registries: plain (non-proxy) registries on a Docker network the test owns,
 * seeded with generated images, standing in for docker.io, registry.k8s.io, ghcr.io and the rest.
 * Their access logs tell how many blobs each one served.
 */
import { registryStorageRoot } from "../core/container-facts";
import { storagePaths } from "../core/storage-layout";
import {
    blobGet,
    countLogLines,
    docker,
    dockerApi,
    fixtureRegistry2Image,
    waitFor,
} from "./docker";
import { ImageArtifact, image, index, layer, push } from "./oci";

export interface FixtureImage {
    registry: string;
    repository: string;
    tag: string;
    artifact: ImageArtifact;
}

/** Reference by tag, as a node asks for it: `docker.io/library/layers:v1`. */
export const byTag = (image: FixtureImage) => `${image.registry}/${image.repository}:${image.tag}`;

/** Where a cache stores a single-platform fixture: its repository's folder and each blob's. */
export const storedFolders = (image: FixtureImage) => [
    `${registryStorageRoot}/${storagePaths.repository(image.repository)}`,
    ...[image.artifact.manifest, ...image.artifact.blobs].map(
        ({ digest }) => `${registryStorageRoot}/${storagePaths.blob(digest)}`,
    ),
];
/** Reference by digest: `docker.io/library/layers@sha256:…`. */
export const byDigest = (image: FixtureImage) =>
    `${image.registry}/${image.repository}@${image.artifact.manifest.digest}`;

/**
 * About 1.5 MB across three registries: a multi-layer image, a second tag sharing two of its
 * layers, a multi-arch (amd64 + arm64) OCI index, a Docker schema 2 image and an OCI image.
 */
export function fixtureImages(): FixtureImage[] {
    const [base, lib] = [layer("base", 256 << 10), layer("lib", 192 << 10)];
    return [
        {
            registry: "docker.io",
            repository: "library/layers",
            tag: "v1",
            artifact: image([base, lib, layer("app-v1", 128 << 10)]),
        },
        {
            registry: "docker.io",
            repository: "library/layers",
            tag: "v2",
            artifact: image([base, lib, layer("app-v2", 128 << 10)]),
        },
        {
            registry: "docker.io",
            repository: "library/multi",
            tag: "v1",
            artifact: index({
                amd64: image([layer("multi-amd64", 160 << 10)], { oci: true }),
                arm64: image([layer("multi-arm64", 160 << 10)], {
                    oci: true,
                    architecture: "arm64",
                }),
            }),
        },
        {
            registry: "registry.k8s.io",
            repository: "pause",
            tag: "3.9",
            artifact: image([layer("pause", 64 << 10)]),
        },
        {
            registry: "ghcr.io",
            repository: "pullthrough/oci",
            tag: "v1",
            artifact: image([layer("oci-a", 96 << 10), layer("oci-b", 96 << 10)], { oci: true }),
        },
    ];
}

/**
 * Named like `talosctl image k8s-bundle` prints them for Talos 1.12; small generated layers. A mix
 * of OCI (the ghcr.io ones) and Docker schema 2 manifests, as a real cluster's images are.
 */
export function talosLikeImages(): FixtureImage[] {
    const base = layer("talos-base", 48 << 10);
    const named = (registry: string, repository: string, tag: string): FixtureImage => ({
        registry,
        repository,
        tag,
        artifact: image([base, layer(`${repository}-${tag}`, 32 << 10)], {
            oci: registry === "ghcr.io",
        }),
    });
    return [
        named("ghcr.io", "siderolabs/flannel", "v0.26.7"),
        named("registry.k8s.io", "coredns/coredns", "v1.12.1"),
        named("registry.k8s.io", "etcd", "3.5.21-0"),
        named("registry.k8s.io", "kube-apiserver", "v1.34.1"),
        named("registry.k8s.io", "kube-controller-manager", "v1.34.1"),
        named("registry.k8s.io", "kube-scheduler", "v1.34.1"),
        named("registry.k8s.io", "kube-proxy", "v1.34.1"),
        named("ghcr.io", "siderolabs/kubelet", "v1.34.1"),
        named("registry.k8s.io", "pause", "3.10"),
    ];
}

/**
 * The node image docker Talos nodes run, `ghcr.io/siderolabs/talos:<tag>`: one small Docker schema
 * 2 layer, the same for every tag, which this host's Docker daemon can pull and create
 * containers from.
 */
export function talosNodeImage(tag: string): FixtureImage {
    return {
        registry: "ghcr.io",
        repository: "siderolabs/talos",
        tag,
        artifact: image([layer("talos-node", 256 << 10)]),
    };
}

/** The node image as docker nodes ask for it: through the ghcr.io cache's loopback endpoint. */
export const nodeImageThroughCache = (ghcrPort: number, tag: string) =>
    `127.0.0.1:${ghcrPort}/siderolabs/talos:${tag}`;

interface Upstream {
    container: string;
    /** URL caches use on the test network. */
    remote: string;
    /** URL this host seeds through. */
    hostUrl: string;
}

export class FixtureUpstreams {
    private constructor(
        private readonly upstreams: Map<string, Upstream>,
        readonly network: string,
    ) {}

    /** Creates `network` and one plain registry per registry name on it. */
    static async start(network: string, registries: string[]): Promise<FixtureUpstreams> {
        docker("network", "create", network);
        const upstreams = new Map<string, Upstream>();
        for (const registry of registries) {
            const container = `${network}-up-${registry.replace(/[^a-zA-Z0-9]/g, "-")}`;
            docker(
                "run",
                "-d",
                "--name",
                container,
                "--network",
                network,
                "-p",
                "127.0.0.1::5000",
                fixtureRegistry2Image,
            );
            const hostPort = docker("port", container, "5000/tcp").split("\n")[0].split(":").pop();
            upstreams.set(registry, {
                container,
                remote: `http://${container}:5000`,
                hostUrl: `http://127.0.0.1:${hostPort}`,
            });
        }
        const fixtures = new FixtureUpstreams(upstreams, network);
        for (const registry of registries) await fixtures.waitUntilServing(registry);
        return fixtures;
    }

    /** The test network's gateway: a host address its containers can reach. */
    gateway(): string {
        return docker(
            "network",
            "inspect",
            this.network,
            "--format",
            "{{(index .IPAM.Config 0).Gateway}}",
        );
    }

    /** `{registry, remote, port}` per registry, for `localStackConfig`. */
    upstreamsOn(
        ports: Record<string, number>,
    ): { registry: string; remote: string; port: number }[] {
        return [...this.upstreams.keys()].map((registry) => ({
            registry,
            remote: this.get(registry).remote,
            port: ports[registry],
        }));
    }

    get(registry: string): Upstream {
        const upstream = this.upstreams.get(registry);
        if (!upstream) throw new Error(`no fixture upstream for ${registry}`);
        return upstream;
    }

    async seed(images: FixtureImage[]): Promise<void> {
        for (const image of images)
            await push(
                this.get(image.registry).hostUrl,
                image.repository,
                image.tag,
                image.artifact,
            );
    }

    /** Blob downloads (GET …/blobs/sha256:…) the upstream has answered so far, or since a moment. */
    blobRequests(registry: string, since?: Date): number {
        return countLogLines(this.get(registry).container, blobGet, since);
    }

    /** The distinct blobs the upstream has served so far. */
    blobsServed(registry: string): Set<string> {
        return new Set(this.timesServed(registry).keys());
    }

    /** How many times the upstream has sent each blob in full (HTTP 200), by digest. */
    timesServed(registry: string): Map<string, number> {
        const log = docker("logs", this.get(registry).container);
        const counts = new Map<string, number>();
        for (const [, digest, status] of log.matchAll(new RegExp(blobGet.source, "g"))) {
            if (status === "200") counts.set(digest, (counts.get(digest) ?? 0) + 1);
        }
        return counts;
    }

    blobRequestsByRegistry(since?: Date): Record<string, number> {
        return Object.fromEntries(
            [...this.upstreams.keys()].map((registry) => [
                registry,
                this.blobRequests(registry, since),
            ]),
        );
    }

    /** Every request the upstream has answered: its access log lines. */
    requests(registry: string): number {
        return countLogLines(
            this.get(registry).container,
            /"(?:GET|HEAD|POST|PUT|PATCH|DELETE) \//,
        );
    }

    /** Requests for images (manifests, blobs, tags): all but `GET /v2/`, an `auto` cache's probe. */
    contentRequests(registry: string): number {
        return countLogLines(
            this.get(registry).container,
            /"(?:GET|HEAD|POST|PUT|PATCH|DELETE) \/v2\/[^ ]/,
        );
    }

    stop(registry: string): void {
        docker("stop", "-t", "1", this.get(registry).container);
    }

    async start(registry: string): Promise<void> {
        docker("start", this.get(registry).container);
        await this.waitUntilServing(registry);
    }

    private async waitUntilServing(registry: string) {
        const upstream = this.get(registry);
        // The published port may move on restart; ask the engine where it is now.
        await waitFor(`fixture upstream ${registry}`, 20_000, async () => {
            const hostPort = docker("port", upstream.container, "5000/tcp")
                .split("\n")[0]
                .split(":")
                .pop();
            upstream.hostUrl = `http://127.0.0.1:${hostPort}`;
            return (await fetch(`${upstream.hostUrl}/v2/`)).ok ? true : undefined;
        });
    }

    async remove(): Promise<void> {
        for (const { container } of this.upstreams.values()) {
            await dockerApi("DELETE", `/containers/${container}?force=true&v=true`).catch(
                () => undefined,
            );
        }
        await dockerApi("DELETE", `/networks/${this.network}`).catch(() => undefined);
    }
}
