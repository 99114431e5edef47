/**
 * An image as a cache's storage holds it, read from the storage listing and the bytes of its
 * manifests: what `export` carries. Pure: tools/export.ts reads the listing and the manifests.
 *
 * An image is held when the registry would serve it with no network: its tag (or digest) names a
 * manifest revision of the repository, and every config and layer it needs is linked into the
 * repository and stored whole (the listed size is the descriptor's).
 */
import { ImageReference } from "./image-reference";
import { Platform, formatPlatform, matchesPlatform } from "./images";
import { Descriptor, Manifest } from "./oci";
import { Storage } from "./storage-layout";

export interface HeldImage {
    image: ImageReference;
    /** The top manifest first, then the platform manifests carried (for an index). */
    manifests: Manifest[];
    /** Configs and layers, each once. */
    blobs: Descriptor[];
    /** The platforms carried, for an index; empty for a single-platform image. */
    platforms: string[];
}

/** What a listing says of the storage: blobs and repositories. */
export type StorageListing = Pick<Storage, "blobs" | "repositories">;

/** The top manifest `image` names in the listing, if the repository holds it. */
function heldTop(listing: StorageListing, image: ImageReference): string | undefined {
    const repository = listing.repositories.get(image.repository);
    const digest = image.digest ?? repository?.tags.get(image.tag!)?.digest;
    return digest && repository?.revisions.has(digest) && listing.blobs.has(digest)
        ? digest
        : undefined;
}

/**
 * Resolves `image` in one cache's storage.
 *
 * @param manifests the manifests of the image's repository the storage holds, by digest
 * @param platforms of an index, the platforms to carry (all it holds when undefined); each must be held
 * @returns the image, or why it is not held
 */
export function resolveHeldImage(
    listing: StorageListing,
    manifests: ReadonlyMap<string, Manifest>,
    image: ImageReference,
    platforms: readonly Platform[] | undefined,
): HeldImage | { notHeld: string } {
    const repository = listing.repositories.get(image.repository);
    const topDigest = heldTop(listing, image);
    const top = topDigest === undefined ? undefined : manifests.get(topDigest);
    if (!repository || !top) return { notHeld: "not in the cache" };
    const held = (digest: string) =>
        repository.revisions.has(digest) && manifests.has(digest)
            ? manifests.get(digest)
            : undefined;
    const carried = top.manifests.filter(
        (entry) =>
            held(entry.digest) &&
            (!platforms || platforms.some((platform) => matchesPlatform(entry.platform, platform))),
    );
    if (top.isIndex) {
        const missing = (platforms ?? []).filter(
            (platform) => !carried.some((entry) => matchesPlatform(entry.platform, platform)),
        );
        if (missing.length > 0)
            return { notHeld: `not held for ${missing.map(formatPlatform).join(", ")}` };
        if (carried.length === 0) return { notHeld: "none of its platforms is held" };
    }
    const children = carried.map((entry) => held(entry.digest)!);
    const blobs = [
        ...new Map(
            (top.isIndex ? children : [top])
                .flatMap((manifest) => manifest.blobs)
                .map((blob) => [blob.digest, blob]),
        ).values(),
    ];
    const absent = blobs.filter(
        (blob) =>
            !repository.layers.has(blob.digest) ||
            listing.blobs.get(blob.digest)?.size !== blob.size,
    );
    if (absent.length > 0)
        return {
            notHeld: `${absent.length} of ${blobs.length} blobs not in the cache (${absent[0].digest.slice(0, 19)}…)`,
        };
    return {
        image,
        manifests: [top, ...children],
        blobs,
        platforms: top.isIndex
            ? carried.flatMap((entry) => (entry.platform ? [formatPlatform(entry.platform)] : []))
            : [],
    };
}
