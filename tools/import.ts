/**
 * `npm run import <bundle>`: puts a bundle's images into the caches of their registries, so that
 * they serve them by tag and by digest, with no network at all.
 *
 * The caches are filled through the registry API, never by writing their storage layout: a
 * second registry with no proxy section runs over each cache's volume (a writable view,
 * tools/cache-view.ts) and takes the pushes. Blobs go first into a staging repository that no
 * client asks for; only once all of them are in is each image linked into its own repository
 * (cross-repository mounts, no bytes copied) and its manifests and tag written. So an import that
 * fails or is killed while blobs are copied, nearly all of its time, leaves every repository as
 * it was; the staging repository goes when the import ends, or at the next import.
 *
 * Everything that can be checked before a byte is written is: the bundle's index, manifests and
 * blob sizes, that every image's registry has a cache, that no cache is storing a pull right now,
 * and that each volume has room. Every blob's digest is checked on the way in, by this tool and
 * again by the registry.
 */
import { createHash, randomBytes } from "node:crypto";
import { Transform } from "node:stream";
import { ImportImage, ImageSteps, bytesToAdd, planCacheWrites, planImport } from "../core/bundle";
import { parseManifest } from "../core/oci";
import { Bundle, BundleError, openBundle } from "../host/oci-layout";
import { viewClient, withCacheViews } from "./cache-view";
import { readFrontAccess } from "./front";
import { formatBytes } from "../core/format";
import { RegistryClient, RegistryError } from "./registry-client";
import { Storage, storageLayout, storagePaths } from "../core/storage-layout";
import { DockerCli } from "./docker";
import { inStorage, readStorage, volumeSpace } from "./storage";
import { CacheEndpoint } from "../core/plan";
import { Limiter, limiter } from "./warm";

/** Where blobs wait until every one of them is in; never a repository anyone pulls. */
const stagingRoot = "pullthrough-staging";

export interface ImportedImage {
    image: string;
    registry: string;
    /** `imported`, or `held` when the cache had all of it already (nothing was written). */
    status: "imported" | "held";
    blobs: number;
    /** Bytes sent to the cache for it; a blob shared with another image counts once. */
    sentBytes: number;
}

export interface ImportReport {
    bundle: string;
    /** With --dry-run: what would be written, and nothing was. */
    dryRun: boolean;
    images: ImportedImage[];
    sentBytes: number;
    seconds: number;
}

export interface ImportOptions {
    /** Blobs and images in flight at once, over all caches. */
    concurrency: number;
    /** Check and plan, and write nothing. */
    dryRun: boolean;
    onImage?: (result: ImportedImage) => void;
}

/** The bytes of every manifest the bundle's entries name: theirs and their platforms'. */
async function readBundleManifests(bundle: Bundle): Promise<Map<string, Buffer>> {
    const manifests = new Map<string, Buffer>();
    const readIfHeld = async (digest: string) => {
        if (!manifests.has(digest) && bundle.blobs.has(digest))
            manifests.set(digest, await bundle.read(digest));
        return manifests.get(digest);
    };
    for (const entry of bundle.index.manifests) {
        const bytes = await readIfHeld(entry.digest);
        if (!bytes) continue;
        let children: string[] = [];
        try {
            children = parseManifest(bytes, entry.mediaType).manifests.map((m) => m.digest);
        } catch {
            // planImport reports a manifest that is not JSON.
        }
        for (const child of children) await readIfHeld(child);
    }
    return manifests;
}

/** What a cache's storage holds, as planCacheWrites reads it; the staging area is not content. */
function heldContent(storage: Storage) {
    return {
        blobs: new Set(storage.blobs.keys()),
        repositories: new Map(
            [...storage.repositories]
                .filter(([name]) => !name.startsWith(`${stagingRoot}/`))
                .map(([name, repository]) => [
                    name,
                    {
                        layers: repository.layers,
                        revisions: new Set(repository.revisions.keys()),
                        tags: new Map(
                            [...repository.tags].map(([tag, { digest }]) => [tag, digest]),
                        ),
                    },
                ]),
        ),
    };
}

