/**
 * The OCI shapes Pullthrough reads and writes: manifests and indexes (OCI and Docker schema 2),
 * and the image layout of a bundle (image-spec `image-layout.md`: `oci-layout`, `index.json`,
 * `blobs/sha256/<hex>`). Pure: the tools and the `up`-time checks share one reading of each.
 */
import { ImageReference, parseImageReference } from "./image-reference";
import { hexOf, isDigest, sha256Digest } from "./digest";
import { Platform } from "./images";

export const mediaTypes = {
    ociIndex: "application/vnd.oci.image.index.v1+json",
    dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
    ociManifest: "application/vnd.oci.image.manifest.v1+json",
    dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
} as const;

const indexTypes: readonly string[] = [mediaTypes.ociIndex, mediaTypes.dockerManifestList];

export interface Descriptor {
    mediaType: string;
    digest: string;
    size: number;
    platform?: Platform;
    annotations?: Record<string, string>;
}

export interface Manifest {
    digest: string;
    mediaType: string;
    size: number;
    isIndex: boolean;
    /** Platform manifests of an index; empty for an image manifest. */
    manifests: Descriptor[];
    /** Config and layers of an image manifest; empty for an index. */
    blobs: Descriptor[];
    /** The document as stored: what its digest is of. */
    bytes: Buffer;
}

/**
 * Reads a manifest or index. The media type is the document's own, else the one it was served
 * or described with, else what its shape says (an OCI document may leave `mediaType` out).
 *
 * @throws SyntaxError when `body` is not a JSON object
 */
export function parseManifest(body: Buffer, servedAs?: string | null): Manifest {
    const json = JSON.parse(body.toString("utf8")) as {
        mediaType?: string;
        manifests?: Descriptor[];
        config?: Descriptor;
        layers?: Descriptor[];
    };
    if (typeof json !== "object" || json === null) throw new SyntaxError("not a JSON object");
    const mediaType =
        json.mediaType ??
        servedAs ??
        (Array.isArray(json.manifests) ? mediaTypes.ociIndex : mediaTypes.ociManifest);
    const isIndex = indexTypes.includes(mediaType);
    return {
        digest: sha256Digest(body),
        mediaType,
        size: body.length,
        isIndex,
        manifests: isIndex ? (json.manifests ?? []) : [],
        blobs: isIndex ? [] : [...(json.config ? [json.config] : []), ...(json.layers ?? [])],
        bytes: body,
    };
}

// ---------------------------------------------------------------------------------------------
// Image layout (bundles)
// ---------------------------------------------------------------------------------------------

/** The `oci-layout` file every image layout starts with. */
export const ociLayoutFile = "oci-layout";
export const ociLayoutVersion = "1.0.0";
export const indexFile = "index.json";

/** Where a blob lives in an image layout. */
export const layoutBlobPath = (digest: string) => `blobs/sha256/${hexOf(digest)}`;

/**
 * The reference annotations of a bundle entry. image-spec's `ref.name` (what `skopeo copy
 * oci:DIR:REF` selects by, and whose grammar admits a full reference) and containerd's image
 * name (what `ctr image import` names the image), both the full reference, so one layout carries
 * every registry's images and each tool finds them by the name a node asks for.
 */
export const refNameAnnotation = "org.opencontainers.image.ref.name";
export const containerdNameAnnotation = "io.containerd.image.name";

export interface OciIndex {
    schemaVersion: number;
    mediaType?: string;
    manifests: Descriptor[];
}

/** One image a bundle carries: its full reference and its top manifest. */
export interface BundleEntry {
    reference: string;
    manifest: Pick<Descriptor, "mediaType" | "digest" | "size">;
}

/** The bundle's `index.json`: an entry per reference, sorted, so equal bundles are equal bytes. */
export function renderBundleIndex(entries: readonly BundleEntry[]): string {
    const manifests = [...entries]
        .sort((a, b) => a.reference.localeCompare(b.reference))
        .map(({ reference, manifest }) => ({
            mediaType: manifest.mediaType,
            digest: manifest.digest,
            size: manifest.size,
            annotations: {
                [containerdNameAnnotation]: reference,
                [refNameAnnotation]: reference,
            },
        }));
    return `${JSON.stringify({ schemaVersion: 2, mediaType: mediaTypes.ociIndex, manifests }, null, 2)}\n`;
}

export const renderOciLayout = () =>
    `${JSON.stringify({ imageLayoutVersion: ociLayoutVersion })}\n`;

/**
 * Reads an `index.json`.
 *
 * @returns the index, or why it is not one
 */
export function parseBundleIndex(text: string): OciIndex | string {
    let json: Partial<OciIndex>;
    try {
        json = JSON.parse(text);
    } catch {
        return "index.json is not JSON";
    }
    if (json?.schemaVersion !== 2 || !Array.isArray(json.manifests))
        return "index.json is not an OCI image index (schemaVersion 2 with a manifests list)";
    const bad = json.manifests.findIndex(
        (entry) =>
            typeof entry?.digest !== "string" ||
            !isDigest(entry.digest) ||
            !Number.isSafeInteger(entry.size),
    );
    if (bad >= 0) return `index.json entry ${bad + 1} has no sha256 digest and size`;
    return json as OciIndex;
}

/** A registry host as the first part of a reference names one (Docker's rule). */
const namesRegistry = (reference: string) => {
    const first = reference.split("/")[0];
    return reference.includes("/") && (/[.:]/.test(first) || first === "localhost");
};

/**
 * The full reference of an index entry: containerd's annotation, else image-spec's `ref.name`.
 * Either must name its registry (`docker.io/library/nginx:1.27`): a bare tag such as `1.27`, or
 * `nginx:1.27`, does not say which cache an image belongs to.
 *
 * @returns the reference, or why the entry has none
 */
export function entryReference(entry: Descriptor): ImageReference | string {
    const annotations = entry.annotations ?? {};
    const named = annotations[containerdNameAnnotation] ?? annotations[refNameAnnotation];
    if (named === undefined)
        return `has no reference annotation (${refNameAnnotation} or ${containerdNameAnnotation})`;
    const reference = namesRegistry(named) ? parseImageReference(named) : undefined;
    if (!reference)
        return `is named ${JSON.stringify(named)}, not a full reference such as docker.io/library/nginx:1.27`;
    // The entry's own digest is what is imported; a digest in the name must agree.
    if (reference.digest && reference.digest !== entry.digest)
        return `is named ${named} but is ${entry.digest}`;
    return reference;
}
