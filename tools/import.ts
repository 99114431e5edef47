/**
 * `npm run import <bundle>`: puts a bundle's images into the caches of their registries, so that
 * they serve them by tag and by digest, with no network at all.
 *
 * The caches are filled by writing the registry's own storage layout into their volumes through
 * the engine's API: each cache gets one tar stream (`docker cp`) of the blobs it lacks and the
 * links that will make them visible, into a staging folder beside its storage, hashed on the way
 * (each byte once). Only once every cache has all of it are the staged folders moved into place,
 * blobs first and tags last, by renames inside the volume. So an import that fails or is killed
 * while bytes travel, nearly all of its time, leaves every repository as it was; a staging folder
 * left behind goes at the next import. The registry serves what is moved in at once: it reads its
 * storage on every request.
 *
 * Everything that can be checked before a byte is written is: the bundle's index, manifests and
 * blob sizes, that every image's registry has a cache, that no cache is storing a pull right now,
 * and that each volume has room.
 */
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
    ImportImage,
    ImageSteps,
    StorageWrites,
    bytesToAdd,
    planCacheWrites,
    planImport,
    planStorageWrites,
} from "../core/bundle";
import { registryStoragePath, registryStorageRoot } from "../core/container-facts";
import { tarStream } from "../core/tar";
import { parseManifest } from "../core/oci";
import { Bundle, BundleError } from "../host/oci-layout";
import { openBundle } from "../host/bundles";
import { formatBytes } from "../core/format";
import { RegistryError } from "./registry-client";
import { Storage, parseListing, scopedListingScript, storagePaths } from "../core/storage-layout";
import { DockerCli } from "./docker";
import { VolumeSpace, parseVolumeSpace, volumeSpaceScript } from "./storage";
import { readCacheSupervisor } from "../host/assets";
import { CacheEndpoint } from "../core/plan";

/**
 * Where an import stages what it writes, one folder per import: in the volume (so moving into
 * place is a rename) and outside the registry's storage (so nothing there is served).
 */
const stagingFolder = `${registryStoragePath}/pullthrough/imports`;

/**
 * Moves a staged tree into the storage (cwd), blobs first: a path not there yet moves whole, one
 * rename (a new repository appears at once); into one that is, what it holds moves piece by
 * piece, in name order (`_layers` before `_manifests`, `revisions` before `tags`), and a file
 * replaces the one there (a tag's current link; any other is the same content-addressed bytes).
 * Moving into the parent, not onto the path, so a folder that appears meanwhile is never
 * moved into.
 */
const commitScript = `stage=$1
place() {
    if [ ! -e "$1" ]; then
        mkdir -p "\${1%/*}" && mv "$stage/$1" "\${1%/*}/" 2>/dev/null && return
    fi
    if [ -d "$stage/$1" ]; then
        for child in "$stage/$1"/*; do place "$1/\${child##*/}" || return 1; done
    else
        mv -f "$stage/$1" "$1"
    fi
}
mkdir -p ${registryStorageRoot} && cd ${registryStorageRoot} || exit 1
for top in blobs repositories; do
    [ ! -e "$stage/$top" ] || place "./$top" || exit 1
done
rm -rf "$stage"`;

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

/** What a cache's storage holds, as planCacheWrites reads it. */
function heldContent(storage: Omit<Storage, "manifests">) {
    return {
        blobs: new Set(storage.blobs.keys()),
        repositories: new Map(
            [...storage.repositories].map(([name, repository]) => [
                name,
                {
                    layers: repository.layers,
                    revisions: new Set(repository.revisions.keys()),
                    tags: new Map([...repository.tags].map(([tag, { digest }]) => [tag, digest])),
                },
            ]),
        ),
    };
}

/** The partial uploads of a pull the cache is storing now. */
const pullsInFlight = (storage: Omit<Storage, "manifests">) =>
    storage.uploads.filter((upload) => upload.state === "writing").map((upload) => upload.path);

/**
 * Refuses, before anything is written, an import a cache cannot take now: one storing a pull,
 * or one whose disk cannot hold what the import adds (volumes on one disk share its space).
 */
