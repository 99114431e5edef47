/**
 * What a cache's volume holds, in the registry's storage layout (distribution's
 * registry/storage/paths.go): content-addressed blobs under `blobs/`, and per repository the
 * links that make them visible, namely manifest revisions, tags and layer links. The scripts that
 * list a volume, the parsers of what they print, the paths inside it, and which images it holds.
 * Pure: tools/storage.ts runs the scripts in the cache container.
 */
import { registryStoragePath, registryStorageRoot } from "./container-facts";
import { hexOf, isDigest, sha256Hex } from "./digest";
import { parseManifest } from "./oci";

/**
 * When each image was last pulled, as `prune` last saw it (`<epoch seconds> <repository>@<digest>`
 * per line). It lives beside the registry's data, so it outlives the front and its log.
 */
export const pulledRecordFile = `${registryStoragePath}/pullthrough/last-pulled`;

/** The last deep check (`verify --deep`) of a cache, in its volume: what `status` shows. */
export const lastCheckFile = `${registryStoragePath}/pullthrough/last-check.json`;

/** What a deep check found in one cache. */
export interface CacheCheck {
    registry: string;
    /** ISO 8601. */
    checkedAt: string;
    blobs: number;
    bytes: number;
    /** Digests whose stored bytes hash to something else. */
    corrupt: string[];
    /** Digests that were listed but had no data when hashed. */
    missing: string[];
    /** Corrupt digests `--repair` removed. */
    repaired: string[];
}

export interface StoredBlob {
    size: number;
    /** Modification time, epoch seconds: when the registry stored it. */
    modified: number;
}

export interface StoredRepository {
    /** Manifest digests the repository holds, with when each was stored. */
    revisions: Map<string, number>;
    /** Tag → the manifest it points at, and when the link was last written. */
    tags: Map<string, { digest: string; modified: number }>;
    /** Blobs linked into the repository (configs and layers). */
    layers: Set<string>;
}

/** The digests a manifest refers to. */
export interface ManifestRefs {
    /** An index's (manifest list's) platform manifests. */
    children: string[];
    /** An image manifest's config and layers. */
    blobs: string[];
}

/**
 * A blob a registry began to write and has not committed: a folder `repositories/<name>/_uploads/<id>`.
 * A fetch that was cut (a killed registry, a dropped link) leaves one behind; the cache's
 * supervisor removes it once it is stale (container/cache-supervisor.sh, list_uploads).
 */
export interface PartialUpload {
    /** Its folder under the storage root. */
    path: string;
    size: number;
    /** Epoch seconds: when its data last grew. */
    modified: number;
    /** `writing`: held open by the cache's registry, or grown within the supervisor's bound. */
    state: "writing" | "stale";
}

export interface Storage {
    blobs: Map<string, StoredBlob>;
    uploads: PartialUpload[];
    repositories: Map<string, StoredRepository>;
    manifests: Map<string, ManifestRefs>;
    /** `<repository>@<digest>` → epoch seconds, from the record `prune` keeps. */
    pulled: Map<string, number>;
}

/** One image as stored: a manifest no other stored manifest of its repository lists. */
export interface StoredImage {
    repository: string;
    /** Its top manifest: an index, or a single image manifest. */
    digest: string;
    tags: string[];
    /** The top manifest and those of its platforms that are stored. */
    manifests: string[];
    /** Every stored blob it needs: its manifests, configs and layers. */
    blobs: string[];
    /** When the registry stored its top manifest, epoch seconds. */
    stored: number;
}

/**
 * The registry's storage tree under its root (distribution registry/storage/paths.go): every path
 * the tools build, match or `find`, in scripts too, is made from these.
 */
