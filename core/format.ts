/** An instant as the tools print it: `2026-11-29 17:03:16 UTC`. */
export const formatUtc = (instant: Date) =>
    instant
        .toISOString()
        .replace("T", " ")
        .replace(/\.\d+Z$/, " UTC");

/** Decimal units, as registries and Docker report sizes: 1.5 kB, 2.3 GB. */
export function formatBytes(bytes: number): string {
    const units = ["B", "kB", "MB", "GB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
        value /= 1000;
        unit++;
    }
    return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

const sizeUnits: Readonly<Record<string, number>> = {
    B: 1,
    kB: 1e3,
    KB: 1e3,
    MB: 1e6,
    GB: 1e9,
    TB: 1e12,
    KiB: 2 ** 10,
    MiB: 2 ** 20,
    GiB: 2 ** 30,
    TiB: 2 ** 40,
};

/** `maxSize` and `prune --to`: "20GiB" → bytes; undefined when it is not a size. */
export function parseSize(text: string): number | undefined {
    const match = /^(\d+(?:\.\d+)?)([a-zA-Z]+)$/.exec(text);
    const unit = match && sizeUnits[match[2]];
    return unit ? Math.floor(Number(match[1]) * unit) : undefined;
}

/**
 * The cause of a failed command in one line: the last line of its stderr that says something
 * (the docker CLI and the scripts the tools run end with the error), at most 300 characters.
 */
export function oneLineCause(stderr: string, fallback: string): string {
    const last = stderr
        .split("\n")
        .map((line) => line.trim())
        .filter(Boolean)
        .at(-1);
    const cause = last ?? fallback.split("\n")[0].trim();
    return cause.length > 300 ? `${cause.slice(0, 297)}...` : cause;
}
