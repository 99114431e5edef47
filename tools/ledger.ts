/**
 * Reading the front's ledger (core/ledger.ts) through the front container: one `docker exec`
 * whose time and output grow with what the caches hold, whatever the front has served.
 */
import { randomBytes } from "node:crypto";
import {
    ForgottenPulls,
    Ledger,
    forgetLines,
    ledgerReadScript,
    ledgerWriteScript,
    noLedgerExitCode,
    parseLedger,
} from "../core/ledger";
import { CacheEndpoint } from "../core/plan";
import { DockerCli, exitCodeOf } from "./docker";
import { frontOf } from "./front";
import { UsageError } from "./types";

/** The ledger of the front that serves `caches`; undefined when no front publishes their ports. */
export async function readFrontLedger(
    docker: DockerCli,
    caches: readonly CacheEndpoint[],
): Promise<Ledger | undefined> {
    const front = caches.length > 0 ? await frontOf(docker, caches[0].port) : undefined;
    if (!front) return undefined;
    const syncId = randomBytes(8).toString("hex");
    try {
        return parseLedger(await docker("exec", front, "sh", "-c", ledgerReadScript(syncId)));
    } catch (error) {
        if (exitCodeOf(error) === noLedgerExitCode)
            throw new UsageError(
                `the front ${front} keeps no ledger (a Pullthrough older than the ledger made it); run npm run up`,
            );
        throw error;
    }
}

/** Has the ledger of the front serving `caches` forget `forgotten` (what a prune removed). */
export async function forgetInLedger(
    docker: DockerCli,
    caches: readonly CacheEndpoint[],
    forgotten: ForgottenPulls,
): Promise<void> {
    const lines = forgetLines(forgotten);
    const front = caches.length > 0 ? await frontOf(docker, caches[0].port) : undefined;
    if (!front || lines.length === 0) return;
    await docker.withInput(
        lines.map((line) => `${line}\n`).join(""),
        ...["exec", "-i", front, "sh", "-c", ledgerWriteScript()],
    );
}