/** The partial uploads of a pull the cache is storing now (not an import's staging). */
const pullsInFlight = (storage: Storage) =>
    storage.uploads
        .filter(
            (upload) =>
                upload.state === "writing" &&
                !upload.path.startsWith(`${storagePaths.repository(stagingRoot)}/`),
        )
        .map((upload) => upload.path);

/**
 * Refuses, before anything is written, an import a cache cannot take now: one storing a pull,
 * or one whose disk cannot hold what the import adds (volumes on one disk share its space).
 */
async function checkCaches(
    docker: DockerCli,
    file: string,
    targets: readonly { cache: CacheEndpoint; steps: ImageSteps[]; storage: Storage }[],
) {
    const uploads = targets.map(({ storage }) => pullsInFlight(storage));
    const pulling = uploads.findIndex((paths) => paths.length > 0);
    if (pulling >= 0)
        throw new BundleError(
            file,
            `the ${targets[pulling].cache.registry} cache is storing a pull in flight (${uploads[pulling][0]}); import once it is done`,
        );
    const needs = targets
        .map(({ cache, steps, storage }) => ({
            cache,
            needed: bytesToAdd(steps, heldContent(storage)),
        }))
        .filter(({ needed }) => needed > 0);
    const spaces = await Promise.all(
        needs.map(({ cache }) => volumeSpace(docker, cache.container)),
    );
    const disks = new Map<string, { freeBytes: number; needed: number; caches: string[] }>();
    needs.forEach(({ cache, needed }, index) => {
        const space = spaces[index];
        const disk = disks.get(space.device) ?? {
            freeBytes: space.freeBytes,
            needed: 0,
            caches: [],
        };
        disk.needed += needed;
        disk.caches.push(cache.registry);
        disks.set(space.device, disk);
    });
    for (const disk of disks.values())
        if (disk.needed > disk.freeBytes)
            throw new BundleError(
                file,
                `the ${disk.caches.join(" and ")} cache${disk.caches.length > 1 ? "s" : ""} would need ${formatBytes(disk.needed)} more, and ${disk.caches.length > 1 ? "their" : "its"} disk has ${formatBytes(disk.freeBytes)} free`,
            );
}

/**
 * Removes a staging repository (by default every one: those of imports that were killed), and
 * the blobs it linked that no other repository links: after a failure they belong to nothing.
 */
async function removeStaging(docker: DockerCli, container: string, staging = `${stagingRoot}/*`) {
    const { repositories, layers, revisions, blobs } = storageLayout;
    const script = `for link in $(find ${storagePaths.repository(staging)} -path '*/${layers}/*' -name link 2>/dev/null); do
    id=\${link%/link}
    echo "\${id##*/}"
done >/tmp/pullthrough-staged
rm -rf ${storagePaths.repository(staging)}
rmdir ${storagePaths.repository(stagingRoot)} 2>/dev/null
while read -r id; do
    find ${repositories} -path "*/${layers}/$id" -o -path "*/${revisions}/$id" | grep -q . ||
        rm -rf "${blobs}/\${id%"\${id#??}"}/$id"
done </tmp/pullthrough-staged
rm -f /tmp/pullthrough-staged`;
    await inStorage(docker, container, script);
}

/** Uploads `digest` from the bundle into `repository`, checking its bytes against the digest. */
async function uploadBlob(
    file: string,
    bundle: Bundle,
    client: RegistryClient,
    repository: string,
    digest: string,
    size: number,
) {
    const hash = createHash("sha256");
    let read = 0;
    const hashing = new Transform({
        transform(chunk: Buffer, _encoding, done) {
            hash.update(chunk);
            read += chunk.length;
            done(null, chunk);
        },
    });
    const pushed = await client
        .pushBlob(repository, digest, size, bundle.stream(digest).pipe(hashing))
        .then(
            () => undefined,
            (error: Error) => error,
        );
    // Whatever the registry said, a blob read whole that hashes to another digest is the cause.
    const actual = read === size ? `sha256:${hash.digest("hex")}` : undefined;
    if (actual !== undefined && actual !== digest)
        throw new BundleError(
            file,
            `blob ${digest} does not match its digest (its bytes hash to ${actual})`,
        );
    if (pushed) throw pushed;
}

