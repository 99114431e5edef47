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
import { FixtureImage, byTag } from "../harness/upstreams";

const MB = 1_000_000;

/**
 * When a Talos node pulls an image at boot (siderolabs/talos v1.12.0); a node pulls the images of
 * one step at once and starts the next step once they are in:
 * 1. machined's kubelet and etcd services, which both depend only on `cri` and each pull their
 *    image in their PreFunc (internal/app/machined/pkg/system/services/kubelet.go, etcd.go);
 * 2. the sandbox (pause) image, before any pod's containers;
 * 3. the static pods' images, which kubelet pulls in parallel: Talos sets `serializeImagePulls:
 *    false` (internal/app/machined/pkg/controllers/k8s/kubelet_spec.go);
 * 4. the add-ons' (kube-proxy, flannel, CoreDNS), once the API server answers;
 * 5. the first workload.
 */
export type BootStep = 1 | 2 | 3 | 4 | 5;

interface Shape {
    registry: string;
    repository: string;
    tag: string;
    step: BootStep;
    /** Compressed layer sizes in MB, base first. */
    layers: number[];
    /** Leading layers shared with other images of the same base. */
    base?: "distroless";
}

/** distroless/static base of the Kubernetes control-plane images: small, shared layers. */
const distrolessBase = [0.1, 0.3, 0.1, 0.6, 0.1];

const talosClusterShapes: Shape[] = [
    {
        registry: "ghcr.io",
        repository: "siderolabs/kubelet",
        step: 1,
        tag: "v1.34.1",
        layers: [30, 45, 28],
    },
    {
        registry: "ghcr.io",
        repository: "siderolabs/flannel",
        step: 4,
        tag: "v0.27.4",
        layers: [3.4, 7.8, 1.2],
    },
    {
        registry: "registry.k8s.io",
        repository: "kube-apiserver",
        step: 3,
        tag: "v1.34.1",
        layers: [...distrolessBase, 27.5],
        base: "distroless",
    },
    {
        registry: "registry.k8s.io",
        repository: "kube-controller-manager",
        step: 3,
        tag: "v1.34.1",
        layers: [...distrolessBase, 21.9],
        base: "distroless",
    },
    {
        registry: "registry.k8s.io",
        repository: "kube-scheduler",
        step: 3,
        tag: "v1.34.1",
        layers: [...distrolessBase, 16.8],
        base: "distroless",
    },
    {
        registry: "registry.k8s.io",
        repository: "kube-proxy",
        step: 4,
        tag: "v1.34.1",
        layers: [0.8, 24.1, 4.3, 1.1],
    },
    {
        registry: "registry.k8s.io",
        repository: "coredns/coredns",
        step: 4,
        tag: "v1.12.3",
        layers: [0.1, 0.3, 0.1, 0.6, 0.1, 21.3],
    },
    {
        registry: "registry.k8s.io",
        repository: "etcd",
        step: 1,
        tag: "3.6.4-0",
        layers: [0.1, 0.3, 0.1, 0.6, 0.1, 2.1, 8.9, 9.6],
    },
    { registry: "registry.k8s.io", repository: "pause", step: 2, tag: "3.10", layers: [0.3] },
    {
        registry: "docker.io",
        repository: "library/nginx",
        step: 5,
        tag: "1.27",
        layers: [28.2, 40.1, 0.6, 0.4, 0.9, 1.2, 0.5],
    },
];

/** A fixture image and the boot step a Talos node pulls it in. */
export interface BenchImage extends FixtureImage {
    step: BootStep;
}

/** The set at `scale` (1 = the sizes above, about 300 MB). Same scale, same bytes, every run. */
export function benchImages(scale: number): BenchImage[] {
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
            step: shape.step,
            artifact: image(layers),
        };
    });
}

/**
 * How a node pulls the set: `talos`, as a Talos node boots (`BootStep`); `serial`, one image
 * after another in the set's order (this bench before 2026-12-07, and `--https`).
 */
export type PullOrder = "talos" | "serial";

/** The references a node pulls, step by step; the images of one step at once. */
export function pullSteps(images: readonly BenchImage[], order: PullOrder): string[][] {
    if (order === "serial") return images.map((image) => [byTag(image)]);
    const steps = [...new Set(images.map((image) => image.step))].sort((a, b) => a - b);
    return steps.map((step) => images.filter((image) => image.step === step).map(byTag));
}
