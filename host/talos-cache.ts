/**
 * Talos image caches on disk (core/talos-cache.ts has the layout): the flat tree `export --format
 * talos-cache` writes and `import` reads, and the OCI form `--format talos-cache-oci` writes, one
 * image whose gzipped layer is that tree. Like a bundle, each is written beside its destination
 * and moved into place only once whole.
 */
import { createHash, randomBytes } from "node:crypto";
import {
    closeSync,
    createReadStream,
    createWriteStream,
    existsSync,
    mkdirSync,
    openSync,
    readFileSync,
    readdirSync,
    rmSync,
    statSync,
    writeFileSync,
} from "node:fs";
import * as path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { sha256Digest } from "../core/digest";
import { HeldImage } from "../core/held-image";
import { Platform } from "../core/images";
import {
    Descriptor,
    OciIndex,
    containerdNameAnnotation,
    mediaTypes,
    parseManifest,
} from "../core/oci";
import {
    ociConfigType,
    ociGzipLayer,
    parseTalosCachePath,
    renderTalosCacheConfig,
    renderTalosCacheIndex,
    renderTalosCacheManifest,
    talosCacheFolders,
    talosCachePaths,
} from "../core/talos-cache";
import { tarStream } from "../core/tar";
import {
    BlobSink,
    Bundle,
    BundleError,
    BundleWriter,
    LayoutWriter,
    WriterFor,
    replaceDirectory,
    readChunk,
    writeAt,
} from "./oci-layout";

const partialName = (destination: string) =>
    `${destination}.partial-${randomBytes(4).toString("hex")}`;

/** Writes the flat tree into `folder`: blobs as they stream in, manifests once all are. */
class FlatTreeWriter {
    bytes = 0;

    constructor(readonly folder: string) {
        try {
            mkdirSync(path.join(folder, talosCacheFolders.blobs), { recursive: true });
            mkdirSync(path.join(folder, talosCacheFolders.manifests));
        } catch (error) {
            throw new BundleError(folder, `cannot be written (${(error as Error).message})`);
        }
    }

    openBlob(digest: string): BlobSink {
        const descriptor = openSync(path.join(this.folder, talosCachePaths.blob(digest)), "wx");
        let filled = 0;
        return {
            write: (chunk) => {
                writeAt(descriptor, chunk, filled);
                filled += chunk.length;
            },
            close: () => {
                closeSync(descriptor);
                this.bytes += filled;
            },
        };
    }

    /** Each image's manifests: by tag (the top one, as served), and every one by digest. */
    writeManifests(images: readonly HeldImage[]) {
        const write = (file: string, bytes: Buffer) => {
            const full = path.join(this.folder, file);
            mkdirSync(path.dirname(full), { recursive: true });
            writeFileSync(full, bytes);
            this.bytes += bytes.length;
        };
        for (const { image, manifests } of images) {
            if (image.tag) write(talosCachePaths.reference(image, image.tag), manifests[0].bytes);
            for (const manifest of manifests)
                write(talosCachePaths.manifest(image, manifest.digest), manifest.bytes);
        }
    }

    abort() {
        rmSync(this.folder, { recursive: true, force: true });
    }
}

/** The flat layout at `destination`, a directory `cache-serve --image-cache-path` serves. */
export const talosCache =
    (destination: string): WriterFor =>
    () => {
        const tree = new FlatTreeWriter(partialName(destination));
        return {
            get bytes() {
                return tree.bytes;
            },
            openBlob: (digest) => tree.openBlob(digest),
            commit: async (images) => {
                tree.writeManifests(images);
                replaceDirectory(tree.folder, destination);
            },
            abort: () => tree.abort(),
        } satisfies LayoutWriter;
    };

/**
 * The OCI form at `destination` (a directory, or one `.tar`): what the imager's `--image-cache`
 * takes. The tree is written first beside it, then packed into the layer.
 */
export const talosCacheOci =
    (destination: string, platform: Platform): WriterFor =>
    () => {
        const tree = new FlatTreeWriter(partialName(`${destination}.tree`));
        let bundle: BundleWriter | undefined;
        return {
            get bytes() {
                return bundle?.bytes ?? 0;
            },
            openBlob: (digest) => tree.openBlob(digest),
            commit: async (images) => {
                tree.writeManifests(images);
                const layerFile = `${tree.folder}.layer`;
                try {
                    const layer = await packTree(tree.folder, layerFile);
                    const config = renderTalosCacheConfig(layer.diffId, platform, new Date());
                    const configDescriptor = descriptorOf(ociConfigType, config);
                    const layerDescriptor = {
                        mediaType: ociGzipLayer,
                        digest: layer.digest,
                        size: layer.size,
                    };
                    const manifest = renderTalosCacheManifest(configDescriptor, layerDescriptor);
                    const manifestDescriptor = descriptorOf(mediaTypes.ociManifest, manifest);
                    bundle = new BundleWriter(
                        destination,
                        new Map([
                            [layer.digest, layer.size],
                            [configDescriptor.digest, config.length],
                            [manifestDescriptor.digest, manifest.length],
                        ]),
                    );
                    const sink = bundle.openBlob(layer.digest);
                    for await (const chunk of createReadStream(layerFile, {
                        highWaterMark: readChunk,
                    }))
                        sink.write(chunk as Buffer);
                    sink.close();
                    bundle.addBlob(configDescriptor.digest, config);
                    bundle.addBlob(manifestDescriptor.digest, manifest);
                    await bundle.commit(renderTalosCacheIndex(manifestDescriptor, platform));
                } finally {
                    rmSync(layerFile, { force: true });
                    tree.abort();
                }
            },
            abort: () => {
                bundle?.abort();
                tree.abort();
            },
        } satisfies LayoutWriter;
    };

