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
