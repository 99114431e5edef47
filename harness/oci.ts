/**
 * Small generated container images and a minimal registry push client, so fixture upstreams can
 * be seeded without downloading anything. Layers are real gzipped tars (containerd unpacks them)
 * filled with seeded pseudo-random bytes, so they neither compress away nor change between runs.
 */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { tarEnd, tarHeader, tarPadding } from "../core/tar";

export const mediaTypes = {
    dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
    dockerConfig: "application/vnd.docker.container.image.v1+json",
    dockerLayer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ociManifest: "application/vnd.oci.image.manifest.v1+json",
    ociIndex: "application/vnd.oci.image.index.v1+json",
    ociConfig: "application/vnd.oci.image.config.v1+json",
    ociLayer: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

export interface Blob {
    digest: string;
    bytes: Buffer;
}

/** A manifest or index with every blob it needs, ready to push under a repository and tag. */
export interface ImageArtifact {
    mediaType: string;
    manifest: Blob;
    /** Config and layer blobs, of this manifest and (for an index) of its children. */
    blobs: Blob[];
    /** Child manifests of an index, pushed by digest before the index itself. */
    children: ImageArtifact[];
}

export const sha256 = (bytes: Buffer) =>
    `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
const blobOf = (bytes: Buffer): Blob => ({ digest: sha256(bytes), bytes });

/** Deterministic, incompressible bytes (xorshift32) for a named layer. */
function pseudoRandomBytes(seed: string, size: number): Buffer {
    let state = createHash("sha256").update(seed).digest().readUInt32LE(0) || 1;
    const bytes = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4) {
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        state >>>= 0;
        bytes.writeUInt32LE(state, i);
    }
    return bytes;
}

/** A one-file tar archive. */
const tarWithOneFile = (name: string, content: Buffer) =>
    Buffer.concat([
        tarHeader(name, content.length),
        content,
        Buffer.alloc(tarPadding(content.length)),
        tarEnd,
    ]);

export interface Layer {
    blob: Blob;
    diffId: string;
}

/** A layer holding one file of `size` bytes; the same name always gives the same layer. */
export function layer(name: string, size: number): Layer {
    const tar = tarWithOneFile(`${name}.bin`, pseudoRandomBytes(name, size));
    // Level 1: the bytes are random, so harder compression only costs time.
    return { blob: blobOf(gzipSync(tar, { level: 1 })), diffId: sha256(tar) };
}

/** A single-platform image manifest in Docker schema 2 or OCI form. */
export function image(
    layers: Layer[],
    { oci = false, architecture = "amd64" }: { oci?: boolean; architecture?: string } = {},
): ImageArtifact {
    const config = blobOf(
        Buffer.from(
            JSON.stringify({
                architecture,
                os: "linux",
                config: { Cmd: ["/bin/true"] },
                rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
            }),
        ),
    );
    const mediaType = oci ? mediaTypes.ociManifest : mediaTypes.dockerManifest;
    const manifest = {
        schemaVersion: 2,
        mediaType,
        config: {
            mediaType: oci ? mediaTypes.ociConfig : mediaTypes.dockerConfig,
            digest: config.digest,
            size: config.bytes.length,
        },
        layers: layers.map((l) => ({
            mediaType: oci ? mediaTypes.ociLayer : mediaTypes.dockerLayer,
            digest: l.blob.digest,
            size: l.blob.bytes.length,
        })),
    };
    return {
        mediaType,
        manifest: blobOf(Buffer.from(JSON.stringify(manifest))),
        blobs: [config, ...layers.map((l) => l.blob)],
        children: [],
    };
}

/** An OCI index over per-architecture images. */
export function index(platforms: Record<string, ImageArtifact>): ImageArtifact {
    const children = Object.values(platforms);
    const manifest = {
        schemaVersion: 2,
        mediaType: mediaTypes.ociIndex,
        manifests: Object.entries(platforms).map(([architecture, child]) => ({
            mediaType: child.mediaType,
            digest: child.manifest.digest,
            size: child.manifest.bytes.length,
            platform: { architecture, os: "linux" },
        })),
    };
    return {
        mediaType: mediaTypes.ociIndex,
        manifest: blobOf(Buffer.from(JSON.stringify(manifest))),
        blobs: [],
        children,
    };
}

/** Every blob an artifact references, children included, without duplicates. */
export function allBlobs(artifact: ImageArtifact): Blob[] {
    const unique = new Map<string, Blob>();
    for (const blob of [...artifact.blobs, ...artifact.children.flatMap(allBlobs)])
        unique.set(blob.digest, blob);
    return [...unique.values()];
}

async function expectStatus(response: Response, accepted: number[], what: string) {
    if (!accepted.includes(response.status))
        throw new Error(`${what}: HTTP ${response.status} ${await response.text()}`);
}

/** Pushes an artifact to a plain registry (`baseUrl` like `http://127.0.0.1:5000`) as `repository:tag`. */
export async function push(
    baseUrl: string,
    repository: string,
    tag: string,
    artifact: ImageArtifact,
): Promise<void> {
    for (const blob of allBlobs(artifact)) {
        const head = await fetch(`${baseUrl}/v2/${repository}/blobs/${blob.digest}`, {
            method: "HEAD",
        });
        if (head.status === 200) continue;
        const start = await fetch(`${baseUrl}/v2/${repository}/blobs/uploads/`, { method: "POST" });
        await expectStatus(start, [202], `start upload of ${blob.digest}`);
        const location = new URL(start.headers.get("location")!, baseUrl);
        location.searchParams.set("digest", blob.digest);
        const put = await fetch(location, {
            method: "PUT",
            body: new Uint8Array(blob.bytes),
            headers: { "content-type": "application/octet-stream" },
        });
        await expectStatus(put, [201], `upload of ${blob.digest}`);
    }
    for (const child of artifact.children)
        await putManifest(baseUrl, repository, child.manifest.digest, child);
    await putManifest(baseUrl, repository, tag, artifact);
}

async function putManifest(
    baseUrl: string,
    repository: string,
    reference: string,
    artifact: ImageArtifact,
) {
    const response = await fetch(`${baseUrl}/v2/${repository}/manifests/${reference}`, {
        method: "PUT",
        body: new Uint8Array(artifact.manifest.bytes),
        headers: { "content-type": artifact.mediaType },
    });
    await expectStatus(response, [201], `manifest ${repository}:${reference}`);
}
