/**
 * A generated image set shaped like what a Talos cluster pulls at boot, plus a first workload.
 *
 * Layer counts and compressed sizes (linux/amd64) approximate the real images at the versions
 * named, as their registries list them (Docker Hub, ghcr.io, registry.k8s.io tag pages, rounded).
 * They were not re-measured here: this machine has no route to any registry. What matters for the
 * bench is the shape: one large image (kubelet), several mid-size ones, many small layers, and
 * the distroless base layers the control-plane images share.
 */
import { image, layer } from "../harness/oci";
import { FixtureImage } from "../harness/upstreams";

const MB = 1_000_000;

interface Shape {
    registry: string;
    repository: string;
    tag: string;
    /** Compressed layer sizes in MB, base first. */
    layers: number[];
    /** Leading layers shared with other images of the same base. */
    base?: "distroless";
}

/** distroless/static base of the Kubernetes control-plane images: small, shared layers. */
const distrolessBase = [0.1, 0.3, 0.1, 0.6, 0.1];

const talosClusterShapes: Shape[] = [
    { registry: "ghcr.io", repository: "siderolabs/kubelet", tag: "v1.34.1", layers: [30, 45, 28] },
    {
        registry: "ghcr.io",
        repository: "siderolabs/flannel",
        tag: "v0.27.4",
        layers: [3.4, 7.8, 1.2],
    },
    {
        registry: "registry.k8s.io",
        repository: "kube-apiserver",
        tag: "v1.34.1",
        layers: [...distrolessBase, 27.5],
        base: "distroless",
    },
    {
        registry: "registry.k8s.io",
        repository: "kube-controller-manager",
        tag: "v1.34.1",
        layers: [...distrolessBase, 21.9],
        base: "distroless",
    },
    {
        registry: "registry.k8s.io",
        repository: "kube-scheduler",
        tag: "v1.34.1",
        layers: [...distrolessBase, 16.8],
        base: "distroless",
    },
    {
        registry: "registry.k8s.io",
        repository: "kube-proxy",
        tag: "v1.34.1",
        layers: [0.8, 24.1, 4.3, 1.1],
    },
    {
        registry: "registry.k8s.io",
        repository: "coredns/coredns",
        tag: "v1.12.3",
        layers: [0.1, 0.3, 0.1, 0.6, 0.1, 21.3],
    },
    {
        registry: "registry.k8s.io",
        repository: "etcd",
        tag: "3.6.4-0",
        layers: [0.1, 0.3, 0.1, 0.6, 0.1, 2.1, 8.9, 9.6],
    },
    { registry: "registry.k8s.io", repository: "pause", tag: "3.10", layers: [0.3] },
    {
        registry: "docker.io",
        repository: "library/nginx",
        tag: "1.27",
        layers: [28.2, 40.1, 0.6, 0.4, 0.9, 1.2, 0.5],
    },
];

/** The set at `scale` (1 = the sizes above, about 300 MB). Same scale, same bytes, every run. */
export function benchImages(scale: number): FixtureImage[] {
    return talosClusterShapes.map((shape) => {
        const layers = shape.layers.map((megabytes, index) => {
            const shared = shape.base !== undefined && index < distrolessBase.length;
            const name = shared
                ? `${shape.base}-${index}`
                : `${shape.repository}-${shape.tag}-${index}`;
            return layer(
                `${name}@${scale}`,
                Math.max(4096, Math.round((megabytes * MB * scale) / 4) * 4),
            );
        });
        return {
            registry: shape.registry,
            repository: shape.repository,
            tag: shape.tag,
            artifact: image(layers),
        };
    });
}
