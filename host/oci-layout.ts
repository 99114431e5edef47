/**
 * Bundles on disk: an OCI image layout (image-spec `image-layout.md`) as a directory or as one
 * `.tar` of that directory. Reading finds every blob without unpacking a tar (each file's offset
 * comes from its header), so an import streams blobs straight out of the archive. Writing goes to
 * a `.partial-…` sibling that is renamed into place only once `index.json` is in it, so an
 * interrupted export never leaves anything under the bundle's name.
 */
import { randomBytes } from "node:crypto";
import { sha256Hex } from "../core/digest";
import {
    closeSync,
    createReadStream,
    existsSync,
    fstatSync,
    fsyncSync,
    mkdirSync,
    openSync,
    readFileSync,
    readSync,
    readdirSync,
    renameSync,
    rmSync,
    statSync,
    writeFileSync,
    writeSync,
} from "node:fs";
import { open } from "node:fs/promises";
import * as path from "node:path";
import { Readable } from "node:stream";
import { HeldImage } from "../core/held-image";
import {
    OciIndex,
    renderBundleIndex,
    indexFile,
    layoutBlobPath,
    ociLayoutFile,
    ociLayoutVersion,
    parseBundleIndex,
    renderOciLayout,
} from "../core/oci";
import {
    normalTarPath,
    parsePaxRecords,
    parseTarHeader,
    tarBlock,
    tarEnd,
    tarHeader,
    tarPadding,
} from "../core/tar";

/** A bundle that cannot be read: the message names the file and the cause, in one line. */
export class BundleError extends Error {
    constructor(file: string, cause: string) {
        super(`${file}: ${cause}`);
        this.name = "BundleError";
    }
}

export interface Bundle {
    path: string;
    format: "directory" | "tar";
    index: OciIndex;
    /** The bytes of `index.json`: its digest fingerprints the bundle. */
    indexBytes: Buffer;
    /** Size of each blob the bundle holds, by digest. */
    blobs: ReadonlyMap<string, number>;
    /** A blob's bytes, for manifests and configs. */
    read(digest: string): Promise<Buffer>;
    stream(digest: string): Readable;
}

/** Where a file's bytes are in a tar. */
interface TarSpan {
    offset: number;
    size: number;
}

/**
 * Opens a bundle: a directory holding `oci-layout`, or a `.tar` of one (any writer: ustar, pax
 * or GNU names). Checks the layout's version and `index.json`; blobs are read on demand.
 *
 * @throws BundleError naming the file and what is wrong with it
 */
export function openOciLayout(file: string): Bundle {
    let stat;
    try {
        stat = statSync(file);
    } catch {
        throw new BundleError(file, "no such file or directory");
    }
    const files = stat.isDirectory() ? directoryFiles(file) : tarFiles(file);
    const layout = files.get(ociLayoutFile);
    if (layout === undefined)
        throw new BundleError(file, `no ${ociLayoutFile} file: not an OCI image layout`);
    const readSmall = (name: string) => {
        const span = files.get(name)!;
        return stat.isDirectory()
            ? readFileSync(path.join(file, name))
            : readSpan(file, span.offset, span.size);
    };
    const version = (() => {
        try {
            return JSON.parse(readSmall(ociLayoutFile).toString("utf8")).imageLayoutVersion;
        } catch {
            return undefined;
        }
    })();
    if (version !== ociLayoutVersion)
        throw new BundleError(
            file,
            `${ociLayoutFile} says imageLayoutVersion ${JSON.stringify(version)}; expected "${ociLayoutVersion}"`,
        );
    if (!files.has(indexFile))
        throw new BundleError(file, `no ${indexFile}: not a whole OCI image layout`);
    const indexBytes = readSmall(indexFile);
    const index = parseBundleIndex(indexBytes.toString("utf8"));
    if (typeof index === "string") throw new BundleError(file, index);

    const blobs = new Map<string, number>();
    for (const [name, span] of files) {
        const match = new RegExp(`^blobs/sha256/(${sha256Hex})$`).exec(name);
        if (match) blobs.set(`sha256:${match[1]}`, span.size);
    }
    const spanOf = (digest: string) => {
        const span = files.get(layoutBlobPath(digest));
        if (!span) throw new BundleError(file, `holds no blob ${digest}`);
        return span;
    };
    return {
        path: file,
        format: stat.isDirectory() ? "directory" : "tar",
        index,
        indexBytes,
        blobs,
        read: async (digest) => {
            const span = spanOf(digest);
            if (stat.isDirectory()) return readFileSync(path.join(file, layoutBlobPath(digest)));
            const handle = await open(file);
            try {
                const buffer = Buffer.alloc(span.size);
                await handle.read(buffer, 0, span.size, span.offset);
                return buffer;
            } finally {
                await handle.close();
            }
        },
        stream: (digest) => {
            const span = spanOf(digest);
            return stat.isDirectory()
                ? createReadStream(path.join(file, layoutBlobPath(digest)), {
                      highWaterMark: readChunk,
                  })
                : createReadStream(file, {
                      start: span.offset,
                      end: span.offset + span.size - 1,
                      highWaterMark: readChunk,
                  });
        },
    };
}

