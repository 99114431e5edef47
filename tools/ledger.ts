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
import { EnvironmentError } from "./types";

/** The front container that serves `caches` (one front serves them all), if one runs. */
const frontOfStack = async (docker: DockerCli, caches: readonly CacheEndpoint[]) =>
    caches.length > 0 ? frontOf(docker, caches[0].port) : undefined;

/** The ledger of the front that serves `caches`; undefined when no front publishes their ports. */
export async function readFrontLedger(
    docker: DockerCli,
    caches: readonly CacheEndpoint[],
): Promise<Ledger | undefined> {
    const front = await frontOfStack(docker, caches);
    if (!front) return undefined;
    // Fixed-length hex: one sync's id is never a prefix of another's in the record.
    const syncId = randomBytes(8).toString("hex");
    try {
        return parseLedger(await docker("exec", front, "sh", "-c", ledgerReadScript(syncId)));
    } catch (error) {
        if (exitCodeOf(error) === noLedgerExitCode)
            throw new EnvironmentError(
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
    const front = await frontOfStack(docker, caches);
    if (!front || lines.length === 0) return;
    await docker.withInput(
        lines.map((line) => `${line}\n`).join(""),
        ...["exec", "-i", front, "sh", "-c", ledgerWriteScript()],
    );
}
