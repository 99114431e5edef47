/**
 * `npm run export <bundle>`: writes what the caches hold as one OCI image layout (a directory, or
 * a `.tar` of one), readable without Pullthrough (`skopeo copy oci:…`, `ctr image import`, oras),
 * or as a Talos image cache (host/talos-cache.ts). In a bundle each image is an `index.json` entry
 * annotated with its full reference, so one bundle carries every registry; a blob shared by images
 * or registries is stored once; digests are kept, so an imported image answers by the same digest
 * a node asks for.
 *
 * Content is read straight from each cache's storage through the engine's API (one `docker exec`
 * streams every blob a cache gives), never from an upstream; each byte is hashed once on the way,
 * and a blob whose bytes are not its digest stops the export instead of travelling.
 */
import { createHash } from "node:crypto";
import { HeldImage, resolveHeldImage } from "../core/held-image";
import { Platform } from "../core/images";
import { Manifest, parseManifest } from "../core/oci";
import { registryStorageRoot } from "../core/container-facts";
import { sha256Digest } from "../core/digest";
import {
    Storage,
    heldReferences,
    listingScript,
    parseListing,
    storageLayout,
    storagePaths,
    storedImages,
} from "../core/storage-layout";
import { BlobSink, LayoutWriter, WriterFor } from "../host/oci-layout";
import { formatBytes } from "../core/format";
import { CacheEndpoint } from "../core/plan";
import { DockerCli } from "./docker";
import { readStoredFiles } from "./storage";
import { EnvironmentError, RoutedImage, fail } from "./types";
import { routeImages } from "./warm";

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
    /** Distinct blobs carried (manifests, configs, layers), and their bytes. */
    blobs: number;
    blobBytes: number;
    /** What was written: blobs, manifests and layout files (and tar headers). */
    bundleBytes: number;
    seconds: number;
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

/** Thrown when a cache's copy of a blob is not its digest: the export stops, nothing written. */
export class CorruptInCache extends Error {
    constructor(registry: string, digest: string, actual: string) {
        super(
            `${digest} in the ${registry} cache does not match its digest (its bytes hash to ${actual}); run npm run verify -- --deep --repair`,
        );
        this.name = "CorruptInCache";
    }
}

/** An image held, with the cache it is read from. */
export interface ExportImage extends HeldImage {
    cache: CacheEndpoint;
}

/** One cache's side of an export: its listing and the manifests of the repositories asked for. */
interface CacheContent {
    cache: CacheEndpoint;
    routed: RoutedImage[];
    listing: Omit<Storage, "manifests">;
    manifests: Map<string, Manifest>;
}

/** A sink that hashes what passes and, at the end, checks it against `digest`. */
function verifying(sink: BlobSink, registry: string, digest: string): BlobSink {
    const hash = createHash("sha256");
    return {
        write: (chunk) => {
            hash.update(chunk);
            return sink.write(chunk);
        },
        close: () => {
            sink.close();
            const actual = `sha256:${hash.digest("hex")}`;
            if (actual !== digest) throw new CorruptInCache(registry, digest, actual);
        },
    };
}

/**
 * What an export reads of a cache first, in one `docker exec`: the storage listing, then each
 * manifest revision of the repositories given as "$@" (of every repository when none is), as a
 * `manifest DIGEST SIZE` line followed by its bytes and a newline.
 */
const contentScript = `(${listingScript})
cd ${registryStorageRoot} 2>/dev/null || exit 0
[ $# -gt 0 ] || set -- ""
for repository; do
    find "${storageLayout.repositories}/$repository" -path "*/${storageLayout.revisions}/*" -name link 2>/dev/null
done | while read -r link; do
    digest=$(cat "$link")
    hex=\${digest#sha256:}
    data=${storageLayout.blobs}/\${hex%"\${hex#??}"}/$hex/data
    [ -f "$data" ] || continue
    echo "manifest $digest $(stat -c %s "$data")"
    cat "$data"
    echo
done`;

