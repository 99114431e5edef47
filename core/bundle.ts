/**
 * What an import puts where: each bundle entry's reference, the cache it goes to, and the
 * manifests and blobs it needs, all checked against the bundle before anything is written. Pure:
 * the caller reads the bundle's manifests and sizes (host/oci-layout.ts) and the caches' storage.
 */
import { ImageReference } from "./image-reference";
import { hexOf, sha256Digest } from "./digest";
import { Descriptor, Manifest, OciIndex, entryReference, parseManifest } from "./oci";
import { storagePaths } from "./storage-layout";

/** One image to import, as the registry API takes it. */
export interface ImportImage {
    reference: ImageReference;
    /** Manifests to PUT, platform manifests first and the entry's own last. */
    manifests: Manifest[];
    /** Configs and layers, each once. */
    blobs: Descriptor[];
}

export interface ImportPlan {
    images: ImportImage[];
    /** Why the bundle cannot be imported, one per problem; empty when it can. */
    problems: string[];
}

/**
 * Checks a bundle's index against what the bundle holds and which registries have a cache.
 *
 * @param manifests the bytes of each manifest the bundle holds that an entry names (entries and
 *   their indexes' platform manifests), by the digest it is filed under
 * @param blobSizes the size of every blob in the bundle, by digest
 * @param registries the registries that have a cache
 */
export function planImport(
    index: OciIndex,
    manifests: ReadonlyMap<string, Buffer>,
    blobSizes: ReadonlyMap<string, number>,
    registries: readonly string[],
): ImportPlan {
    const problems: string[] = [];
    const images: ImportImage[] = [];
    index.manifests.forEach((entry, position) => {
        const reference = entryReference(entry);
        if (typeof reference === "string") {
            problems.push(`index.json entry ${position + 1} ${reference}`);
            return;
        }
        const name = reference.canonical;
        if (!registries.includes(reference.registry)) {
            problems.push(
                `${name} is for ${reference.registry}, which has no cache (caches: ${registries.join(", ")})`,
            );
            return;
        }
        const read = (descriptor: Pick<Descriptor, "digest" | "size">, what: string) => {
            const bytes = manifests.get(descriptor.digest);
            if (bytes === undefined) {
                problems.push(`${name}: ${what} ${descriptor.digest} is not in the bundle`);
                return undefined;
            }
            const actual = sha256Digest(bytes);
            if (actual !== descriptor.digest) {
                problems.push(
                    `${name}: ${what} ${descriptor.digest} does not match its digest (its bytes hash to ${actual})`,
                );
                return undefined;
            }
            try {
                return parseManifest(bytes, (descriptor as Descriptor).mediaType);
            } catch {
                problems.push(`${name}: ${what} ${descriptor.digest} is not JSON`);
                return undefined;
            }
        };
        const top = read(entry, "its manifest");
        if (!top) return;
        const platforms = top.isIndex
            ? top.manifests.filter((child) => manifests.has(child.digest))
            : [];
        if (top.isIndex && platforms.length === 0) {
            problems.push(
                `${name}: its index lists ${top.manifests.length} platform manifests and the bundle holds none of them`,
            );
            return;
        }
        const children = platforms.map((child) => read(child, "the platform manifest"));
        if (children.some((child) => child === undefined)) return;
        const imageManifests = top.isIndex ? (children as Manifest[]) : [top];
        const blobs = new Map<string, Descriptor>();
        for (const blob of imageManifests.flatMap((manifest) => manifest.blobs)) {
            const size = blobSizes.get(blob.digest);
            if (size === undefined)
                problems.push(`${name}: blob ${blob.digest} is named but not in the bundle`);
            else if (size !== blob.size)
                problems.push(
                    `${name}: blob ${blob.digest} has ${size} bytes in the bundle; its manifest says ${blob.size}`,
                );
            else blobs.set(blob.digest, blob);
        }
        images.push({
            reference,
            manifests: [...(top.isIndex ? (children as Manifest[]) : []), top],
            blobs: [...blobs.values()],
        });
    });
    return { images, problems };
}

/** What a cache already holds of the repositories an import writes to. */
export interface HeldContent {
    /** Blobs in the cache's storage, whatever repository links them. */
    blobs: ReadonlySet<string>;
    /** Per repository: the blobs and manifests it links, and its tags. */
    repositories: ReadonlyMap<
        string,
        {
            layers: ReadonlySet<string>;
            revisions: ReadonlySet<string>;
            tags: ReadonlyMap<string, string>;
        }
    >;
}

/** How one blob gets into an image's repository. */
export type BlobStep = { kind: "linked" } | { kind: "mount"; from: string } | { kind: "upload" };

