/**
 * A stack's state as another revision of this program leaves it: `npx tsx harness/stack-state.ts
 * <git-rev> <config.json>` checks the revision out beside this one, runs its stack program once
 * under the Pulumi engine stand-in with in-memory providers and that config, and prints the state
 * as `pulumi stack export` would, for upgrade tests (tests/program/upgrade.test.ts). The program's
 * folder, which Commands record as their `dir`, is written as `packageRootToken`.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { InMemoryCommands, InMemoryDocker } from "./in-memory-providers";
import { ExportedStack, PulumiEngineStandIn } from "./pulumi-engine";

/** Stands for the folder the program ran from, which differs from clone to clone. */
const packageRootToken = "<packageRoot>";

/** A saved state, with the revision that made it and the config it was made with. */
export interface SavedState {
    revision: string;
    config: Record<string, string>;
    stack: ExportedStack;
}

/** The saved state, with the token made into this clone's folder, as if it had run here. */
export function readSavedState(file: string, packageRoot: string): SavedState {
    return JSON.parse(readFileSync(file, "utf8").replaceAll(packageRootToken, packageRoot));
}

async function main(revision: string, configFile: string): Promise<void> {
    const repo = path.resolve(__dirname, "..");
    const config = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, string>;
    const checkout = realpathSync(mkdtempSync(path.join(tmpdir(), "pt-revision-")));
    const git = (...args: string[]) =>
        execFileSync("git", ["-C", repo, ...args], { encoding: "utf8" }).trim();
    const commit = git("rev-parse", "--verify", `${revision}^{commit}`);
    git("worktree", "add", "--detach", checkout, commit);
    try {
        symlinkSync(path.join(repo, "node_modules"), path.join(checkout, "node_modules"));
        const engine = new PulumiEngineStandIn([new InMemoryDocker(), new InMemoryCommands()]);
        await engine.up(config, { program: path.join(checkout, "index.ts") });
        const { resources } = engine.exportStack().deployment;
        // One resource a line: a diff between two saved states reads resource by resource.
        const text = [
            `{"revision":${JSON.stringify(commit)},"config":${JSON.stringify(config)},`,
            `"stack":{"version":3,"deployment":{"resources":[`,
            resources.map((resource) => JSON.stringify(resource)).join(",\n"),
            "]}}}",
        ].join("\n");
        process.stdout.write(text.replaceAll(checkout, packageRootToken) + "\n");
    } finally {
        git("worktree", "remove", "--force", checkout);
        rmSync(checkout, { recursive: true, force: true });
    }
}

if (require.main === module) {
    const [revision, configFile] = process.argv.slice(2);
    if (!revision || !configFile) {
        process.stderr.write("usage: npx tsx harness/stack-state.ts <git-rev> <config.json>\n");
        process.exit(2);
    }
    main(revision, configFile).catch((error: unknown) => {
        process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
        process.exit(1);
    });
}
