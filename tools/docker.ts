/** The docker CLI for the tools: trimmed stdout, or an error that says which command failed. */
import { execFile } from "node:child_process";
import { dockerHostEnv, dockerUnreachable } from "../host/docker-host";
import { UsageError } from "./types";

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

function run(env: NodeJS.ProcessEnv, input: string, args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
        const options = { env, maxBuffer: 64 << 20 };
        const child = execFile("docker", args, options, (error, stdout, stderr) => {
            if (!error) return resolve(stdout.trim());
            if ((error as NodeJS.ErrnoException).code === "ENOENT")
                return reject(
                    new UsageError(
                        "the tools need the docker CLI (they look inside the caches); none found on PATH",
                    ),
                );
            const unreachable = dockerUnreachable(stderr);
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
