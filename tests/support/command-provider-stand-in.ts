/**
 * A test stand-in for the Pulumi Command provider's `command.local.Command`: create runs the
 * `create` command under `/bin/sh -c`, destroy runs the stored `delete` command, as the provider
 * does. Inputs it does not implement fail the run.
 */
import { execFile } from "node:child_process";
import type { DeclaredResource, ResourceHandler } from "./program";

const commandType = "command:local:Command";
const implemented = ["create", "delete", "triggers", "logging", "stdin", "dir"];

export interface CommandRun {
    command: string;
    stdout: string;
    startedAt: Date;
}

export class CommandProviderStandIn {
    /** Every command run, in order, for assertions. */
    readonly runs: CommandRun[] = [];

    readonly createResource: ResourceHandler = async (args) => {
        if (args.type !== commandType) throw new Error(`the Command provider stand-in does not implement ${args.type}`);
        const unknown = Object.keys(args.inputs).filter((key) => !implemented.includes(key));
        if (unknown.length > 0) throw new Error(`the Command provider stand-in does not implement input(s) ${unknown.join(", ")}`);
        const stdout = await this.sh(args.inputs.create, args.inputs.stdin, args.inputs.dir);
        return { id: `${args.name}-id`, state: { ...args.inputs, stdout, stderr: "" } };
    };

    async destroy(resources: readonly DeclaredResource[]): Promise<void> {
        for (const resource of [...resources].reverse()) {
            if (resource.type === commandType && resource.inputs.delete && !resource.options.retainOnDelete) await this.sh(resource.inputs.delete);
        }
    }

    private sh(command: string, stdin?: string, dir?: string): Promise<string> {
        const startedAt = new Date();
        return new Promise((resolve, reject) => {
            const child = execFile("/bin/sh", ["-c", command], { cwd: dir, timeout: 300_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
                if (error) return reject(new Error(`${command} failed: ${error.message}\n${stdout}${stderr}`));
                this.runs.push({ command, stdout, startedAt });
                resolve(stdout);
            });
            child.stdin!.end(stdin ?? "");
        });
    }
}
