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
