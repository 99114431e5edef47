/**
 * What `npm run prune` removes, decided from each cache's storage and the front's ledger: the least
 * recently pulled images first, never one in the prewarm list or one being pulled, and then the
 * blobs no remaining image needs. The registry's own `garbage-collect` cannot do this on a live
 * cache: it deletes layers shared with kept images when run beside a running registry (seen on
 * 3.0.0), so the mark phase is done here, over every stored manifest and its platforms. Pure:
 * tools/prune.ts reads the caches and applies the plan.
 *
 * "Last pulled" is the latest of: the front's ledger (core/ledger.ts), the record
 * prune keeps in each volume (pulledRecordFile), the tag's link (rewritten by every online pull
 * by tag) and when the image was stored.
 */
import { ImageReference } from "./image-reference";
import { CacheEndpoint } from "./plan";
import { PartialUpload, Storage, StoredImage, storagePaths, storedImages } from "./storage-layout";
import { formatBytes, formatUtc } from "./format";
import type { ForgottenPulls } from "./ledger";

/**
 * A pull whose manifest was fetched this recently and whose blobs have not all been fetched
 * since may still be running; a blob stored this recently and not yet listed by any manifest may
 * belong to a pull in flight. Neither is pruned.
 */
export const inFlightSeconds = 600;

/** What the front's ledger says about one cache's pulls, times in epoch seconds. */
export interface PullActivity {
    /** `<repository>:<tag>` or `<repository>@<digest>` → the last manifest request for it. */
    manifests: Map<string, number>;
    /** Blob digest → the last time it was sent in full or from the front's cache. */
    blobs: Map<string, number>;
}

/** One cache's storage and what is known of its pulls. */
export interface CacheContents {
    cache: Pick<CacheEndpoint, "registry" | "container">;
    storage: Storage;
    activity: PullActivity;
}

export type KeepReason = "prewarm" | "in flight";

export interface PruneOptions {
    /** Remove images until the caches hold at most this many bytes. */
    targetBytes?: number;
    /** Remove every image not pulled for this long. */
    olderThanSeconds?: number;
    /** The prewarm list: never removed. */
    keep: readonly ImageReference[];
    /** Epoch seconds. */
    now: number;
}

export interface ImageVerdict {
    image: string;
    registry: string;
    /** Epoch seconds. */
    lastPulled: number;
    /** Bytes its removal freed (or would free): blobs no remaining image needs. */
    freedBytes: number;
    kept?: KeepReason;
}

export interface PrunePlan {
    heldBytes: number;
    targetBytes?: number;
    olderThanSeconds?: number;
    removed: ImageVerdict[];
    /** Images that would otherwise have gone. */
    protected: ImageVerdict[];
    /** Blobs no image lists, stored before the in-flight window. */
    strayBytes: number;
    /** Partial uploads nobody writes any more: what cut fetches left behind. */
    staleUploadBytes: number;
    freedBytes: number;
    /** What each cache's removal takes away, as paths under the storage root. */
    paths: Map<string, string[]>;
    /** Last pulled, per remaining image: the record each volume keeps. */
    records: Map<string, Map<string, number>>;
    /** What the front's ledger may forget once the removals are done. */
    forgotten: ForgottenPulls;
}

interface Candidate extends StoredImage {
    registry: string;
    name: string;
    lastPulled: number;
    kept?: KeepReason;
}

const imageName = (registry: string, image: StoredImage) =>
    image.tags.length > 0
        ? `${registry}/${image.repository}:${image.tags[0]}`
        : `${registry}/${image.repository}@${image.digest}`;

function lastPulled(image: StoredImage, storage: Storage, activity: PullActivity): number {
    const times = [
        image.stored,
        storage.pulled.get(`${image.repository}@${image.digest}`) ?? 0,
        ...image.tags.map(
            (tag) => storage.repositories.get(image.repository)?.tags.get(tag)?.modified ?? 0,
        ),
        ...image.tags.map((tag) => activity.manifests.get(`${image.repository}:${tag}`) ?? 0),
        ...image.manifests.map(
            (digest) => activity.manifests.get(`${image.repository}@${digest}`) ?? 0,
        ),
    ];
    return Math.max(...times);
}

/**
 * In flight: one of its manifests was asked for within the window (by tag for a single-platform
 * image, by digest otherwise), and some config or layer of it has not been sent since.
 */
