/**
 * The files the program ships into its containers, read from container/ beside this repo's code.
 * Kept apart from core/ so the plan stays pure: callers read once and pass the text in.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { renderSupervisor } from "../core/container-facts";
import { FrontScripts } from "../core/front";

/** container/cache-supervisor.sh, the cache's entry command, rendered with core/container-facts.ts. */
export function readCacheSupervisor(): string {
    return renderSupervisor(
        readFileSync(path.join(__dirname, "../container/cache-supervisor.sh"), "utf8"),
    );
}

/** The front's entry command (container/front-entry.sh) and the ledger's fold (container/ledger.awk). */
export function readFrontScripts(): FrontScripts {
    const read = (file: string) => readFileSync(path.join(__dirname, "../container", file), "utf8");
    return { entry: read("front-entry.sh"), ledgerProgram: read("ledger.awk") };
}
