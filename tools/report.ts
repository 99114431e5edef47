/** What prewarm and verify print on a terminal: progress as it goes, and the summary after. */
import { formatBytes } from "../core/format";
import { PrewarmEvent, PrewarmResult, VerifyResult } from "./warm";

/** Fixed-width columns, first row the header. */
function table(rows: string[][]): string {
    const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
    return rows
        .map((row) =>
            row
                .map((cell, column) => cell.padEnd(widths[column]))
                .join("  ")
                .trimEnd(),
        )
        .join("\n");
}

export function formatVerifyReport(results: readonly VerifyResult[]): string {
    const statusOf = (result: VerifyResult) =>
        result.present ? "present" : result.corrupt?.length ? "corrupt" : "missing";
    const rows = results.map((result) => [
        result.image,
        statusOf(result),
        result.present
            ? `${result.blobs} blobs, ${formatBytes(result.bytes)}`
            : (result.reason ?? ""),
    ]);
    const count = (status: string) => results.filter((r) => statusOf(r) === status).length;
    const [missing, corrupt] = [count("missing"), count("corrupt")];
    const of = `of ${results.length} images`;
    const summary =
        missing + corrupt === 0
            ? `All ${results.length} images are in the caches.`
            : corrupt === 0
              ? `${missing} ${of} are missing.`
              : missing === 0
                ? `${corrupt} ${of} are corrupt.`
                : `${missing} ${of} are missing and ${corrupt} corrupt.`;
    return `${table([["IMAGE", "STATUS", "DETAIL"], ...rows])}\n\n${summary}`;
}

export function formatPrewarmSummary(results: readonly PrewarmResult[], seconds: number): string {
    const warmed = results.filter((result) => result.ok);
    const bytes = warmed.reduce((sum, result) => sum + result.bytes, 0);
    const transferred = results.reduce((sum, result) => sum + result.transferred, 0);
    const failed = results
        .filter((result) => !result.ok)
        .map((result) => `  ${result.image}: ${result.error}`);
    return [
        `Warmed ${warmed.length} of ${results.length} images (${formatBytes(bytes)}); read ${formatBytes(transferred)} through the caches in ${seconds.toFixed(1)} s (${formatBytes(transferred / Math.max(seconds, 0.001))}/s).`,
        ...(failed.length > 0 ? ["Failed:", ...failed] : []),
    ].join("\n");
}

/** How often the status line is redrawn on a terminal, at most. */
const redrawIntervalMs = 100;
/** How often a status line is printed without a terminal (CI, the Command inside `pulumi up`). */
export const progressIntervalMs = 10_000;

/**
 * Progress: a line per finished image, and the running total (images done, bytes, rate). On a
 * terminal the total is one status line redrawn at most every 100 ms; elsewhere it is a plain
 * line every 10 s, so a long pull never goes quiet. Call the returned `stop` when done.
 */
export function progressReporter(
    total: number,
    stream: Pick<NodeJS.WriteStream, "write" | "isTTY">,
    now: () => number = Date.now,
): { onEvent: (event: PrewarmEvent) => void; stop: () => void } {
    let bytes = 0;
    let finished = 0;
    const started = now();
    let drawn = 0;
    const status = () =>
        `[${finished}/${total} images, ${total - finished} left] ${formatBytes(bytes)} read, ${formatBytes(bytes / Math.max((now() - started) / 1000, 0.001))}/s`;
    const ticker = stream.isTTY
        ? undefined
        : setInterval(() => stream.write(`${status()}\n`), progressIntervalMs);
    ticker?.unref();
    const onEvent = (event: PrewarmEvent) => {
        if (event.kind === "bytes") {
            bytes += event.bytes;
            if (!stream.isTTY || now() - drawn < redrawIntervalMs) return;
            drawn = now();
            stream.write(`\r\x1b[K${status()}`);
            return;
        }
        if (event.kind !== "finished") return;
        finished++;
        const { result } = event;
        const line = result.ok
            ? `ok      ${result.image}  ${result.blobs} blobs, ${formatBytes(result.bytes)}, ${formatBytes(result.transferred)} read, ${result.seconds.toFixed(1)} s\n`
            : `FAILED  ${result.image}: ${result.error}\n`;
        stream.write(stream.isTTY ? `\r\x1b[K${line}${status()}` : line);
        if (stream.isTTY && finished === total) stream.write("\n");
    };
    return { onEvent, stop: () => clearInterval(ticker) };
}
