/** The docker CLI for the tools: trimmed stdout, or an error that says which command failed. */
import { execFile } from "node:child_process";
import { UsageError } from "./warm";

/**
 * Why the docker CLI could not reach its engine, from what it printed; undefined for any other
 * failure. The tools exit 2 with this line: nothing about the caches can be known.
 */
export function engineUnreachable(stderr: string): string | undefined {
    const address = /\b(?:unix|tcp|ssh|npipe):\/\/\S*?(?=[.:]?(?:\s|$))/.exec(stderr)?.[0];
    const at = address ? ` at ${address}` : "";
    if (/permission denied while trying to connect/i.test(stderr))
        return `no permission to use the Docker engine${at}: add your user to the docker group and log in again, or run as root`;
    if (/Cannot connect to the Docker (?:daemon|API)|error during connect/i.test(stderr))
        return `the Docker engine${at} does not answer: start Docker, or check pullthrough:dockerHost`;
    return undefined;
}

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
