/**
 * `npm run export <bundle>`: writes what the caches hold as one OCI image layout (a directory, or
 * a `.tar` of one), readable without Pullthrough (`skopeo copy oci:…`, `ctr image import`, oras).
 * Each image is an `index.json` entry annotated with its full reference, so one bundle carries
 * every registry; a blob shared by images or registries is stored once; digests are kept, so an
 * imported image answers by the same digest a node asks for.
 *
 * Content is read through each cache's read-only view (tools/cache-view.ts): only what the
 * volume holds, never the upstream, and every manifest and blob is checked against its digest on
 * the way out, so a corrupt copy stops the export instead of travelling.
 */
import { viewClient } from "./cache-view";
import { ImageReference } from "../core/image-reference";
import { Platform, formatPlatform } from "../core/images";
import { Descriptor, Manifest, renderBundleIndex } from "../core/oci";
import { BundleWriter } from "../host/oci-layout";
import { formatBytes } from "../core/format";
import { RegistryClient, RegistryError, matchesPlatform } from "./registry-client";
import { CacheView, RoutedImage } from "./types";
import { limiter } from "./warm";

export interface ExportedImage {
    image: string;
    registry: string;
    digest: string;
    /** The platforms carried, for an index; empty for a single-platform image. */
    platforms: string[];
    blobs: number;
    bytes: number;
}

export interface ExportReport {
    bundle: string;
    images: ExportedImage[];
    /** Images left out, with why: only when exporting everything the caches hold. */
    skipped: { image: string; reason: string }[];
    /** Distinct blobs written (manifests, configs, layers) and their bytes. */
    blobs: number;
    blobBytes: number;
    /** The bundle's own size: blobs plus layout files (and tar headers). */
    bundleBytes: number;
    seconds: number;
}

/** An image as a cache holds it: the manifests to carry and every config and layer they name. */
interface HeldImage {
    routed: RoutedImage;
    client: RegistryClient;
    manifests: Manifest[];
    blobs: Descriptor[];
    platforms: string[];
}

/** Thrown when a named image is not whole in its cache; nothing is written then. */
export class NotHeld extends Error {
    constructor(
        readonly image: string,
        readonly reason: string,
    ) {
        super(`${image}: ${reason}`);
        this.name = "NotHeld";
    }
}

/**
 * Reads what the cache holds of `image`: the top manifest, and for an index each platform
 * manifest that is stored (`platforms`, when given, must all be among them); then checks that
 * every blob is there.
 */
async function readHeldImage(
    client: RegistryClient,
    image: ImageReference,
    platforms: readonly Platform[] | undefined,
): Promise<Omit<HeldImage, "routed" | "client">> {
    const manifestOrUndefined = (reference: string) =>
        client.manifest(image.repository, reference).catch((error: unknown) => {
            if (error instanceof RegistryError && error.status === 404) return undefined;
            throw error;
        });
    const top = await manifestOrUndefined(image.reference);
    if (!top) throw new NotHeld(image.canonical, "not in the cache");
    let children: Manifest[] = [];
    const carried: string[] = [];
    if (top.isIndex) {
        const wanted = top.manifests.filter(
            (entry) =>
                !platforms ||
                platforms.some((platform) => matchesPlatform(entry.platform, platform)),
        );
        const read = await Promise.all(wanted.map((entry) => manifestOrUndefined(entry.digest)));
        children = read.filter((child): child is Manifest => child !== undefined);
        wanted.forEach((entry, index) => {
            if (read[index] && entry.platform) carried.push(formatPlatform(entry.platform));
        });
        const missing = (platforms ?? []).filter(
            (platform) =>
                !wanted.some(
                    (entry, index) => read[index] && matchesPlatform(entry.platform, platform),
                ),
        );
        if (missing.length > 0)
            throw new NotHeld(
                image.canonical,
                `not held for ${missing.map(formatPlatform).join(", ")}`,
            );
        if (children.length === 0)
            throw new NotHeld(image.canonical, "none of its platforms is held");
    }
    const blobs = [
        ...new Map(
            (top.isIndex ? children : [top])
                .flatMap((m) => m.blobs)
                .map((blob) => [blob.digest, blob]),
        ).values(),
    ];
    const held = await Promise.all(
        blobs.map((blob) => client.hasBlob(image.repository, blob.digest)),
    );
    const absent = blobs.filter((_, index) => !held[index]);
    if (absent.length > 0)
        throw new NotHeld(
            image.canonical,
            `${absent.length} of ${blobs.length} blobs not in the cache (${absent[0].digest.slice(0, 19)}…)`,
        );
    return { manifests: [top, ...children], blobs, platforms: carried };
}

