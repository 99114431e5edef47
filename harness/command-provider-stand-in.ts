/**
 * A test stand-in for the Pulumi Command provider's `command.local.Command` (pulumi-command
 * v1.2.1, `provider/pkg/provider/local`): create runs `create` under `/bin/sh -c` with `stdin`
 * in `dir`; a change of `triggers` replaces the resource; any other change is an update, which
 * runs `update`, or `create` again when there is none; delete runs the `delete` command stored at
 * the last create or update. Inputs it does not implement fail the run.
 */
import { execFile } from "node:child_process";
import type { ProviderStandIn } from "./pulumi-engine";

export const commandType = "command:local:Command";
const implemented = ["create", "update", "delete", "triggers", "logging", "stdin", "dir"];

export interface CommandRun {
    command: string;
    stdout: string;
    stderr: string;
    startedAt: Date;
}

export class CommandProviderStandIn implements ProviderStandIn {
    /** Every command run, in order, for assertions. */
    readonly runs: CommandRun[] = [];

    handles(type: string): boolean {
        return type === commandType;
    }

    replaceKeys(): readonly string[] {
        return ["triggers"];
    }

    deletesBeforeReplace(): boolean {
        return false;
    }

    async create(_type: string, inputs: Record<string, any>) {
        const unknown = Object.keys(inputs).filter((key) => !implemented.includes(key));
        if (unknown.length > 0) {
            throw new Error(
                `the Command provider stand-in does not implement input(s) ${unknown.join(", ")}`,
            );
        }
        const stdout = await this.sh(inputs.create, inputs.stdin, inputs.dir);
        return { id: `command-${this.runs.length}`, state: { ...inputs, stdout, stderr: "" } };
    }

    async update(
        _type: string,
        _id: string,
        _olds: Record<string, any>,
        news: Record<string, any>,
    ) {
        await this.sh(news.update ?? news.create, news.stdin, news.dir);
    }

    async delete(_type: string, _id: string, inputs: Record<string, any>) {
        if (inputs.delete) await this.sh(inputs.delete, undefined, inputs.dir);
    }

    private sh(command: string, stdin?: string, dir?: string): Promise<string> {
        const startedAt = new Date();
        return new Promise((resolve, reject) => {
            const options = { cwd: dir, timeout: 300_000, maxBuffer: 16 << 20, env: process.env };
            const child = execFile("/bin/sh", ["-c", command], options, (error, stdout, stderr) => {
                if (error)
                    return reject(
                        new Error(`${command} failed: ${error.message}\n${stdout}${stderr}`),
                    );
                this.runs.push({ command, stdout, stderr, startedAt });
                resolve(stdout);
            });
            child.stdin!.end(stdin ?? "");
        });
    }
}