export const storageLayout = {
    blobs: "blobs/sha256",
    repositories: "repositories",
    layers: "_layers/sha256",
    revisions: "_manifests/revisions/sha256",
    tags: "_manifests/tags",
    uploads: "_uploads",
};
const { blobs, repositories, layers, revisions, tags } = storageLayout;
const hex = sha256Hex;
const blobPath = new RegExp(`^${blobs}/[0-9a-f]{2}/(${hex})/data$`);
const revisionPath = new RegExp(`^${repositories}/(.+)/${revisions}/(${hex})/link$`);
const tagPath = new RegExp(`^${repositories}/(.+)/${tags}/([^/]+)/current/link$`);
const layerPath = new RegExp(`^${repositories}/(.+)/${layers}/(${hex})/link$`);
/** `find` arguments for every tag's current link under `folder` (the root's repositories by default). */
const tagLinksUnder = (folder: string) => `${folder} -path '*/${tags}/*/current/link'`;
export const tagLinksFind = tagLinksUnder(repositories);

/** The listing's `link` and `tag` lines for the repositories under `folder` (a shell word). */
const linkListing = (folder: string) =>
    `find ${folder} -type f -name link -exec stat -c 'link %Y %n' {} +
find ${tagLinksUnder(folder)} -exec sh -c 'for f; do echo "tag $f $(cat "$f")"; done' sh {} +`;

/**
 * Lists the storage: `blob SIZE MTIME PATH`, `link MTIME PATH`, `tag PATH DIGEST`, `pulled …`.
 * Partial uploads (`upload …`) come from the supervisor's own listing (readUploads).
 */
export const listingScript = `
cd ${registryStorageRoot} 2>/dev/null || exit 0
find ${blobs} -type f -name data -exec stat -c 'blob %s %Y %n' {} +
${linkListing(repositories)}
[ ! -f ${pulledRecordFile} ] || sed 's/^/pulled /' ${pulledRecordFile}
`;

/**
 * The listing (as listingScript prints it) of what one import needs to know, however much else
 * the storage holds: the repositories given as "$@" (and those nested in them), and of the blob
 * data paths on stdin those that are there.
 */
export const scopedListingScript = `
cd ${registryStorageRoot} 2>/dev/null || exit 0
xargs -r stat -c 'blob %s %Y %n' 2>/dev/null
for repository; do
    [ -d "${repositories}/$repository" ] || continue
${linkListing(`"${repositories}/$repository"`)}
done
`;

/** Prints `manifest DIGEST JSON` per manifest path given, the JSON on one line. */
export const manifestsScript = `for f; do printf 'manifest %s ' "$f"; tr -d '\\r\\n' <"$f"; echo; done`;

const emptyRepository = (): StoredRepository => ({
    revisions: new Map(),
    tags: new Map(),
    layers: new Set(),
});

/** Parses the listing scripts' output; manifests are read separately. */
export function parseListing(listing: string): Omit<Storage, "manifests"> {
    const blobs = new Map<string, StoredBlob>();
    const uploads: PartialUpload[] = [];
    const repositories = new Map<string, StoredRepository>();
    const pulled = new Map<string, number>();
    const repository = (name: string) => {
        if (!repositories.has(name)) repositories.set(name, emptyRepository());
        return repositories.get(name)!;
    };
    const tagModified = new Map<string, number>();
    for (const line of listing.split("\n")) {
        const [kind, ...fields] = line.trim().split(" ");
        if (kind === "blob") {
            const match = blobPath.exec(fields[2] ?? "");
            if (match)
                blobs.set(`sha256:${match[1]}`, {
                    size: Number(fields[0]),
                    modified: Number(fields[1]),
                });
        } else if (kind === "link") {
            const [modified, path] = [Number(fields[0]), fields[1] ?? ""];
            const revision = revisionPath.exec(path);
            const layer = layerPath.exec(path);
            if (revision) repository(revision[1]).revisions.set(`sha256:${revision[2]}`, modified);
            else if (layer) repository(layer[1]).layers.add(`sha256:${layer[2]}`);
            else if (tagPath.test(path)) tagModified.set(path, modified);
        } else if (kind === "tag") {
            const match = tagPath.exec(fields[0] ?? "");
            if (match && isDigest(fields[1] ?? ""))
                repository(match[1]).tags.set(match[2], {
                    digest: fields[1],
                    modified: tagModified.get(fields[0]) ?? 0,
                });
        } else if (kind === "pulled" && fields.length === 2) {
            pulled.set(fields[1], Number(fields[0]));
        } else if (kind === "upload" && fields.length === 4) {
            const [size, modified, state, path] = fields;
            if (state === "writing" || state === "stale")
                uploads.push({ path, size: Number(size), modified: Number(modified), state });
        }
    }
    return { blobs, uploads, repositories, pulled };
}

