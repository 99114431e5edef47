/** The docker CLI for the tools: trimmed stdout, or an error that says which command failed. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { UsageError } from "./warm";

const run = promisify(execFile);

export async function docker(...args: string[]): Promise<string> {
    try {
        return (await run("docker", args, { maxBuffer: 64 << 20 })).stdout.trim();
    } catch (error) {
        const { code, stderr } = error as { code?: string; stderr?: string };
        if (code === "ENOENT")
            throw new UsageError(
                "the tools need the docker CLI (they look inside the caches); none found on PATH",
            );
        throw new Error(`docker ${args[0]}: ${(stderr ?? String(error)).trim()}`, { cause: error });
    }
}
