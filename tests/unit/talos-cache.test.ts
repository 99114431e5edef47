/**
 * Talos's image-cache layout without an engine: the names cache-create gives registries and
 * digests (siderolabs/talos v1.12.0 pkg/imager/cache/cache.go), read back as registryd reads
 * them, and a flat cache opened for import.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import {
    parseTalosCachePath,
    registryOfTalosFolder,
    talosCachePaths,
    talosRegistryFolder,
} from "../../core/talos-cache";
import { parseImageReference } from "../../core/image-reference";
import { planImport } from "../../core/bundle";
import { bundleToImport, openBundle } from "../../host/bundles";
import { image, index, layer } from "../../harness/oci";

test("a registry with a port is a folder host_port_ (vfat has no ':'), and reads back", () => {
    expect(talosRegistryFolder("registry.local:5000")).toBe("registry.local_5000_");
    expect(registryOfTalosFolder("registry.local_5000_")).toBe("registry.local:5000");
    expect(talosRegistryFolder("docker.io")).toBe("docker.io");
    expect(registryOfTalosFolder("registry.k8s.io")).toBe("registry.k8s.io");
});

test("each file's place, and what a place holds", () => {
    const nginx = parseImageReference("nginx:1.27")!;
    const digest = `sha256:${"ab".repeat(32)}`;
    expect(talosCachePaths.reference(nginx, "1.27")).toBe(
        "manifests/docker.io/library/nginx/reference/1.27",
    );
    expect(talosCachePaths.manifest(nginx, digest)).toBe(
        `manifests/docker.io/library/nginx/digest/sha256-${"ab".repeat(32)}`,
    );
    expect(talosCachePaths.blob(digest)).toBe(`blob/sha256-${"ab".repeat(32)}`);
    expect(parseTalosCachePath("manifests/registry.local_5000_/team/app/reference/v1")).toEqual({
        kind: "reference",
        image: parseImageReference("registry.local:5000/team/app:v1"),
    });
    expect(parseTalosCachePath(talosCachePaths.blob(digest))).toEqual({ kind: "blob", digest });
    expect(parseTalosCachePath("blob/sha256-short")).toEqual({ kind: "other" });
    expect(parseTalosCachePath("manifests/docker.io/library/nginx/other/x")).toEqual({
        kind: "other",
    });
});

describe("a flat cache opened for import", () => {
    let dir: string;
    beforeEach(() => {
        dir = mkdtempSync(path.join(tmpdir(), "pt-talos-cache-"));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    test("each tag is an image named by its full reference; its platform and blobs are found", async () => {
        const multi = index({
            amd64: image([layer("talos-cache-unit-amd64", 1024)], { oci: true }),
        });
        const ref = parseImageReference("ghcr.io/siderolabs/flannel:v0.27.4")!;
        const write = (file: string, bytes: Buffer) => {
            mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
            writeFileSync(path.join(dir, file), bytes);
        };
        write(talosCachePaths.reference(ref, "v0.27.4"), multi.manifest.bytes);
        write(talosCachePaths.manifest(ref, multi.manifest.digest), multi.manifest.bytes);
        const [amd64] = multi.children;
        write(talosCachePaths.manifest(ref, amd64.manifest.digest), amd64.manifest.bytes);
        for (const blob of amd64.blobs) write(talosCachePaths.blob(blob.digest), blob.bytes);

        const bundle = openBundle(dir);
        const manifests = new Map(
            await Promise.all(
                [multi.manifest.digest, amd64.manifest.digest].map(
                    async (digest) => [digest, await bundle.read(digest)] as const,
                ),
            ),
        );
        const plan = planImport(bundle.index, manifests, bundle.blobs, ["ghcr.io"]);
        expect(plan.problems).toEqual([]);
        expect(plan.images.map((image) => image.reference.canonical)).toEqual([ref.canonical]);
        expect(plan.images[0].blobs.map((blob) => blob.digest).sort()).toEqual(
            amd64.blobs.map((blob) => blob.digest).sort(),
        );
        // `importFrom` takes it too: its fingerprint changes with what it carries.
        const before = bundleToImport(dir, "/")!.fingerprint;
        write(talosCachePaths.reference(ref, "latest"), multi.manifest.bytes);
        expect(bundleToImport(dir, "/")!.fingerprint).not.toBe(before);
    });
});