/** One cache's side of an import: what it writes, through which view, staged where. */
interface CacheImport {
    cache: CacheEndpoint;
    steps: ImageSteps[];
    client: RegistryClient;
    staging: string;
    /** Blobs uploaded so far, until an image that needs them claims their bytes. */
    sent: Set<string>;
}

/** Uploads into the staging repository every blob of the cache's images that no repository has. */
async function stageBlobs(
    file: string,
    bundle: Bundle,
    target: CacheImport,
    run: Limiter,
): Promise<void> {
    const uploads = new Map(
        target.steps.flatMap(({ blobs }) =>
            blobs
                .filter(({ step }) => step.kind === "upload")
                .map(({ blob }) => [blob.digest, blob]),
        ),
    );
    await Promise.all(
        [...uploads.values()].map((blob) =>
            run(async () => {
                await uploadBlob(
                    file,
                    bundle,
                    target.client,
                    target.staging,
                    blob.digest,
                    blob.size,
                );
                target.sent.add(blob.digest);
            }),
        ),
    );
}

/** Links each image's blobs into its repository and writes its manifests; images independently. */
function linkImages(
    target: CacheImport,
    onImage: (result: ImportedImage) => void,
    run: Limiter,
): Promise<ImportedImage[]> {
    return Promise.all(
        target.steps.map(({ image, blobs, manifests, tag }) =>
            run(async () => {
                await Promise.all(
                    blobs
                        .filter(({ step }) => step.kind !== "linked")
                        .map(({ blob, step }) =>
                            target.client.mountBlob(
                                image.reference.repository,
                                blob.digest,
                                step.kind === "mount" ? step.from : target.staging,
                            ),
                        ),
                );
                await putManifests(target.client, image, manifests, tag);
                const result = importedImage(
                    target.cache,
                    { image, blobs, manifests, tag },
                    target.sent,
                );
                onImage(result);
                return result;
            }),
        ),
    );
}

/**
 * What an import does for one image: `sent` holds the blobs uploaded (or, in a dry run, to be
 * uploaded) and not yet counted, so a blob shared by two images counts once.
 */
function importedImage(
    cache: CacheEndpoint,
    { image, blobs, manifests, tag }: ImageSteps,
    sent: Set<string>,
): ImportedImage {
    return {
        image: image.reference.canonical,
        registry: cache.registry,
        status: manifests.length > 0 || tag ? "imported" : "held",
        blobs: image.blobs.length,
        sentBytes: blobs
            .filter(({ step }) => step.kind === "upload")
            .filter(({ blob }) => sent.delete(blob.digest))
            .reduce((sum, { blob }) => sum + blob.size, 0),
    };
}

/** A dry run's images: what each cache's writes would be, in the order an import makes them. */
function plannedImages(targets: readonly { cache: CacheEndpoint; steps: ImageSteps[] }[]) {
    return targets.flatMap(({ cache, steps }) => {
        const toSend = new Set(
            steps.flatMap(({ blobs }) =>
                blobs.filter(({ step }) => step.kind === "upload").map(({ blob }) => blob.digest),
            ),
        );
        return steps.map((step) => importedImage(cache, step, toSend));
    });
}

/** PUTs an image's missing manifests: platform manifests by digest, its own by tag when it has one. */
async function putManifests(
    client: RegistryClient,
    image: ImportImage,
    missing: readonly ImportImage["manifests"][number][],
    tag: boolean,
) {
    const { repository } = image.reference;
    const top = image.manifests.at(-1)!;
    for (const manifest of missing)
        if (manifest !== top)
            await client.putManifest(
                repository,
                manifest.digest,
                manifest.bytes,
                manifest.mediaType,
            );
    if (tag) await client.putManifest(repository, image.reference.tag!, top.bytes, top.mediaType);
    else if (missing.includes(top))
        await client.putManifest(repository, top.digest, top.bytes, top.mediaType);
}