/** Bundles are read in 1 MiB chunks: fewer round trips for the streams import and export send. */
export const readChunk = 1 << 20;

/** A layout directory's files, by their path in the layout; offsets are unused. */
function directoryFiles(directory: string): Map<string, TarSpan> {
    const files = new Map<string, TarSpan>();
    for (const name of [ociLayoutFile, indexFile]) {
        const full = path.join(directory, name);
        if (existsSync(full)) files.set(name, { offset: 0, size: statSync(full).size });
    }
    const blobDirectory = path.join(directory, "blobs", "sha256");
    if (existsSync(blobDirectory))
        for (const entry of readdirSync(blobDirectory, { withFileTypes: true }))
            if (entry.isFile())
                files.set(`blobs/sha256/${entry.name}`, {
                    offset: 0,
                    size: statSync(path.join(blobDirectory, entry.name)).size,
                });
    return files;
}

function readSpan(file: string, offset: number, size: number): Buffer {
    const descriptor = openSync(file, "r");
    try {
        const buffer = Buffer.alloc(size);
        const read = readSync(descriptor, buffer, 0, size, offset);
        return buffer.subarray(0, read);
    } finally {
        closeSync(descriptor);
    }
}

/**
 * A tar's regular files by path, from their headers alone. A file that runs past the end, or an
 * archive with no end marker, is a truncated archive: an error, never a smaller bundle.
 */
function tarFiles(file: string): Map<string, TarSpan> {
    const descriptor = openSync(file, "r");
    try {
        const fileSize = fstatSync(descriptor).size;
        const files = new Map<string, TarSpan>();
        const block = Buffer.alloc(tarBlock);
        let offset = 0;
        let longName: string | undefined;
        let pax: { path?: string; size?: number } = {};
        for (;;) {
            if (offset + tarBlock > fileSize)
                throw new BundleError(
                    file,
                    `truncated tar: it ends at byte ${fileSize} without an end-of-archive marker`,
                );
            readSync(descriptor, block, 0, tarBlock, offset);
            const header = parseTarHeader(block);
            if (header.kind === "end") return files;
            if (header.kind === "invalid")
                throw new BundleError(
                    file,
                    offset === 0
                        ? "neither a directory nor a tar archive"
                        : `not a valid tar: a broken header at byte ${offset}`,
                );
            const size = pax.size ?? header.size;
            const dataStart = offset + tarBlock;
            if (dataStart + size > fileSize)
                throw new BundleError(
                    file,
                    `truncated tar: ${header.name} needs ${dataStart + size - fileSize} bytes past its end`,
                );
            if (header.type === "x" || header.type === "L") {
                const data = readSpan(file, dataStart, size);
                if (header.type === "x") pax = parsePaxRecords(data);
                else longName = data.toString("utf8").replace(/\0+$/, "");
            } else {
                if (header.type === "0" || header.type === "7")
                    files.set(normalTarPath(pax.path ?? longName ?? header.name), {
                        offset: dataStart,
                        size,
                    });
                longName = undefined;
                pax = {};
            }
            offset = dataStart + size + tarPadding(size);
        }
    } finally {
        closeSync(descriptor);
    }
}

