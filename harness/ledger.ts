/**
 * The front's ledger program (container/ledger.awk) run on this host, as the front runs it: lines
 * in nginx's format on its input, the record it writes parsed as the tools parse it. The host's
 * awk is mawk on Debian, as in the Debian nginx image; the front image fixture runs busybox awk.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Ledger, LedgerLine, formatLedgerLine, parseLedger } from "../core/ledger";

const program = path.join(__dirname, "../container/ledger.awk");

/**
 * Folds `input` (pull lines, or `sync <id>` lines) into the record at `record`, or a fresh one;
 * `started` is when counting begins for a record that does not exist yet.
 */
export function foldLedger(
    input: readonly (LedgerLine | string)[],
    { record, started = 1_700_000_000 }: { record?: string; started?: number } = {},
): Ledger {
    const dir = record ? undefined : mkdtempSync(path.join(tmpdir(), "pt-ledger-"));
    const file = record ?? path.join(dir!, "ledger");
    try {
        const lines = input.map((line) =>
            typeof line === "string" ? line : formatLedgerLine(line),
        );
        execFileSync("awk", ["-v", `record=${file}`, "-v", `started=${started}`, "-f", program], {
            input: lines.map((line) => `${line}\n`).join(""),
        });
        return parseLedger(readFileSync(file, "utf8"));
    } finally {
        if (dir) rmSync(dir, { recursive: true, force: true });
    }
}
