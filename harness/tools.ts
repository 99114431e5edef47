/** Runs `npm run <tool>` as a user does: tsx, exit codes, stdout and stderr apart. */
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import * as path from "node:path";

const repoRoot = path.resolve(__dirname, "..");

export interface ToolRun {
    code: number;
    stdout: string;
    stderr: string;
}

/**
 * `npm run <tool> -- --outputs FILE …`, with FILE holding `outputs` (what `pulumi stack output
 * --json` would print), written into `workDir`.
 */
export function runTool(
    tool: string,
    outputs: Record<string, unknown>,
    workDir: string,
    ...args: string[]
): Promise<ToolRun> {
    const file = path.join(workDir, `outputs-${Date.now()}.json`);
    writeFileSync(file, JSON.stringify(outputs));
    return new Promise((resolve) => {
        execFile(
            "npm",
            ["run", "--silent", tool, "--", "--outputs", file, ...args],
            // The test's environment (a suite may put its own ssh first on PATH), not jest's parent's.
            { cwd: repoRoot, maxBuffer: 16 << 20, env: process.env },
            (error, stdout, stderr) =>
                resolve({
                    code: error ? (typeof error.code === "number" ? error.code : 1) : 0,
                    stdout,
                    stderr,
                }),
        );
    });
}