/** Each cache the bundle's images go to: what it holds now, and what the import writes there. */
function planTargets(
    docker: DockerCli,
    images: readonly ImportImage[],
    caches: readonly CacheEndpoint[],
) {
    return Promise.all(
        caches
            .filter((cache) => images.some((image) => image.reference.registry === cache.registry))
            .map(async (cache) => {
                const storage = await readStorage(docker, cache.container).catch((error: Error) => {
                    throw new RegistryError(
                        `the ${cache.registry} cache cannot be read (${error.message}); is the stack up (npm run up)?`,
                    );
                });
                const own = images.filter((image) => image.reference.registry === cache.registry);
                return { cache, storage, steps: planCacheWrites(own, heldContent(storage)) };
            }),
    );
}

/**
 * Imports `file` into the caches of its images' registries.
 *
 * @throws BundleError (one line: the file and the cause) for a bundle that cannot be imported;
 *   nothing is written then
 */
export async function importBundle(
    docker: DockerCli,
    file: string,
    caches: readonly CacheEndpoint[],
    { concurrency, dryRun, onImage = () => {} }: ImportOptions,
): Promise<ImportReport> {
    const started = Date.now();
    const bundle = openBundle(file);
    const plan = planImport(
        bundle.index,
        await readBundleManifests(bundle),
        bundle.blobs,
        caches.map((cache) => cache.registry),
    );
    if (plan.problems.length > 0) {
        const more = plan.problems.length > 1 ? ` (and ${plan.problems.length - 1} more)` : "";
        throw new BundleError(file, `${plan.problems[0]}${more}`);
    }
    const targets = await planTargets(docker, plan.images, caches);
    await checkCaches(docker, file, targets);
    const report = (images: ImportedImage[]): ImportReport => ({
        bundle: file,
        dryRun,
        images,
        sentBytes: images.reduce((sum, image) => sum + image.sentBytes, 0),
        seconds: (Date.now() - started) / 1000,
    });
    if (dryRun) {
        const planned = plannedImages(targets);
        planned.forEach((image) => onImage(image));
        return report(planned);
    }
    const run = limiter(concurrency);
    const targetCaches = targets.map(({ cache }) => cache);
    const images = await withCacheViews(
        docker,
        targetCaches,
        await readFrontAccess(docker, targetCaches),
        async (views) => {
            const imports: CacheImport[] = targets.map(({ cache, steps }) => {
                const view = views.get(cache.registry)!;
                return {
                    cache,
                    steps,
                    client: viewClient(view, cache.registry),
                    staging: `${stagingRoot}/${randomBytes(4).toString("hex")}`,
                    sent: new Set(),
                };
            });
            // A staging area left by an import that was killed holds nothing anyone needs.
            await Promise.all(imports.map(({ cache }) => removeStaging(docker, cache.container)));
            try {
                // Every cache has all its blobs before any image is linked anywhere: a bad blob
                // in one cache leaves the repositories of all of them as they were.
                const staged = await Promise.allSettled(
                    imports.map((target) => stageBlobs(file, bundle, target, run)),
                );
                const failed = staged.find((result) => result.status === "rejected");
                if (failed) throw failed.reason;
                return await Promise.all(imports.map((target) => linkImages(target, onImage, run)));
            } finally {
                await Promise.all(
                    imports.map(({ cache, staging }) =>
                        removeStaging(docker, cache.container, staging),
                    ),
                );
            }
        },
        "writable",
    );
    return report(images.flat());
}

/** The import's summary: a line per image, then the totals. */
export function formatImport(report: ImportReport): string {
    const imported = report.images.filter((image) => image.status === "imported").length;
    const held = report.images.length - imported;
    const of = `${imported} of ${report.images.length} images from ${report.bundle}${held > 0 ? ` (${held} already held)` : ""}`;
    return report.dryRun
        ? `Would import ${of}, sending ${formatBytes(report.sentBytes)} to the caches; nothing was written (--dry-run).`
        : `Imported ${of}; sent ${formatBytes(report.sentBytes)} to the caches in ${report.seconds.toFixed(1)} s.`;
}

/** A line per image as it is done (or, in a dry run, as it would be). */
export function formatImportedImage(image: ImportedImage, dryRun = false): string {
    const imported = image.status === "imported";
    const status = dryRun
        ? imported
            ? "would import"
            : "held        "
        : imported
          ? "imported"
          : "held    ";
    return `${status}  ${image.image}  ${image.blobs} blobs, ${formatBytes(image.sentBytes)} ${dryRun ? "to send" : "sent"}`;
}