function inFlight(image: StoredImage, contents: CacheContents, now: number): boolean {
    const { storage, activity } = contents;
    return image.manifests.some((digest) => {
        const requested = Math.max(
            activity.manifests.get(`${image.repository}@${digest}`) ?? 0,
            ...(digest === image.digest
                ? image.tags.map((tag) => activity.manifests.get(`${image.repository}:${tag}`) ?? 0)
                : []),
        );
        if (now - requested >= inFlightSeconds) return false;
        const refs = storage.manifests.get(digest);
        if (!refs) return true;
        return refs.blobs.some((blob) => (activity.blobs.get(blob) ?? 0) < requested);
    });
}

function isKept(registry: string, image: StoredImage, keep: readonly ImageReference[]) {
    return keep.some(
        (ref) =>
            ref.registry === registry &&
            ref.repository === image.repository &&
            (ref.digest ? image.manifests.includes(ref.digest) : image.tags.includes(ref.tag!)),
    );
}

const sum = (sizes: number[]) => sizes.reduce((total, size) => total + size, 0);

/** One cache's side of a plan: how many remaining images use each blob, and what goes. */
interface Ledger {
    storage: Storage;
    users: Map<string, number>;
    freed: Set<string>;
}

/**
 * Decides what goes: stray blobs first, then images in order of last pull, oldest first, while
 * one is older than `olderThanSeconds` or the caches hold more than `targetBytes`.
 */
export function planPrune(contents: readonly CacheContents[], options: PruneOptions): PrunePlan {
    const candidates = contents.flatMap((cache) => candidatesOf(cache, options));
    const ledgers = new Map(
        contents.map((cache) => [cache.cache.registry, openLedger(cache, candidates, options.now)]),
    );
    const ledgerBytes = (select: (ledger: Ledger) => Iterable<string>) =>
        sum([...ledgers.values()].map((ledger) => bytesOf(ledger, select(ledger))));
    const heldBytes = ledgerBytes((ledger) => ledger.storage.blobs.keys()) + uploadBytes(contents);
    const strayBytes = ledgerBytes((ledger) => ledger.freed);
    const staleUploadBytes = uploadBytes(contents, "stale");
    const { removed, verdicts, protectedImages, held } = chooseRemovals(
        candidates,
        ledgers,
        options,
        heldBytes - strayBytes - staleUploadBytes,
    );
    const remaining = candidates.filter((image) => !removed.includes(image));
    const ofCache = (images: Candidate[], registry: string) =>
        images.filter((image) => image.registry === registry);
    return {
        heldBytes,
        targetBytes: options.targetBytes,
        olderThanSeconds: options.olderThanSeconds,
        removed: verdicts,
        protected: protectedImages,
        strayBytes,
        staleUploadBytes,
        freedBytes: heldBytes - held,
        paths: new Map(
            [...ledgers].map(([registry, ledger]) => [
                registry,
                [
                    ...ledger.storage.uploads
                        .filter((upload) => upload.state === "stale")
                        .map((upload) => upload.path),
                    ...removalPaths(
                        ledger.storage,
                        ofCache(removed, registry),
                        ofCache(remaining, registry),
                        ledger.freed,
                    ),
                ],
            ]),
        ),
        records: new Map(
            [...ledgers.keys()].map((registry) => [
                registry,
                new Map(
                    ofCache(remaining, registry).map((image) => [
                        `${image.repository}@${image.digest}`,
                        image.lastPulled,
                    ]),
                ),
            ]),
        ),
        forgotten: new Map(
            [...ledgers].map(([registry, ledger]) => [
                registry,
                forgottenPulls(ofCache(removed, registry), ofCache(remaining, registry), ledger),
            ]),
        ),
    };
}

/** The ledger keys of removed images that no remaining image has, and the blobs that go. */
function forgottenPulls(
    removed: readonly Candidate[],
    remaining: readonly Candidate[],
    ledger: Ledger,
) {
    const keys = (image: Candidate) => [
        ...image.tags.map((tag) => `${image.repository}:${tag}`),
        ...image.manifests.map((digest) => `${image.repository}@${digest}`),
    ];
    const kept = new Set(remaining.flatMap(keys));
    return {
        manifests: [...new Set(removed.flatMap(keys))].filter((key) => !kept.has(key)),
        blobs: [...ledger.freed],
    };
}

/** Each image a cache stores, with when it was last pulled and whether it must stay. */
function candidatesOf(contents: CacheContents, options: PruneOptions): Candidate[] {
    const { registry } = contents.cache;
    return storedImages(contents.storage).map((image) => ({
        ...image,
        registry,
        name: imageName(registry, image),
        lastPulled: lastPulled(image, contents.storage, contents.activity),
        kept: isKept(registry, image, options.keep)
            ? ("prewarm" as const)
            : inFlight(image, contents, options.now)
              ? ("in flight" as const)
              : undefined,
    }));
}