/** Whether `file` names a tar bundle rather than a directory. */
const isTarBundle = (file: string) => file.endsWith(".tar");

/** Where one blob's bytes go, in order; `close` once all of them have. */
export interface BlobSink {
    write(chunk: Uint8Array): void;
    close(): void;
}

/**
 * Writes a bundle of the blobs it is told of to a `.partial-…` sibling of `destination`;
 * `commit` renames it into place (replacing an earlier bundle there) once `index.json` is
 * written, `abort` removes it. Blobs go in at once, in any order: in a tar each has its place
 * worked out from the sizes beforehand (header, bytes, padding), so none waits for another, and
 * blobs streamed in the order they were told of are written front to back.
 */
export class BundleWriter {
    private readonly partial: string;
    /** A tar's file, and where each blob's header starts in it. */
    private readonly tar?: { descriptor: number; offsets: Map<string, number>; end: number };
    private readonly written = new Set<string>();

    /** @param blobs the size of every blob the bundle will hold, by digest */
    constructor(
        readonly destination: string,
        private readonly blobs: ReadonlyMap<string, number>,
    ) {
        this.partial = `${destination}.partial-${randomBytes(4).toString("hex")}`;
        try {
            if (isTarBundle(destination)) {
                const descriptor = openSync(this.partial, "wx");
                const layout = Buffer.from(renderOciLayout());
                let offset = writeTarFile(descriptor, 0, ociLayoutFile, layout);
                const offsets = new Map<string, number>();
                for (const [digest, size] of blobs) {
                    offsets.set(digest, offset);
                    offset += tarBlock + size + tarPadding(size);
                }
                this.tar = { descriptor, offsets, end: offset };
            } else {
                mkdirSync(path.join(this.partial, "blobs", "sha256"), { recursive: true });
                writeFileSync(path.join(this.partial, ociLayoutFile), renderOciLayout());
            }
        } catch (error) {
            throw new BundleError(destination, `cannot be written (${(error as Error).message})`);
        }
    }

    /** The bundle's size once committed: its blobs, and in a tar its headers and layout files. */
    get bytes(): number {
        return this.tar
            ? this.tar.end
            : [...this.blobs.values()].reduce((sum, size) => sum + size, 0);
    }

    /**
     * Opens a blob for writing; once only. `close` fails unless exactly its size was written.
     */
    openBlob(digest: string): BlobSink {
        const size = this.blobs.get(digest);
        if (size === undefined) throw new Error(`${digest} is not among the bundle's blobs`);
        if (this.written.has(digest)) throw new Error(`${digest} is written already`);
        this.written.add(digest);
        const name = layoutBlobPath(digest);
        const tar = this.tar;
        const start = tar ? tar.offsets.get(digest)! + tarBlock : 0;
        const descriptor = tar ? tar.descriptor : openSync(path.join(this.partial, name), "wx");
        if (tar) writeAt(descriptor, tarHeader(name, size), start - tarBlock);
        let filled = 0;
        return {
            write: (chunk) => {
                if (filled + chunk.length > size)
                    throw new Error(`${name} is larger than its ${size} bytes`);
                writeAt(descriptor, chunk, start + filled);
                filled += chunk.length;
            },
            close: () => {
                if (!tar) closeSync(descriptor);
                if (filled !== size) throw new Error(`${name} has ${filled} bytes, not ${size}`);
            },
        };
    }

    /** Adds a blob whose bytes are at hand; once only. */
    addBlob(digest: string, bytes: Uint8Array): void {
        const sink = this.openBlob(digest);
        sink.write(bytes);
        sink.close();
    }

