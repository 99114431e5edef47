/** The docker CLI for the tools: trimmed stdout, or an error that says which command failed. */
import { oneLineCause } from "../core/format";
import { execFile } from "node:child_process";
import { dockerHostEnv, dockerUnreachable } from "../host/docker-host";
import { EnvironmentError } from "./types";

/** The docker CLI pointed at the engine the caches run on. */
export interface DockerCli {
    /** Runs `docker args…`; resolves to its trimmed stdout. */
    (...args: string[]): Promise<string>;
    /** The same, with `input` on its stdin. */
    withInput(input: string, ...args: string[]): Promise<string>;
}

/** The docker CLI for `dockerHost` (the stack's `dockerHost` output), else this machine's engine. */
export function dockerCli(dockerHost?: string): DockerCli {
    const env = dockerHost ? { ...process.env, ...dockerHostEnv(dockerHost) } : process.env;
    const withInput = (input: string, ...args: string[]) => run(env, input, args);
    return Object.assign((...args: string[]) => withInput("", ...args), { withInput });
}

/**
 * What a tool reads with one command is bounded by what the caches hold (listings, the ledger),
 * never by a container's history: more than this is a fault, reported as one.
 */
const outputLimit = 64 << 20;

/** The exit code of the command behind a DockerCli error, if it ran and exited. */
export function exitCodeOf(error: unknown): number | undefined {
    const code = ((error as Error)?.cause as { code?: unknown } | undefined)?.code;
    return typeof code === "number" ? code : undefined;
}

function run(env: NodeJS.ProcessEnv, input: string, args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
        const options = { env, maxBuffer: outputLimit };
        const child = execFile("docker", args, options, (error, stdout, stderr) => {
            if (!error) return resolve(stdout.trim());
            if ((error as NodeJS.ErrnoException).code === "ENOENT")
                return reject(
                    new EnvironmentError(
                        "the tools need the docker CLI (they look inside the caches); none found on PATH",
                    ),
                );
            if ((error as NodeJS.ErrnoException).code === "ERR_CHILD_PROCESS_STDIO_MAXBUFFER")
                return reject(
                    new Error(`docker ${args[0]}: printed more than ${outputLimit >> 20} MiB`),
                );
            const unreachable = dockerUnreachable(stderr);
            if (unreachable) return reject(new EnvironmentError(unreachable));
            reject(
                new Error(`docker ${args[0]}: ${oneLineCause(stderr, String(error))}`, {
                    cause: error,
                }),
            );
        });
        child.stdin?.end(input);
    });
}
