/**
 * The files the program ships into its containers and the data it plans with, read from this
 * package's folder. Kept apart from core/ so the plan stays pure: callers read once and pass the
 * text in.
 */
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { renderSupervisor } from "../core/container-facts";
import { FrontScripts } from "../core/front";

/**
 * This package's folder (the clone, or where npm put it), found upward from this file: the same
 * answer from the sources and from their build in dist/. Commands that run the tools run there.
 */
export const packageRoot = findPackageRoot(__dirname);

function findPackageRoot(start: string): string {
    for (let dir = start; ; dir = path.dirname(dir)) {
        if (existsSync(path.join(dir, "package.json")) && existsSync(path.join(dir, "container")))
            return dir;
        if (dir === path.dirname(dir)) throw new Error(`no pullthrough package above ${start}`);
    }
}

/** A file of this package, by its path in the repository. */
export const readPackageFile = (file: string) => readFileSync(path.join(packageRoot, file), "utf8");

/** container/cache-supervisor.sh, the cache's entry command, rendered with core/container-facts.ts. */
export function readCacheSupervisor(): string {
    return renderSupervisor(readPackageFile("container/cache-supervisor.sh"));
}

/**
 * The front's entry command (container/front-entry.sh), the ledger's fold (container/ledger.awk)
 * and the prefetcher (container/prefetch.sh).
 */
export function readFrontScripts(): FrontScripts {
    return {
        entry: readPackageFile("container/front-entry.sh"),
        ledgerProgram: readPackageFile("container/ledger.awk"),
        prefetchProgram: readPackageFile("container/prefetch.sh"),
    };
}
