/**
 * Talos's Image Cache, as `talosctl image cache-create` writes it and `cache-serve` (and a node's
 * registryd) reads it; read from siderolabs/talos at v1.12.0: `pkg/imager/cache/cache.go` writes,
 * `internal/app/machined/pkg/system/services/registry` reads.
 *
 * The flat layout:
 *
 *     blob/sha256-<hex>                                    configs and layers
 *     manifests/<registry>/<repository>/reference/<tag>    the manifest the tag names, as served
 *     manifests/<registry>/<repository>/digest/sha256-<hex> it again by digest, and each platform's
 *
 * with a `host:port` registry written `host_port_` (cache.go `rewriteRegistry`: the cache may sit
 * on vfat). The OCI form is one image whose single layer is a tar of that tree, for one platform.
 * Pure: host/talos-cache.ts writes and reads the files.
 */
import { hexOf, isDigest } from "./digest";
import { ImageReference, parseImageReference } from "./image-reference";
import { Platform } from "./images";
import { Descriptor, mediaTypes } from "./oci";

export const talosCacheFolders = { blobs: "blob", manifests: "manifests" } as const;

/** A digest as the cache names its files: `sha256-<hex>`. */
export const talosDigestName = (digest: string) => `sha256-${hexOf(digest)}`;

/** The folder of a registry's manifests: `host:port` becomes `host_port_`. */
export function talosRegistryFolder(registry: string): string {
    const colon = registry.lastIndexOf(":");
    return colon > 0 ? `${registry.slice(0, colon)}_${registry.slice(colon + 1)}_` : registry;
}

/** The registry a manifests folder stands for (registry.go `createRegistryWithPort`). */
export function registryOfTalosFolder(folder: string): string {
    const [host, port, rest] = splitThree(folder, "_");
    return rest === undefined ? folder : `${host}:${port}${rest}`;
}

/** Go's `strings.SplitN(s, sep, 3)`. */
function splitThree(text: string, separator: string): [string, string?, string?] {
    const first = text.indexOf(separator);
    if (first < 0) return [text];
    const second = text.indexOf(separator, first + 1);
    if (second < 0) return [text.slice(0, first), text.slice(first + 1)];
    return [text.slice(0, first), text.slice(first + 1, second), text.slice(second + 1)];
}

/** Where each file of an image goes in the flat layout. */
export const talosCachePaths = {
    blob: (digest: string) => `${talosCacheFolders.blobs}/${talosDigestName(digest)}`,
    repository: (image: Pick<ImageReference, "registry" | "repository">) =>
        `${talosCacheFolders.manifests}/${talosRegistryFolder(image.registry)}/${image.repository}`,
    reference: (image: Pick<ImageReference, "registry" | "repository">, tag: string) =>
        `${talosCachePaths.repository(image)}/reference/${tag}`,
    manifest: (image: Pick<ImageReference, "registry" | "repository">, digest: string) =>
        `${talosCachePaths.repository(image)}/digest/${talosDigestName(digest)}`,
};

/** A file of the flat layout, by its path there: a blob, a tag's manifest or a manifest by digest. */
export type TalosCacheFile =
    | { kind: "blob"; digest: string }
    | { kind: "reference"; image: ImageReference }
    | { kind: "manifest"; image: ImageReference; digest: string }
    | { kind: "other" };

/** What a path of the flat layout holds. */
export function parseTalosCachePath(path: string): TalosCacheFile {
    const parts = path.split("/");
    const digestOf = (name: string) => {
        const digest = `sha256:${name.slice("sha256-".length)}`;
        return name.startsWith("sha256-") && isDigest(digest) ? digest : undefined;
    };
    if (parts[0] === talosCacheFolders.blobs && parts.length === 2) {
        const digest = digestOf(parts[1]);
        return digest ? { kind: "blob", digest } : { kind: "other" };
    }
    if (parts[0] !== talosCacheFolders.manifests || parts.length < 5) return { kind: "other" };
    const [registryFolder, ...rest] = parts.slice(1);
    const [name, kind] = [rest.at(-1)!, rest.at(-2)];
    const repository = rest.slice(0, -2).join("/");
    const registry = registryOfTalosFolder(registryFolder);
    if (kind === "reference") {
        const image = parseImageReference(`${registry}/${repository}:${name}`);
        return image && image.repository === repository
            ? { kind: "reference", image }
            : { kind: "other" };
    }
    const digest = kind === "digest" ? digestOf(name) : undefined;
    const image = digest && parseImageReference(`${registry}/${repository}@${digest}`);
    return image && digest ? { kind: "manifest", image, digest } : { kind: "other" };
}

/**
 * The OCI form's config (cache.go: an empty image with `OCIManifestSchema1` and `OCIConfigJSON`,
 * its one layer appended; `filemap.Layer` makes that layer with ggcr's `tarball.LayerFromOpener`,
 * which gzips the tree's tar). `diffId` is the digest of the tar before gzip.
 */
export function renderTalosCacheConfig(diffId: string, platform: Platform, created: Date): Buffer {
    return Buffer.from(
        JSON.stringify({
            architecture: platform.architecture,
            os: platform.os,
            created: created.toISOString(),
            rootfs: { type: "layers", diff_ids: [diffId] },
            config: {},
        }),
    );
}

export const ociConfigType = "application/vnd.oci.image.config.v1+json";
export const ociGzipLayer = "application/vnd.oci.image.layer.v1.tar+gzip";

/** The manifest of the OCI form, given its config and layer descriptors. */
export function renderTalosCacheManifest(config: Descriptor, layer: Descriptor): Buffer {
    return Buffer.from(
        JSON.stringify({
            schemaVersion: 2,
            mediaType: mediaTypes.ociManifest,
            config,
            layers: [layer],
        }),
    );
}

/** The OCI form's `index.json`: its one image, for `platform` (ggcr `layout.WithPlatform`). */
export function renderTalosCacheIndex(manifest: Descriptor, platform: Platform): string {
    return `${JSON.stringify({
        schemaVersion: 2,
        mediaType: mediaTypes.ociIndex,
        manifests: [{ ...manifest, platform }],
    })}\n`;
}
