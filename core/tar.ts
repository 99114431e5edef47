/**
 * Just enough of the tar format (POSIX ustar, with the pax and GNU extensions other writers use)
 * to write a bundle as one `.tar` and to find each file in one without unpacking it. Pure: the
 * header codec only; reading and writing files is the caller's.
 */

export const tarBlock = 512;
/** Two zero blocks end an archive. */
export const tarEnd = Buffer.alloc(2 * tarBlock);

/** Zero bytes that bring a file of `size` bytes to a whole block. */
export const tarPadding = (size: number) => (tarBlock - (size % tarBlock)) % tarBlock;

/** Octal sizes fit 11 digits (8 GiB); GNU's base-256 form takes larger ones, as Go's writer does. */
const largestOctal = 8 ** 11 - 1;

/** A ustar header for a regular file; names are the layout's own, well under 100 bytes. */
export function tarHeader(name: string, size: number): Buffer {
    if (Buffer.byteLength(name) > 100) throw new Error(`tar: ${name} is longer than 100 bytes`);
    const header = Buffer.alloc(tarBlock);
    const octal = (value: number, width: number) =>
        `${value.toString(8).padStart(width - 1, "0")}\0`;
    header.write(name, 0, 100, "utf8");
    header.write(octal(0o644, 8), 100, "ascii");
    header.write(octal(0, 8), 108, "ascii");
    header.write(octal(0, 8), 116, "ascii");
    if (size <= largestOctal) header.write(octal(size, 12), 124, "ascii");
    else {
        header[124] = 0x80;
        header.writeBigUInt64BE(BigInt(size), 128);
    }
    header.write(octal(0, 12), 136, "ascii");
    header.write(" ".repeat(8), 148, "ascii");
    header.write("0", 156, "ascii");
    header.write("ustar\0", 257, "ascii");
    header.write("00", 263, "ascii");
    const checksum = header.reduce((sum, byte) => sum + byte, 0);
    header.write(`${checksum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
    return header;
}

/** What one header block says. */
export type TarHeader =
    | { kind: "end" }
    | { kind: "invalid" }
    | { kind: "entry"; name: string; size: number; type: string };

const text = (block: Buffer, start: number, length: number) => {
    const field = block.subarray(start, start + length);
    const end = field.indexOf(0);
    return field.subarray(0, end < 0 ? length : end).toString("utf8");
};

function numeric(block: Buffer, start: number, length: number): number {
    if (block[start] & 0x80) {
        let value = 0;
        for (let i = start + 1; i < start + length; i++) value = value * 256 + block[i];
        return value;
    }
    const digits = text(block, start, length).trim();
    return digits === "" ? 0 : parseInt(digits, 8);
}

/** Reads a header block: an entry, the end of the archive (a zero block), or not a header. */
export function parseTarHeader(block: Buffer): TarHeader {
    if (block.length < tarBlock) return { kind: "invalid" };
    if (block.every((byte) => byte === 0)) return { kind: "end" };
    let sum = 0;
    for (let i = 0; i < tarBlock; i++) sum += i >= 148 && i < 156 ? 32 : block[i];
    if (sum !== numeric(block, 148, 8)) return { kind: "invalid" };
    const prefix = text(block, 257, 6).startsWith("ustar") ? text(block, 345, 155) : "";
    const name = text(block, 0, 100);
    return {
        kind: "entry",
        name: prefix ? `${prefix}/${name}` : name,
        size: numeric(block, 124, 12),
        type: String.fromCharCode(block[156] || 0x30),
    };
}

/** A pax extended header's records (`<length> <key>=<value>\n`). */
export function parsePaxRecords(data: Buffer): Record<string, string> {
    const records: Record<string, string> = {};
    let offset = 0;
    while (offset < data.length) {
        const space = data.indexOf(0x20, offset);
        const length = parseInt(data.subarray(offset, space).toString("ascii"), 10);
        if (space < 0 || !(length > 0)) break;
        const record = data.subarray(space + 1, offset + length - 1).toString("utf8");
        const equals = record.indexOf("=");
        if (equals > 0) records[record.slice(0, equals)] = record.slice(equals + 1);
        offset += length;
    }
    return records;
}

/** A path inside an archive as a layout names it: no `./`, no trailing `/`. */
export const normalTarPath = (name: string) => name.replace(/^(?:\.\/)+/, "").replace(/\/+$/, "");
