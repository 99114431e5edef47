/**
 * The files the program ships into its containers, read from container/ beside this repo's code.
 * Kept apart from core/ so the plan stays pure: callers read once and pass the text in.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { renderSupervisor } from "../core/container-facts";

/** container/cache-supervisor.sh, the cache's entry command, rendered with core/container-facts.ts. */
export function readCacheSupervisor(): string {
    return renderSupervisor(
        readFileSync(path.join(__dirname, "../container/cache-supervisor.sh"), "utf8"),
    );
}

/** The text of container/front-entry.sh, the front's entry command. */
export function readFrontEntry(): string {
    return readFileSync(path.join(__dirname, "../container/front-entry.sh"), "utf8");
}