/** What a manifest (OCI or Docker, image or index) refers to; nothing for what is not one. */
function manifestRefs(json: string): ManifestRefs {
    let manifest;
    try {
        manifest = parseManifest(Buffer.from(json));
    } catch {
        return { children: [], blobs: [] };
    }
    const digests = (list: readonly { digest?: unknown }[]) =>
        list.flatMap((entry) => (typeof entry?.digest === "string" ? [entry.digest] : []));
    return { children: digests(manifest.manifests), blobs: digests(manifest.blobs) };
}

/** Parses the manifests script's output. */
export function parseManifests(output: string): Map<string, ManifestRefs> {
    const manifests = new Map<string, ManifestRefs>();
    for (const line of output.split("\n")) {
        const match = new RegExp(`^manifest \\S*/(${hex})/data (.*)$`).exec(line);
        if (match) manifests.set(`sha256:${match[1]}`, manifestRefs(match[2]));
    }
    return manifests;
}

/** Paths under the storage root (distribution registry/storage/paths.go). */
export const storagePaths = {
    /** A blob's folder: its data, and nothing else. */
    blob: (digest: string) => `${blobs}/${hexOf(digest).slice(0, 2)}/${hexOf(digest)}`,
    blobData: (digest: string) => `${storagePaths.blob(digest)}/data`,
    repository: (name: string) => `${repositories}/${name}`,
    /** What makes a blob a layer or config of a repository. */
    layerLink: (repository: string, digest: string) =>
        `${storagePaths.repository(repository)}/${layers}/${hexOf(digest)}`,
    /** What makes a blob a manifest of a repository. */
    revisionLink: (repository: string, digest: string) =>
        `${storagePaths.repository(repository)}/${revisions}/${hexOf(digest)}`,
    /** A tag's folder: its current link and its index. */
    tag: (repository: string, tag: string) =>
        `${storagePaths.repository(repository)}/${tags}/${tag}`,
};

/** The data files of the manifests a listing's repositories hold, to read for manifestsScript. */
export function storedManifestPaths(listing: Pick<Storage, "blobs" | "repositories">): string[] {
    const revisions = new Set(
        [...listing.repositories.values()].flatMap((repository) => [
            ...repository.revisions.keys(),
        ]),
    );
    return [...revisions].filter((digest) => listing.blobs.has(digest)).map(storagePaths.blobData);
}

/** The images a storage holds: per repository, each stored manifest no stored index lists. */
export function storedImages(storage: Storage): StoredImage[] {
    const images: StoredImage[] = [];
    for (const [repository, stored] of storage.repositories) {
        const children = new Set(
            [...stored.revisions.keys()].flatMap(
                (digest) => storage.manifests.get(digest)?.children ?? [],
            ),
        );
        for (const [digest, modified] of stored.revisions) {
            if (children.has(digest)) continue;
            const manifests = [
                digest,
                ...(storage.manifests.get(digest)?.children ?? []).filter((child) =>
                    stored.revisions.has(child),
                ),
            ];
            const blobs = new Set(
                manifests.flatMap((manifest) => [
                    manifest,
                    ...(storage.manifests.get(manifest)?.blobs ?? []),
                ]),
            );
            images.push({
                repository,
                digest,
                tags: [...stored.tags]
                    .filter(([, tag]) => tag.digest === digest)
                    .map(([tag]) => tag)
                    .sort(),
                manifests,
                blobs: [...blobs].filter((blob) => storage.blobs.has(blob)),
                stored: modified,
            });
        }
    }
    return images;
}

/** The references of what a cache holds: each tag, and an untagged image by its digest. */
export function heldReferences(registry: string, images: readonly StoredImage[]): string[] {
    return images.flatMap((image) =>
        image.tags.length > 0
            ? image.tags.map((tag) => `${registry}/${image.repository}:${tag}`)
            : [`${registry}/${image.repository}@${image.digest}`],
    );
}