const descriptorOf = (mediaType: string, bytes: Buffer): Descriptor => ({
    mediaType,
    digest: sha256Digest(bytes),
    size: bytes.length,
});

/** Every folder and file under `root`, relative, sorted by path as `filemap.Layer` sorts them. */
function treeEntries(root: string): { name: string; folder: boolean }[] {
    const entries: { name: string; folder: boolean }[] = [];
    const walk = (relative: string) => {
        for (const entry of readdirSync(path.join(root, relative), { withFileTypes: true })) {
            const name = relative ? `${relative}/${entry.name}` : entry.name;
            entries.push({ name, folder: entry.isDirectory() });
            if (entry.isDirectory()) walk(name);
        }
    };
    walk("");
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Packs `root` into a gzipped tar at `file` (gzip's fastest level, ggcr's default), hashing both
 * forms on the way: the layer's digest and its diff ID.
 */
async function packTree(
    root: string,
    file: string,
): Promise<{ digest: string; size: number; diffId: string }> {
    const tarHash = createHash("sha256");
    const gzipHash = createHash("sha256");
    let size = 0;
    const tar = tarStream(
        treeEntries(root).map(({ name, folder }) => {
            if (folder)
                return { name, size: 0, options: { type: "Directory" }, bytes: Buffer.alloc(0) };
            const full = path.join(root, name);
            return { name, size: statSync(full).size, bytes: readWhenAsked(full) };
        }),
    );
    const hashing = (hash: ReturnType<typeof createHash>, count = false) =>
        new Transform({
            transform(chunk: Buffer, _encoding, done) {
                hash.update(chunk);
                if (count) size += chunk.length;
                done(null, chunk);
            },
        });
    await pipeline(
        Readable.from(tar),
        hashing(tarHash),
        createGzip({ level: 1 }),
        hashing(gzipHash, true),
        createWriteStream(file),
    );
    return {
        digest: `sha256:${gzipHash.digest("hex")}`,
        size,
        diffId: `sha256:${tarHash.digest("hex")}`,
    };
}

/** A file's bytes, opened only once a reader gets to it (a tree may hold more files than fds). */
async function* readWhenAsked(file: string): AsyncGenerator<Uint8Array> {
    yield* createReadStream(file, { highWaterMark: readChunk });
}

/** Whether `folder` is laid out as a flat Talos image cache: `blob/` and `manifests/`. */
export const isTalosCache = (folder: string) =>
    existsSync(path.join(folder, talosCacheFolders.blobs)) &&
    existsSync(path.join(folder, talosCacheFolders.manifests));

/**
 * Opens a flat Talos image cache as a bundle: one entry per tag it holds (`reference/<tag>`),
 * named by its full reference, whose manifest is that file's bytes. A manifest is found by digest
 * among the `digest/` files, configs and layers among `blob/`.
 */
export function openTalosCache(folder: string): Bundle {
    const files = new Map<string, string>();
    const blobs = new Map<string, number>();
    const manifests: OciIndex["manifests"] = [];
    for (const { name, folder: isFolder } of treeEntries(folder)) {
        if (isFolder) continue;
        const file = parseTalosCachePath(name);
        const full = path.join(folder, name);
        if (file.kind === "blob" || file.kind === "manifest") {
            if (!files.has(file.digest)) files.set(file.digest, full);
            blobs.set(file.digest, statSync(full).size);
        } else if (file.kind === "reference") {
            const bytes = readFileSync(full);
            let mediaType: string = mediaTypes.ociManifest;
            try {
                mediaType = parseManifest(bytes).mediaType;
            } catch {
                // planImport names a manifest that is not JSON.
            }
            manifests.push({
                mediaType,
                digest: sha256Digest(bytes),
                size: bytes.length,
                annotations: { [containerdNameAnnotation]: file.image.canonical },
            });
        }
    }
    const index: OciIndex = { schemaVersion: 2, manifests };
    const fileOf = (digest: string) => {
        const file = files.get(digest);
        if (!file) throw new BundleError(folder, `holds no blob ${digest}`);
        return file;
    };
    return {
        path: folder,
        format: "directory",
        index,
        indexBytes: Buffer.from(JSON.stringify(index)),
        blobs,
        read: async (digest) => readFileSync(fileOf(digest)),
        stream: (digest) => createReadStream(fileOf(digest), { highWaterMark: readChunk }),
    };
}