/** Splits contentScript's output into the listing's lines and the manifests' bytes. */
function splitContent(output: Buffer): { listing: string; manifests: Map<string, Buffer> } {
    const lines: string[] = [];
    const manifests = new Map<string, Buffer>();
    for (let offset = 0; offset < output.length;) {
        const end = output.indexOf(10, offset);
        const line = output.toString("utf8", offset, end < 0 ? output.length : end);
        offset = end < 0 ? output.length : end + 1;
        const manifest = /^manifest (\S+) (\d+)$/.exec(line);
        if (!manifest) {
            lines.push(line);
            continue;
        }
        const size = Number(manifest[2]);
        manifests.set(manifest[1], output.subarray(offset, offset + size));
        offset += size + 1;
    }
    return { listing: lines.join("\n"), manifests };
}

/** Lists a cache's storage, and reads (and checks) the manifests of the repositories asked for. */
async function readCacheContent(
    docker: DockerCli,
    cache: CacheEndpoint,
    selected: RoutedImage[] | "all",
): Promise<CacheContent> {
    const repositories =
        selected === "all" ? [] : [...new Set(selected.map(({ image }) => image.repository))];
    const output = await docker
        .streaming(
            ["exec", cache.container, "sh", "-c", contentScript, "sh", ...repositories],
            async ({ stdout, stdin }) => {
                stdin.end();
                const chunks: Buffer[] = [];
                for await (const chunk of stdout as AsyncIterable<Buffer>) chunks.push(chunk);
                return Buffer.concat(chunks);
            },
        )
        .catch(() => {
            throw new EnvironmentError(
                `the cache container ${cache.container} (for ${cache.registry}) cannot be read; is the stack up (npm run up)?`,
            );
        });
    const content = splitContent(output);
    const manifests = new Map<string, Manifest>();
    for (const [digest, bytes] of content.manifests) {
        const actual = sha256Digest(bytes);
        if (actual !== digest) throw new CorruptInCache(cache.registry, digest, actual);
        try {
            manifests.set(digest, parseManifest(bytes));
        } catch {
            // Not a manifest: the images that name it are not held.
        }
    }
    const listing = parseListing(content.listing);
    const routed = selected === "all" ? heldImages(cache, listing, manifests) : selected;
    return { cache, routed, listing, manifests };
}

/** Every image a cache holds (each tag, and an untagged image by its digest), routed to it. */
function heldImages(
    cache: CacheEndpoint,
    listing: Omit<Storage, "manifests">,
    manifests: ReadonlyMap<string, Manifest>,
): RoutedImage[] {
    const refs = new Map(
        [...manifests].map(([digest, manifest]) => [
            digest,
            {
                children: manifest.manifests.map((child) => child.digest),
                blobs: manifest.blobs.map((blob) => blob.digest),
            },
        ]),
    );
    return routeImages(
        heldReferences(cache.registry, storedImages({ ...listing, manifests: refs })),
        [cache],
    );
}

/**
 * Writes `images` with the writer `writerFor` makes, replacing what is at its destination only
 * once the new one is whole.
 *
 * @param platforms the platforms of an index to carry; all the cache holds when undefined
 * @param skipIncomplete leave out (and report) images that are not whole in their cache, rather
 *   than fail: for exporting everything, where a half-stored pull is no reason to stop
 * @throws NotHeld when an image is not whole in its cache and `skipIncomplete` is not set;
 *   CorruptInCache when a stored blob is not its digest. Nothing is written then.
 */
