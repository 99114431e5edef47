/**
 * Just enough of the tar format (POSIX ustar, with the pax and GNU extensions other writers use)
 * to write a bundle as one `.tar` and to find each file in one without unpacking it, and to
 * stream an import into a volume and a Talos image cache into its layer. The header
 * codec is node-tar's (`Header`, `Pax`). Its archive streams are not used: a bundle's blobs go
 * into the tar in parallel, each at an offset worked out beforehand, and reading seeks to each
 * file's bytes by the offsets of the headers; node-tar (like tar-stream) packs and extracts one
 * entry after another. Pure: reading and writing files is the caller's.
 */
import { Header, Pax } from "tar";

export const tarBlock = 512;
/** Two zero blocks end an archive. */
export const tarEnd = Buffer.alloc(2 * tarBlock);

/** Zero bytes that bring a file of `size` bytes to a whole block. */
export const tarPadding = (size: number) => (tarBlock - (size % tarBlock)) % tarBlock;

/**
 * The header of a regular file (or, with `type`, a folder): one ustar block, led by a pax header
 * when the path is too long for ustar's name and prefix fields.
 */
export function tarHeader(
    name: string,
    size: number,
    { type = "File", mode = type === "File" ? 0o644 : 0o755, mtime = epoch }: TarEntryOptions = {},
): Buffer {
    const fields = { path: name, type, mode, uid: 0, gid: 0, size, mtime };
    const block = Buffer.alloc(tarBlock);
    // node-tar writes sizes past 8 GiB in GNU's base-256 form, as Go's writer does; it asks for
    // pax for those too, which only a path too long for name and prefix needs.
    const needsPax = new Header(fields).encode(block, 0) && Buffer.byteLength(name) > 100;
    return needsPax ? Buffer.concat([new Pax(fields).encode(), block]) : block;
}

export interface TarEntryOptions {
    type?: "File" | "Directory";
    mode?: number;
    mtime?: Date;
}

const epoch = new Date(0);

/** One file (or folder) of a tar stream: its bytes at hand, or exactly `size` of them streamed. */
export interface TarEntry {
    name: string;
    size: number;
    options?: TarEntryOptions;
    bytes: Uint8Array | AsyncIterable<Uint8Array>;
}

/** A tar archive of `entries`, in order, as chunks: headers, bytes, padding, the end marker. */
export async function* tarStream(entries: Iterable<TarEntry>): AsyncGenerator<Uint8Array> {
    for (const entry of entries) {
        yield tarHeader(entry.name, entry.size, entry.options);
        if (entry.bytes instanceof Uint8Array) yield entry.bytes;
        else yield* entry.bytes;
        yield Buffer.alloc(tarPadding(entry.size));
    }
    yield tarEnd;
}

/** What one header block says; `type` is the typeflag (`0` a file, `x` pax, `L` a GNU long name). */
export type TarHeader =
    | { kind: "end" }
    | { kind: "invalid" }
    | { kind: "entry"; name: string; size: number; type: string };

/** Reads a header block: an entry, the end of the archive (a zero block), or not a header. */
export function parseTarHeader(block: Buffer): TarHeader {
    if (block.length < tarBlock) return { kind: "invalid" };
    let header: Header;
    try {
        header = new Header(block);
    } catch {
        return { kind: "invalid" };
    }
    if (header.nullBlock) return { kind: "end" };
    if (!header.cksumValid) return { kind: "invalid" };
    return {
        kind: "entry",
        name: header.path ?? "",
        size: header.size ?? 0,
        type: header.typeKey === "" ? "0" : header.typeKey,
    };
}

/** A pax extended header's records: the path and size they override, when they do. */
export function parsePaxRecords(data: Buffer): { path?: string; size?: number } {
    const pax = Pax.parse(data.toString("utf8"), {}, false);
    return {
        ...(pax.path !== undefined ? { path: pax.path } : {}),
        ...(pax.size !== undefined ? { size: pax.size } : {}),
    };
}

/** A path inside an archive as a layout names it: no `./`, no trailing `/`. */
export const normalTarPath = (name: string) => name.replace(/^(?:\.\/)+/, "").replace(/\/+$/, "");