/**
 * Writes `images` to a bundle at `destination` (a `.tar` or a directory), replacing one there
 * only once the new one is whole.
 *
 * @param views each cache's read-only view, by registry
 * @param platforms the platforms of an index to carry; all the cache holds when undefined
 * @param skipIncomplete leave out (and report) images that are not whole in their cache, rather
 *   than fail: for exporting everything, where a half-stored pull is no reason to stop
 * @throws NotHeld when an image is not whole in its cache and `skipIncomplete` is not set
 */
export async function exportBundle(
    destination: string,
    images: readonly RoutedImage[],
    views: ReadonlyMap<string, CacheView>,
    options: {
        platforms?: readonly Platform[];
        /** Requests in flight at once (default 4). */
        concurrency?: number;
        skipIncomplete?: boolean;
        onImage?: (image: ExportedImage) => void;
    } = {},
): Promise<ExportReport> {
    const started = Date.now();
    const run = limiter(options.concurrency ?? 4);
    const { held, skipped } = await readHeldImages(images, views, options, run);
    const distinct = new Map(
        held.flatMap((image) =>
            [...image.manifests, ...image.blobs].map((blob) => [blob.digest, blob.size]),
        ),
    );
    const writer = new BundleWriter(destination, distinct);
    const abort = () => {
        writer.abort();
        process.exit(130);
    };
    process.once("SIGINT", abort).once("SIGTERM", abort);
    try {
        const exported = await Promise.all(
            held.map(async (image) => {
                const done = await writeImage(writer, image, run);
                options.onImage?.(done);
                return done;
            }),
        );
        await writer.commit(
            renderBundleIndex(
                held.map((image) => ({
                    reference: image.routed.image.canonical,
                    manifest: image.manifests[0],
                })),
            ),
        );
        return {
            bundle: destination,
            images: exported,
            skipped,
            blobs: distinct.size,
            blobBytes: [...distinct.values()].reduce((sum, size) => sum + size, 0),
            bundleBytes: writer.bytes,
            seconds: (Date.now() - started) / 1000,
        };
    } catch (error) {
        writer.abort();
        throw error;
    } finally {
        process.off("SIGINT", abort).off("SIGTERM", abort);
    }
}

type Limiter = ReturnType<typeof limiter>;

/** What the caches hold of each image; with `skipIncomplete`, the images left out and why. */
async function readHeldImages(
    images: readonly RoutedImage[],
    views: ReadonlyMap<string, CacheView>,
    options: { platforms?: readonly Platform[]; skipIncomplete?: boolean },
    run: Limiter,
): Promise<{ held: HeldImage[]; skipped: ExportReport["skipped"] }> {
    const skipped: ExportReport["skipped"] = [];
    const read = await Promise.all(
        images.map((routed) =>
            run(async (): Promise<HeldImage | undefined> => {
                const view = views.get(routed.cache.registry)!;
                const client = viewClient(view, routed.cache.registry);
                try {
                    const held = await readHeldImage(client, routed.image, options.platforms);
                    return { routed, client, ...held };
                } catch (error) {
                    if (!(error instanceof NotHeld) || !options.skipIncomplete) throw error;
                    skipped.push({ image: error.image, reason: error.reason });
                    return undefined;
                }
            }),
        ),
    );
    return { held: read.filter((image): image is HeldImage => image !== undefined), skipped };
}

/** Writes one image's manifests and blobs into the bundle (each blob once, whoever asks first). */
async function writeImage(
    writer: BundleWriter,
    image: HeldImage,
    run: Limiter,
): Promise<ExportedImage> {
    const { repository } = image.routed.image;
    for (const manifest of image.manifests)
        await writer.addBlob(manifest.digest, (sink) => sink(manifest.bytes));
    await Promise.all(
        image.blobs.map((blob) =>
            run(() =>
                writer.addBlob(blob.digest, (sink) =>
                    image.client.fetchBlob(repository, blob.digest, undefined, sink),
                ),
            ),
        ),
    );
    return {
        image: image.routed.image.canonical,
        registry: image.routed.cache.registry,
        digest: image.manifests[0].digest,
        platforms: image.platforms,
        blobs: image.blobs.length,
        bytes: image.blobs.reduce((sum, blob) => sum + blob.size, 0),
    };
}

export function formatExport(report: ExportReport): string {
    const registries = new Set(report.images.map((image) => image.registry)).size;
    return [
        ...report.skipped.map((image) => `skipped   ${image.image}: ${image.reason}`),
        `Wrote ${report.bundle}: ${report.images.length} images from ${registries} registr${registries === 1 ? "y" : "ies"}, ${report.blobs} distinct blobs (${formatBytes(report.blobBytes)}); the bundle is ${formatBytes(report.bundleBytes)}. ${report.seconds.toFixed(1)} s.`,
    ].join("\n");
}

export const formatExportedImage = (image: ExportedImage) =>
    `exported  ${image.image}  ${image.blobs} blobs, ${formatBytes(image.bytes)}${image.platforms.length > 0 ? ` (${image.platforms.join(", ")})` : ""}`;