/** A cache's ledger before any image goes: its blobs' users, and its stray blobs as freed. */
function openLedger(
    contents: CacheContents,
    candidates: readonly Candidate[],
    now: number,
): Ledger {
    const { cache, storage } = contents;
    const users = new Map<string, number>();
    for (const image of candidates.filter((image) => image.registry === cache.registry))
        for (const blob of image.blobs) users.set(blob, (users.get(blob) ?? 0) + 1);
    // Blobs no manifest lists, unless stored so recently that a pull may be adding them.
    const strays = [...storage.blobs]
        .filter(([digest, blob]) => !users.has(digest) && now - blob.modified >= inFlightSeconds)
        .map(([digest]) => digest);
    return { storage, users, freed: new Set(strays) };
}

const bytesOf = (ledger: Ledger, blobs: Iterable<string>) =>
    sum([...blobs].map((blob) => ledger.storage.blobs.get(blob)!.size));

/** Partial uploads take disk like blobs: a fetch in flight counts, and what a cut one left goes. */
const uploadBytes = (contents: readonly CacheContents[], state?: PartialUpload["state"]) =>
    sum(
        contents.flatMap(({ storage }) =>
            storage.uploads
                .filter((upload) => !state || upload.state === state)
                .map((upload) => upload.size),
        ),
    );

/**
 * Walks the images by last pull, oldest first, removing each one that is too old or while the
 * caches are over budget, unless it must stay; `held` is what the caches hold once it is done.
 */
function chooseRemovals(
    candidates: readonly Candidate[],
    ledgers: ReadonlyMap<string, Ledger>,
    options: PruneOptions,
    heldBefore: number,
) {
    let held = heldBefore;
    const removed: Candidate[] = [];
    const verdicts: ImageVerdict[] = [];
    const protectedImages: ImageVerdict[] = [];
    const byLastPull = [...candidates].sort(
        (a, b) => a.lastPulled - b.lastPulled || a.name.localeCompare(b.name),
    );
    for (const image of byLastPull) {
        const old =
            options.olderThanSeconds !== undefined &&
            options.now - image.lastPulled > options.olderThanSeconds;
        const over = options.targetBytes !== undefined && held > options.targetBytes;
        if (!old && !over) continue;
        if (image.kept) {
            protectedImages.push(verdictOn(image, 0));
            continue;
        }
        const freed = release(ledgers.get(image.registry)!, image);
        held -= freed;
        removed.push(image);
        verdicts.push(verdictOn(image, freed));
    }
    return { removed, verdicts, protectedImages, held };
}

/** Takes `image`'s uses off its cache's ledger; the bytes of the blobs it was the last user of. */
function release(ledger: Ledger, image: Candidate): number {
    const unused: string[] = [];
    for (const blob of image.blobs) {
        const users = ledger.users.get(blob)! - 1;
        ledger.users.set(blob, users);
        if (users === 0) unused.push(blob);
    }
    unused.forEach((blob) => ledger.freed.add(blob));
    return bytesOf(ledger, unused);
}

const verdictOn = (image: Candidate, freedBytes: number): ImageVerdict => ({
    image: image.name,
    registry: image.registry,
    lastPulled: image.lastPulled,
    freedBytes,
    ...(image.kept ? { kept: image.kept } : {}),
});

/** The record each volume keeps of when its remaining images were last pulled, as its file holds it. */
export function pulledRecord(plan: PrunePlan, registry: string): string {
    return [...(plan.records.get(registry) ?? [])]
        .map(([image, time]) => `${time} ${image}\n`)
        .join("");
}

/**
 * Paths under the storage root that remove `removed` and the `freed` blobs, keeping every link
 * a remaining image of the same repository still needs: tags first, then manifest revisions,
 * layer links, and last the blobs, so no image is ever listed with its content gone.
 */