/** One image's writes, in order: blobs, then manifests; nothing when it is already held. */
export interface ImageSteps {
    image: ImportImage;
    blobs: { blob: Descriptor; step: BlobStep }[];
    /** Manifests to PUT (by digest, the last one by tag when the image has one). */
    manifests: Manifest[];
    /** Whether the image's tag must be (re)written. */
    tag: boolean;
}

/**
 * The writes that bring one cache to hold `images`: a blob the repository links already is left
 * alone, one another repository links is mounted from it, and only the rest is uploaded. A
 * manifest the repository has and a tag that already points at the image are not written again,
 * so a second import of the same bundle writes nothing.
 */
export function planCacheWrites(images: readonly ImportImage[], held: HeldContent): ImageSteps[] {
    const linkedElsewhere = (digest: string) =>
        [...held.repositories].find(([, repository]) => repository.layers.has(digest))?.[0];
    return images.map((image) => {
        const repository = held.repositories.get(image.reference.repository);
        const stepFor = (digest: string): BlobStep => {
            if (repository?.layers.has(digest)) return { kind: "linked" };
            const from = linkedElsewhere(digest);
            return from ? { kind: "mount", from } : { kind: "upload" };
        };
        const blobs = image.blobs.map((blob) => ({ blob, step: stepFor(blob.digest) }));
        const top = image.manifests.at(-1)!;
        const tag = image.reference.tag;
        const tagged = tag !== undefined && repository?.tags.get(tag) === top.digest;
        return {
            image,
            blobs,
            manifests: image.manifests.filter(
                (manifest) => !repository?.revisions.has(manifest.digest),
            ),
            tag: tag !== undefined && !tagged,
        };
    });
}

/** Bytes an import adds to a cache: the blobs it uploads and the manifests it stores, each once. */
export function bytesToAdd(steps: readonly ImageSteps[], held: HeldContent): number {
    const added = new Map<string, number>();
    for (const { blobs, manifests } of steps) {
        for (const { blob, step } of blobs)
            if (step.kind === "upload" && !held.blobs.has(blob.digest))
                added.set(blob.digest, blob.size);
        for (const manifest of manifests)
            if (!held.blobs.has(manifest.digest)) added.set(manifest.digest, manifest.size);
    }
    return [...added.values()].reduce((sum, size) => sum + size, 0);
}

/** A file an import stages: a blob's data from the bundle, or bytes at hand (manifests, links). */
export type StagedFile = { path: string } & (
    { digest: string; size: number } | { content: Buffer }
);

/** What an import writes into one cache's storage. */
export interface StorageWrites {
    /**
     * Paths under the storage root, as they will be; staged elsewhere first, all of them, then
     * moved into place (tools/import.ts).
     */
    files: StagedFile[];
    /** Bytes of blobs and manifests the cache did not hold. */
    sentBytes: number;
    /** The blobs sent, by digest. */
    sent: Set<string>;
}

/**
 * The registry's own storage layout (distribution registry/storage/paths.go) for `steps`: blob
 * data, layer links, revision links and tags, each written once, whatever images share it. A blob
 * the storage holds already is linked, never sent again.
 */
export function planStorageWrites(steps: readonly ImageSteps[], held: HeldContent): StorageWrites {
    const files = new Map<string, StagedFile>();
    const sent = new Set<string>();
    let sentBytes = 0;
    const send = (digest: string, source: { size: number } | { content: Buffer }) => {
        if (held.blobs.has(digest) || sent.has(digest)) return;
        sent.add(digest);
        const path = storagePaths.blobData(digest);
        files.set(
            path,
            "size" in source ? { path, digest, size: source.size } : { path, ...source },
        );
        sentBytes += "size" in source ? source.size : source.content.length;
    };
    const link = (folder: string, digest: string) =>
        files.set(`${folder}/link`, { path: `${folder}/link`, content: Buffer.from(digest) });
    for (const { image, blobs, manifests, tag } of steps) {
        const { repository } = image.reference;
        for (const { blob, step } of blobs) {
            if (step.kind === "linked") continue;
            if (step.kind === "upload") send(blob.digest, { size: blob.size });
            link(storagePaths.layerLink(repository, blob.digest), blob.digest);
        }
        for (const manifest of manifests) {
            send(manifest.digest, { content: manifest.bytes });
            link(storagePaths.revisionLink(repository, manifest.digest), manifest.digest);
        }
        if (tag) {
            const top = image.manifests.at(-1)!.digest;
            const folder = storagePaths.tag(repository, image.reference.tag!);
            link(`${folder}/current`, top);
            link(`${folder}/index/sha256/${hexOf(top)}`, top);
        }
    }
    return { files: [...files.values()], sentBytes, sent };
}