    /** Writes `index.json` last and moves the bundle into place. */
    async commit(index: string): Promise<void> {
        const missing = [...this.blobs.keys()].filter((digest) => !this.written.has(digest));
        if (missing.length > 0) throw new Error(`${missing.length} blobs were never added`);
        const bytes = Buffer.from(index);
        if (this.tar) {
            const { descriptor } = this.tar;
            const last = writeTarFile(descriptor, this.tar.end, indexFile, bytes);
            writeSync(descriptor, tarEnd, 0, tarEnd.length, last);
            this.tar.end = last + tarEnd.length;
            // No fsync: an import checks every blob against its digest, so a bundle torn by a
            // crash is refused, never served.
            closeSync(descriptor);
            renameSync(this.partial, this.destination);
            return;
        }
        const indexPath = path.join(this.partial, indexFile);
        writeFileSync(indexPath, bytes);
        syncFile(indexPath);
        replaceDirectory(this.partial, this.destination);
    }

    /** Removes what was written. */
    abort(): void {
        if (this.tar) closeSync(this.tar.descriptor);
        rmSync(this.partial, { recursive: true, force: true });
    }
}

/** What an export writes into: an OCI bundle, or a Talos image cache (host/talos-cache.ts). */
export interface LayoutWriter {
    /** What was written, once committed. */
    readonly bytes: number;
    /** Opens a config or layer for writing. */
    openBlob(digest: string): BlobSink;
    /** Writes the images' manifests and whatever makes the whole; then moves it into place. */
    commit(images: readonly HeldImage[]): Promise<void>;
    /** Removes what was written. */
    abort(): void;
}

/** Makes the writer once the images are known: every config and layer, by digest, with its size. */
export type WriterFor = (
    blobs: ReadonlyMap<string, number>,
    images: readonly HeldImage[],
) => LayoutWriter;

/** An OCI image layout at `destination`: a directory, or one `.tar` when it ends so. */
export const ociBundle =
    (destination: string): WriterFor =>
    (blobs, images) => {
        const manifests = new Map(
            images.flatMap((image) =>
                image.manifests.map((manifest) => [manifest.digest, manifest]),
            ),
        );
        const writer = new BundleWriter(
            destination,
            new Map([
                ...[...manifests].map(([digest, manifest]) => [digest, manifest.size] as const),
                ...blobs,
            ]),
        );
        return {
            get bytes() {
                return writer.bytes;
            },
            openBlob: (digest) => writer.openBlob(digest),
            commit: async (held) => {
                for (const [digest, manifest] of manifests) writer.addBlob(digest, manifest.bytes);
                await writer.commit(
                    renderBundleIndex(
                        held.map((image) => ({
                            reference: image.image.canonical,
                            manifest: image.manifests[0],
                        })),
                    ),
                );
            },
            abort: () => writer.abort(),
        };
    };

/** Moves a finished directory into place; one there already steps aside first (a directory cannot be renamed over a non-empty one). */
export function replaceDirectory(finished: string, destination: string) {
    const old = `${finished}.old`;
    const replacing = existsSync(destination);
    if (replacing) renameSync(destination, old);
    renameSync(finished, destination);
    if (replacing) rmSync(old, { recursive: true, force: true });
}

/**
 * Writes all of `bytes` at `position` of an open file. Synchronously: into the page cache that
 * is a copy, and a round trip through libuv's pool per chunk would cost more than it.
 */
export function writeAt(descriptor: number, bytes: Uint8Array, position: number) {
    let done = 0;
    while (done < bytes.length)
        done += writeSync(descriptor, bytes, done, bytes.length - done, position + done);
}

/** Writes a small file's tar entry at `offset`; returns where the next entry starts. */
function writeTarFile(descriptor: number, offset: number, name: string, bytes: Buffer): number {
    writeSync(descriptor, tarHeader(name, bytes.length), 0, tarBlock, offset);
    writeSync(descriptor, bytes, 0, bytes.length, offset + tarBlock);
    const end = offset + tarBlock + bytes.length;
    const padding = tarPadding(bytes.length);
    if (padding > 0) writeSync(descriptor, Buffer.alloc(padding), 0, padding, end);
    return end + padding;
}

function syncFile(file: string) {
    const descriptor = openSync(file, "r+");
    try {
        fsyncSync(descriptor);
    } finally {
        closeSync(descriptor);
    }
}
