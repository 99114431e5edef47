/**
 * A test stand-in for the Pulumi Command provider's `command.local.Command`: create runs the
 * `create` command under `/bin/sh -c`, destroy runs the stored `delete` command, as the provider
 * does. Inputs it does not implement fail the run.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { DeclaredResource, ResourceHandler } from "./program";

const run = promisify(execFile);
const commandType = "command:local:Command";
const implemented = ["create", "delete", "triggers", "logging"];

export class CommandProviderStandIn {
    /** Output of every command run, in order, for assertions. */
    readonly runs: { command: string; stdout: string }[] = [];

    readonly createResource: ResourceHandler = async (args) => {
        if (args.type !== commandType) throw new Error(`the Command provider stand-in does not implement ${args.type}`);
        const unknown = Object.keys(args.inputs).filter((key) => !implemented.includes(key));
        if (unknown.length > 0) throw new Error(`the Command provider stand-in does not implement input(s) ${unknown.join(", ")}`);
        const stdout = await this.sh(args.inputs.create);
        return { id: `${args.name}-id`, state: { ...args.inputs, stdout, stderr: "" } };
    };

    async destroy(resources: readonly DeclaredResource[]): Promise<void> {
        for (const resource of [...resources].reverse()) {
            if (resource.type === commandType && resource.inputs.delete && !resource.options.retainOnDelete) await this.sh(resource.inputs.delete);
        }
    }

    private async sh(command: string): Promise<string> {
        const { stdout } = await run("/bin/sh", ["-c", command], { timeout: 300_000, maxBuffer: 16 << 20 });
        this.runs.push({ command, stdout });
        return stdout;
    }
}