function removalPaths(
    storage: Storage,
    removed: readonly StoredImage[],
    remaining: readonly StoredImage[],
    freed: ReadonlySet<string>,
): string[] {
    const tags: string[] = [];
    const revisions: string[] = [];
    const layers: string[] = [];
    for (const [repository, stored] of storage.repositories) {
        const gone = removed.filter((image) => image.repository === repository);
        const kept = remaining.filter((image) => image.repository === repository);
        const keptManifests = new Set(kept.flatMap((image) => image.manifests));
        const keptBlobs = new Set(kept.flatMap((image) => image.blobs));
        const goneBlobs = new Set(gone.flatMap((image) => image.blobs));
        for (const image of gone) {
            for (const tag of image.tags) tags.push(storagePaths.tag(repository, tag));
            for (const manifest of image.manifests)
                if (!keptManifests.has(manifest))
                    revisions.push(storagePaths.revisionLink(repository, manifest));
        }
        for (const layer of stored.layers)
            if (!keptBlobs.has(layer) && (goneBlobs.has(layer) || freed.has(layer)))
                layers.push(storagePaths.layerLink(repository, layer));
    }
    const blobs = [...freed].map(storagePaths.blob);
    return [...tags, ...new Set(revisions), ...layers, ...blobs];
}

const formatTime = (seconds: number) => formatUtc(new Date(seconds * 1000));

/** What prune did (or, on a dry run, would do), a line per image it removed. */
export function formatPrune(plan: PrunePlan, dryRun: boolean): string {
    const goal = [
        ...(plan.targetBytes !== undefined ? [`to ${formatBytes(plan.targetBytes)}`] : []),
        ...(plan.olderThanSeconds !== undefined
            ? [`images not pulled for ${formatAge(plan.olderThanSeconds)}`]
            : []),
    ].join(", and ");
    const verb = dryRun ? "would remove" : "removed";
    const lines = [
        `Pruning ${goal}; the caches hold ${formatBytes(plan.heldBytes)}. Least recently pulled first:`,
        ...plan.removed.map(
            (image) =>
                `  ${verb}  ${image.image}  ${formatBytes(image.freedBytes)}, last pulled ${formatTime(image.lastPulled)}`,
        ),
        ...plan.protected.map(
            (image) =>
                `  kept (${image.kept})  ${image.image}, last pulled ${formatTime(image.lastPulled)}`,
        ),
    ];
    if (plan.removed.length === 0 && plan.protected.length === 0) lines.push("  nothing to remove");
    const left = plan.heldBytes - plan.freedBytes;
    const stray = [
        ...(plan.strayBytes > 0
            ? [`, ${formatBytes(plan.strayBytes)} of it in blobs no image listed`]
            : []),
        ...(plan.staleUploadBytes > 0
            ? [`, ${formatBytes(plan.staleUploadBytes)} in partial uploads of cut fetches`]
            : []),
    ].join("");
    lines.push(
        `${dryRun ? "Would free" : "Freed"} ${formatBytes(plan.freedBytes)}${stray}: ${formatBytes(left)} left.`,
    );
    if (!withinBudget(plan))
        lines.push(
            `Still over ${formatBytes(plan.targetBytes!)}: what is left is in the prewarm list or being pulled.`,
        );
    return lines.join("\n");
}

/** `prune --json`: the plan's figures, times as ISO 8601. */
export function pruneReport(plan: PrunePlan, dryRun: boolean, ok: boolean) {
    const listed = (image: ImageVerdict) => ({
        ...image,
        lastPulled: new Date(image.lastPulled * 1000).toISOString(),
    });
    return {
        ok,
        dryRun,
        heldBytes: plan.heldBytes,
        targetBytes: plan.targetBytes ?? null,
        olderThanSeconds: plan.olderThanSeconds ?? null,
        freedBytes: plan.freedBytes,
        strayBytes: plan.strayBytes,
        staleUploadBytes: plan.staleUploadBytes,
        leftBytes: plan.heldBytes - plan.freedBytes,
        removed: plan.removed.map(listed),
        kept: plan.protected.map(listed),
    };
}

export function withinBudget(plan: PrunePlan): boolean {
    return plan.targetBytes === undefined || plan.heldBytes - plan.freedBytes <= plan.targetBytes;
}

const ageUnits = { d: 86_400, h: 3_600, m: 60, s: 1 } as const;

/** `--older-than`: a whole or decimal number of days, hours, minutes or seconds (`7d`, `36h`). */
export function parseAge(text: string): number | undefined {
    const match = /^(\d+(?:\.\d+)?)([dhms])$/.exec(text);
    return match ? Number(match[1]) * ageUnits[match[2] as keyof typeof ageUnits] : undefined;
}

function formatAge(seconds: number): string {
    const [unit, size] = Object.entries(ageUnits).find(([, size]) => seconds % size === 0)!;
    return `${seconds / size}${unit}`;
}
