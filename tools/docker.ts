/** The docker CLI for the tools: trimmed stdout, or an error that says which command failed. */
import { execFile } from "node:child_process";
import { engineUnreachable } from "../host/engine";
import { UsageError } from "./types";

/** Runs `docker args…`, writing `input` to its stdin. */
export function dockerWithInput(input: string, ...args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
        const child = execFile("docker", args, { maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
            if (!error) return resolve(stdout.trim());
            if ((error as NodeJS.ErrnoException).code === "ENOENT")
                return reject(
                    new UsageError(
                        "the tools need the docker CLI (they look inside the caches); none found on PATH",
                    ),
                );
            const unreachable = engineUnreachable(stderr);
            if (unreachable) return reject(new UsageError(unreachable));
            reject(
                new Error(`docker ${args[0]}: ${(stderr || String(error)).trim()}`, {
                    cause: error,
                }),
            );
        });
        child.stdin?.end(input);
    });
}

export function docker(...args: string[]): Promise<string> {
    return dockerWithInput("", ...args);
}