function checkCaches(file: string, targets: readonly ImportTarget[]) {
    const uploads = targets.map(({ storage }) => pullsInFlight(storage));
    const pulling = uploads.findIndex((paths) => paths.length > 0);
    if (pulling >= 0)
        throw new BundleError(
            file,
            `the ${targets[pulling].cache.registry} cache is storing a pull in flight (${uploads[pulling][0]}); import once it is done`,
        );
    const needs = targets
        .map(({ cache, steps, storage, space }) => ({
            cache,
            space,
            needed: bytesToAdd(steps, heldContent(storage)),
        }))
        .filter(({ needed }) => needed > 0);
    const disks = new Map<string, { freeBytes: number; needed: number; caches: string[] }>();
    needs.forEach(({ cache, needed, space }) => {
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

/** Each cache the bundle's images go to: what it holds now, and what the import writes there. */
interface ImportTarget {
    cache: CacheEndpoint;
    storage: Omit<Storage, "manifests">;
    space: VolumeSpace;
    steps: ImageSteps[];
}

/**
 * What an import reads of a cache, in one `docker exec`: what its storage holds of the import's
 * repositories ("$@" after the supervisor's script, "$1") and blobs (stdin), the partial uploads
 * and the disk's room; so its cost does not grow with what else the cache holds. Unless a dry
 * run, it also clears what killed imports staged there.
 */
const targetScript = (dryRun: boolean) => `supervisor=$1
shift
(${scopedListingScript})
sh -c "$supervisor" sh uploads
${volumeSpaceScript}
${dryRun ? "" : `mkdir -p ${stagingFolder} && rm -rf ${stagingFolder}/*`}`;

/**
 * Each cache the bundle's images go to: what it holds now and its disk's room, and what the
 * import writes there. Unless `dryRun`, what killed imports staged there goes too.
 */
function readTargets(
    docker: DockerCli,
    images: readonly ImportImage[],
    caches: readonly CacheEndpoint[],
    dryRun: boolean,
): Promise<ImportTarget[]> {
    return Promise.all(
        caches
            .filter((cache) => images.some((image) => image.reference.registry === cache.registry))
            .map(async (cache) => {
                const own = images.filter((image) => image.reference.registry === cache.registry);
                const blobs = new Set(
                    own
                        .flatMap((image) => [...image.manifests, ...image.blobs])
                        .map((blob) => blob.digest),
                );
                const output = await docker
                    .withInput(
                        [...blobs].map((digest) => `${storagePaths.blobData(digest)}\n`).join(""),
                        ...["exec", "-i", cache.container, "sh", "-c", targetScript(dryRun)],
                        ...["sh", readCacheSupervisor()],
                        ...new Set(own.map((image) => image.reference.repository)),
                    )
                    .catch((error: Error) => {
                        throw new RegistryError(
                            `the ${cache.registry} cache cannot be read (${error.message}); is the stack up (npm run up)?`,
                        );
                    });
                const storage = parseListing(output);
                return {
                    cache,
                    storage,
                    space: parseVolumeSpace(output),
                    steps: planCacheWrites(own, heldContent(storage)),
                };
            }),
    );
}

/** One cache's side of an import: what it writes, staged where. */
interface CacheImport {
    cache: CacheEndpoint;
    steps: ImageSteps[];
    writes: StorageWrites;
    /** The staging folder's name under stagingFolder. */
    stage: string;
}

/**
 * The tar `docker cp` unpacks into the staging folder: every staged file under `stage/`, blobs
 * read from the bundle and checked against their digest as they pass.
 */
function stagingTar(file: string, bundle: Bundle, target: CacheImport) {
    const options = { mtime: new Date() };
    return tarStream(
        target.writes.files.map((staged) => ({
            name: `${target.stage}/${staged.path}`,
            options,
            ...("content" in staged
                ? { size: staged.content.length, bytes: staged.content }
                : { size: staged.size, bytes: checkedBlob(file, bundle, staged) }),
        })),
    );
}

/** A blob's bytes out of the bundle; once all have passed, an error if they are not its digest. */
async function* checkedBlob(file: string, bundle: Bundle, blob: { digest: string; size: number }) {
    const hash = createHash("sha256");
    let read = 0;
    for await (const chunk of bundle.stream(blob.digest) as AsyncIterable<Buffer>) {
        hash.update(chunk);
        read += chunk.length;
        yield chunk;
    }
    const actual = `sha256:${hash.digest("hex")}`;
    if (read !== blob.size || actual !== blob.digest)
        throw new BundleError(
            file,
            `blob ${blob.digest} does not match its digest (its bytes hash to ${actual})`,
        );
}

/** Sends a cache's staged files into its volume, in one stream. */
async function sendStaged(docker: DockerCli, file: string, bundle: Bundle, target: CacheImport) {
    await docker.streaming(["cp", "-", `${target.cache.container}:${stagingFolder}`], ({ stdin }) =>
        pipeline(Readable.from(stagingTar(file, bundle, target)), stdin),
    );
}

/** Moves a cache's staged files into its storage. */
async function commit(docker: DockerCli, target: CacheImport) {
    await docker(
        ...["exec", target.cache.container, "sh", "-c", commitScript],
        ...["sh", `${stagingFolder}/${target.stage}`],
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
    { dryRun, onImage = () => {} }: ImportOptions,
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
    const targets = await readTargets(docker, plan.images, caches, dryRun);
    checkCaches(file, targets);
    const imports: CacheImport[] = targets.map(({ cache, steps, storage }) => ({
        cache,
        steps,
        writes: planStorageWrites(steps, heldContent(storage)),
        stage: randomBytes(4).toString("hex"),
    }));
    const report = (images: ImportedImage[]): ImportReport => ({
        bundle: file,
        dryRun,
        images,
        sentBytes: images.reduce((sum, image) => sum + image.sentBytes, 0),
        seconds: (Date.now() - started) / 1000,
    });
    if (dryRun) {
        const planned = imports.flatMap(({ cache, steps, writes }) => {
            const toSend = new Set(writes.sent);
            return steps.map((step) => importedImage(cache, step, toSend));
        });
        planned.forEach((image) => onImage(image));
        return report(planned);
    }
    const writing = imports.filter(({ writes }) => writes.files.length > 0);
    try {
        // Every cache has all it needs before anything is moved into place anywhere: a bad blob
        // for one cache leaves the repositories of all of them as they were.
        const staged = await Promise.allSettled(
            writing.map((target) => sendStaged(docker, file, bundle, target)),
        );
        const failed = staged.find((result) => result.status === "rejected");
        if (failed) throw failed.reason;
    } catch (error) {
        await Promise.all(
            writing.map(({ cache, stage }) =>
                docker("exec", cache.container, "rm", "-rf", `${stagingFolder}/${stage}`).catch(
                    () => "",
                ),
            ),
        );
        throw error;
    }
    const images = await Promise.all(
        imports.map(async (target) => {
            if (target.writes.files.length > 0) await commit(docker, target);
            const sent = new Set(target.writes.sent);
            const results = target.steps.map((step) => importedImage(target.cache, step, sent));
            results.forEach((image) => onImage(image));
            return results;
        }),
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
