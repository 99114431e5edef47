/**
 * SIGINT and SIGTERM as errors: the first one rejects every pending `untilInterrupted`, so a tool
 * unwinds through its `finally` blocks (its views are removed) before it exits with 128 + the
 * signal's number. A second signal has the default effect: it ends the process at once.
 */
import { constants } from "node:os";

export class Interrupted extends Error {
    constructor(readonly signal: "SIGINT" | "SIGTERM") {
        super(`interrupted by ${signal}`);
        this.name = "Interrupted";
    }

    /** The shell's convention: 130 for SIGINT, 143 for SIGTERM. */
    get exitCode(): number {
        return 128 + constants.signals[this.signal];
    }
}

let interruption: Promise<never> | undefined;

/** Settles with an Interrupted on the first SIGINT or SIGTERM from now on; never resolves. */
export function interrupted(): Promise<never> {
    interruption ??= new Promise<never>((_, reject) => {
        for (const signal of ["SIGINT", "SIGTERM"] as const)
            process.once(signal, () => reject(new Interrupted(signal)));
    });
    // Nobody may be waiting when the signal comes: that is not an unhandled rejection.
    interruption.catch(() => undefined);
    return interruption;
}

/** `work`, unless a signal comes first. */
export const untilInterrupted = <T>(work: Promise<T>): Promise<T> =>
    Promise.race([work, interrupted()]);
