/**
 * Bundles on disk: an OCI image layout (image-spec `image-layout.md`) as a directory or as one
 * `.tar` of that directory. Reading finds every blob without unpacking a tar (each file's offset
 * comes from its header), so an import streams blobs straight out of the archive. Writing goes to
 * a `.partial-…` sibling that is renamed into place only once `index.json` is in it, so an
 * interrupted export never leaves anything under the bundle's name.
 */
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import {
    closeSync,
    createReadStream,
    createWriteStream,
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
    WriteStream,
} from "node:fs";
import { open } from "node:fs/promises";
import * as path from "node:path";
import { Readable } from "node:stream";
import { ConfigError, formatKey } from "../mirrors";
import { BundleToImport } from "../core/prewarm";
import {
    OciIndex,
    indexFile,
    layoutBlobPath,
    ociLayoutFile,
    ociLayoutVersion,
    parseBundleIndex,
    renderOciLayout,
    sha256Digest,
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
export function openBundle(file: string): Bundle {
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
        const match = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name);
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
                ? createReadStream(path.join(file, layoutBlobPath(digest)))
                : createReadStream(file, {
                      start: span.offset,
                      end: span.offset + span.size - 1,
                  });
        },
    };
}

/** The digest of a bundle's `index.json`: it changes whenever what the bundle carries does. */
export function bundleFingerprint(file: string): string {
    return sha256Digest(openBundle(file).indexBytes);
}

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
        let pax: Record<string, string> = {};
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
            const size = pax.size !== undefined ? Number(pax.size) : header.size;
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
export const isTarBundle = (file: string) => file.endsWith(".tar");

/**
 * Writes a bundle to a `.partial-…` sibling of `destination`; `commit` renames it into place
 * (replacing an earlier bundle there) once `index.json` is written, `abort` removes it. Blobs
 * of a tar go in one after another, in the order `addBlob` is called.
 */
export class BundleWriter {
    private readonly partial: string;
    private tar?: WriteStream;
    private readonly written = new Set<string>();
    /** Serialises a tar's blobs: each is a header, its bytes and padding in a row. */
    private queue: Promise<void> = Promise.resolve();
    /** Bytes written so far: the bundle's size once committed. */
    bytes = 0;

    constructor(readonly destination: string) {
        this.partial = `${destination}.partial-${randomBytes(4).toString("hex")}`;
        try {
            if (isTarBundle(destination)) {
                // Opened here, so a folder that is not there is an error now, not an event later.
                this.tar = createWriteStream("", { fd: openSync(this.partial, "wx") });
                this.writeFileSync(ociLayoutFile, Buffer.from(renderOciLayout()));
            } else {
                mkdirSync(path.join(this.partial, "blobs", "sha256"), { recursive: true });
                writeFileSync(path.join(this.partial, ociLayoutFile), renderOciLayout());
            }
        } catch (error) {
            throw new BundleError(destination, `cannot be written (${(error as Error).message})`);
        }
    }

    /** The path being written, for messages. */
    get partialPath(): string {
        return this.partial;
    }

    /**
     * Adds a blob of `size` bytes, which `fill` hands to the sink it is given; a blob already in
     * the bundle is skipped.
     */
    addBlob(
        digest: string,
        size: number,
        fill: (sink: (chunk: Uint8Array) => Promise<void>) => Promise<unknown>,
    ): Promise<void> {
        if (this.written.has(digest)) return Promise.resolve();
        this.written.add(digest);
        const name = layoutBlobPath(digest);
        if (!this.tar) {
            const out = createWriteStream(path.join(this.partial, name), { flags: "wx" });
            return this.fillStream(out, size, name, fill).then(() => endStream(out));
        }
        const tar = this.tar;
        const added = this.queue.then(async () => {
            await write(tar, tarHeader(name, size));
            await this.fillStream(tar, size, name, fill);
            await write(tar, Buffer.alloc(tarPadding(size)));
            this.bytes += tarBlock + tarPadding(size);
        });
        this.queue = added.catch(() => undefined);
        return added;
    }

    /** Writes `index.json` last and moves the bundle into place. */
    async commit(index: string): Promise<void> {
        await this.queue;
        const bytes = Buffer.from(index);
        if (this.tar) {
            this.writeFileSync(indexFile, bytes);
            await write(this.tar, tarEnd);
            this.bytes += tarEnd.length;
            await endStream(this.tar);
            syncFile(this.partial);
            renameSync(this.partial, this.destination);
            return;
        }
        const indexPath = path.join(this.partial, indexFile);
        writeFileSync(indexPath, bytes);
        syncFile(indexPath);
        this.bytes += bytes.length;
        // A directory cannot be renamed over a non-empty one: the old bundle steps aside first.
        const old = `${this.partial}.old`;
        const replacing = existsSync(this.destination);
        if (replacing) renameSync(this.destination, old);
        renameSync(this.partial, this.destination);
        if (replacing) rmSync(old, { recursive: true, force: true });
    }

    /** Removes what was written. */
    abort(): void {
        this.tar?.destroy();
        rmSync(this.partial, { recursive: true, force: true });
    }

    private writeFileSync(name: string, bytes: Buffer) {
        this.tar!.write(Buffer.concat([tarHeader(name, bytes.length), bytes]));
        this.tar!.write(Buffer.alloc(tarPadding(bytes.length)));
        this.bytes += tarBlock + bytes.length + tarPadding(bytes.length);
    }

    private async fillStream(
        out: WriteStream,
        size: number,
        name: string,
        fill: (sink: (chunk: Uint8Array) => Promise<void>) => Promise<unknown>,
    ) {
        let filled = 0;
        await fill(async (chunk) => {
            filled += chunk.length;
            if (filled > size) throw new Error(`${name} is larger than its ${size} bytes`);
            await write(out, chunk);
        });
        if (filled !== size) throw new Error(`${name} has ${filled} bytes, not ${size}`);
        this.bytes += size;
    }
}

async function write(stream: WriteStream, chunk: Uint8Array): Promise<void> {
    if (!stream.write(chunk)) await once(stream, "drain");
}

async function endStream(stream: WriteStream): Promise<void> {
    stream.end();
    await once(stream, "finish");
}

function syncFile(file: string) {
    const descriptor = openSync(file, "r+");
    try {
        fsyncSync(descriptor);
    } finally {
        closeSync(descriptor);
    }
}

/**
 * The bundle `importFrom` names, resolved against the project folder, with its fingerprint.
 *
 * @throws ConfigError naming `importFrom` when the bundle cannot be read
 */
export function bundleToImport(
    importFrom: string | undefined,
    projectDir: string,
): BundleToImport | undefined {
    if (importFrom === undefined) return undefined;
    const file = path.resolve(projectDir, importFrom);
    try {
        return { path: file, fingerprint: bundleFingerprint(file) };
    } catch (error) {
        if (!(error instanceof BundleError)) throw error;
        throw new ConfigError([
            `${formatKey(["importFrom"])}: ${error.message}; expected a bundle made by npm run export`,
        ]);
    }
}
