/** The docker CLI for the tools: trimmed stdout, or an error that says which command failed. */
import { oneLineCause } from "../core/format";
import { execFile, spawn } from "node:child_process";
import { Readable, Writable } from "node:stream";
import { dockerHostEnv, dockerUnreachable } from "../host/docker-host";
import { EnvironmentError } from "./types";

/** The docker CLI pointed at the engine the caches run on. */
export interface DockerCli {
    /** Runs `docker args…`; resolves to its trimmed stdout. */
    (...args: string[]): Promise<string>;
    /** The same, with `input` on its stdin. */
    withInput(input: string, ...args: string[]): Promise<string>;
    /**
     * Runs `docker args…` for bytes that do not fit in memory: `use` gets its stdout and stdin as
     * streams. Resolves once both the command and `use` are done. If `use` fails, the command is
     * killed; the error thrown is the command's own when it had failed by itself (the cause of
     * what `use` saw), else `use`'s.
     */
    streaming<T>(
        args: string[],
        use: (io: { stdout: Readable; stdin: Writable }) => Promise<T>,
    ): Promise<T>;
}

/** The docker CLI for `dockerHost` (the stack's `dockerHost` output), else this machine's engine. */
export function dockerCli(dockerHost?: string): DockerCli {
    const env = dockerHost ? { ...process.env, ...dockerHostEnv(dockerHost) } : process.env;
    const withInput = (input: string, ...args: string[]) => run(env, input, args);
    return Object.assign((...args: string[]) => withInput("", ...args), {
        withInput,
        streaming: <T>(
            args: string[],
            use: (io: { stdout: Readable; stdin: Writable }) => Promise<T>,
        ) => stream(env, args, use),
    });
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

function notFound(error: NodeJS.ErrnoException): EnvironmentError | undefined {
    return error.code === "ENOENT"
        ? new EnvironmentError(
              "the tools need the docker CLI (they look inside the caches); none found on PATH",
          )
        : undefined;
}

async function stream<T>(
    env: NodeJS.ProcessEnv,
    args: string[],
    use: (io: { stdout: Readable; stdin: Writable }) => Promise<T>,
): Promise<T> {
    const child = spawn("docker", args, { env, stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (text: string) => {
        if (stderr.length < 64 << 10) stderr += text;
    });
    // A command that stops reading its input early: its exit status says why, not EPIPE.
    child.stdin.on("error", () => undefined);
    const exited = new Promise<void>((resolve, reject) => {
        child.once("error", (error) => reject(notFound(error) ?? error));
        child.once("close", (code, signal) => {
            if (code === 0) return resolve();
            const unreachable = dockerUnreachable(stderr);
            if (unreachable) return reject(new EnvironmentError(unreachable));
            reject(
                new Error(
                    `docker ${args[0]}: ${oneLineCause(stderr, `exited with ${code ?? signal}`)}`,
                    { cause: { code } },
                ),
            );
        });
    });
    let result: T;
    try {
        result = await use({ stdout: child.stdout, stdin: child.stdin });
    } catch (error) {
        child.kill("SIGKILL");
        // A command that failed on its own (a file gone, the engine away) is the cause of what
        // `use` saw, such as a short stream; one we killed is not.
        const failed = await exited.then(
            () => undefined,
            (failure: unknown) => failure,
        );
        throw exitCodeOf(failed) !== undefined ? failed : error;
    }
    await exited;
    return result;
}

function run(env: NodeJS.ProcessEnv, input: string, args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
        const options = { env, maxBuffer: outputLimit };
        const child = execFile("docker", args, options, (error, stdout, stderr) => {
            if (!error) return resolve(stdout.trim());
            const missing = notFound(error as NodeJS.ErrnoException);
            if (missing) return reject(missing);
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