export async function exportImages(
    docker: DockerCli,
    destination: string,
    images: readonly RoutedImage[] | { all: readonly CacheEndpoint[] },
    writerFor: WriterFor,
    options: {
        platforms?: readonly Platform[];
        skipIncomplete?: boolean;
        onImage?: (image: ExportedImage) => void;
    } = {},
): Promise<ExportReport> {
    const started = Date.now();
    const contents = await Promise.all(
        "all" in images
            ? images.all.map((cache) => readCacheContent(docker, cache, "all"))
            : [...byCache(images).values()].map((routed) =>
                  readCacheContent(docker, routed[0].cache, routed),
              ),
    );
    const { held, skipped } = resolveImages(contents, options);
    if (held.length === 0 && skipped.length === 0) fail("the caches hold no images to export");
    // Each distinct blob is read from the first cache that has it, in the order it is written.
    const readFrom = new Map<string, { cache: CacheEndpoint; size: number }>();
    for (const image of held)
        for (const blob of image.blobs)
            if (!readFrom.has(blob.digest))
                readFrom.set(blob.digest, { cache: image.cache, size: blob.size });
    const writer = writerFor(
        new Map([...readFrom].map(([digest, { size }]) => [digest, size])),
        held,
    );
    const abort = () => {
        writer.abort();
        process.exit(130);
    };
    process.once("SIGINT", abort).once("SIGTERM", abort);
    const waiting = new Map(
        held.map((image) => [image, new Set(image.blobs.map((blob) => blob.digest))]),
    );
    try {
        await streamBlobs(docker, readFrom, writer, (digest) => {
            for (const [image, blobs] of waiting) {
                if (!blobs.delete(digest) || blobs.size > 0) continue;
                waiting.delete(image);
                options.onImage?.(exportedImage(image));
            }
        });
        await writer.commit(held);
        const distinct = new Map([
            ...held.flatMap((image) => image.manifests.map((m) => [m.digest, m.size] as const)),
            ...[...readFrom].map(([digest, { size }]) => [digest, size] as const),
        ]);
        return {
            bundle: destination,
            images: held.map(exportedImage),
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

/** Images by the registry of their cache. */
function byCache(images: readonly RoutedImage[]): Map<string, RoutedImage[]> {
    const grouped = new Map<string, RoutedImage[]>();
    for (const routed of images)
        grouped.set(routed.cache.registry, [...(grouped.get(routed.cache.registry) ?? []), routed]);
    return grouped;
}

/** Streams each cache's blobs into the writer, checking each; `written` as each is whole. */
function streamBlobs(
    docker: DockerCli,
    readFrom: ReadonlyMap<string, { cache: CacheEndpoint; size: number }>,
    writer: LayoutWriter,
    written: (digest: string) => void,
) {
    const caches = new Set([...readFrom.values()].map(({ cache }) => cache));
    return Promise.all(
        [...caches].map((cache) => {
            const files = [...readFrom]
                .filter(([, from]) => from.cache === cache)
                .map(([digest, { size }]) => ({
                    digest,
                    path: storagePaths.blobData(digest),
                    size,
                }));
            return readStoredFiles(docker, cache.container, files, (_, index) => {
                const { digest } = files[index];
                const sink = verifying(writer.openBlob(digest), cache.registry, digest);
                return {
                    write: (chunk) => sink.write(chunk),
                    end: () => {
                        sink.close();
                        written(digest);
                    },
                };
            });
        }),
    );
}

/** The images held, in the order asked; with `skipIncomplete`, those left out and why. */
function resolveImages(
    contents: readonly CacheContent[],
    options: { platforms?: readonly Platform[]; skipIncomplete?: boolean },
): { held: ExportImage[]; skipped: ExportReport["skipped"] } {
    const held: ExportImage[] = [];
    const skipped: ExportReport["skipped"] = [];
    for (const { cache, routed, listing, manifests } of contents)
        for (const { image } of routed) {
            const resolved = resolveHeldImage(listing, manifests, image, options.platforms);
            if ("notHeld" in resolved) {
                if (!options.skipIncomplete) throw new NotHeld(image.canonical, resolved.notHeld);
                skipped.push({ image: image.canonical, reason: resolved.notHeld });
            } else held.push({ ...resolved, cache });
        }
    return { held, skipped };
}

function exportedImage(image: ExportImage): ExportedImage {
    return {
        image: image.image.canonical,
        registry: image.cache.registry,
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
