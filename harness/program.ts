/**
 * Runs the real program (index.ts) in-process under Pulumi mocks and records what it declares:
 * each resource's type, name, inputs and resource options, and the stack outputs.
 */
import type * as pulumiType from "@pulumi/pulumi";

export interface DeclaredResource {
    type: string;
    name: string;
    /** Inputs as the engine receives them; secrets are still wrapped (see `isRpcSecret`). */
    inputs: Record<string, any>;
    options: pulumiType.CustomResourceOptions;
}

export interface ProgramRun {
    resources: DeclaredResource[];
    /** The program's named exports, as the stack outputs are made from them. */
    outputs: Record<string, unknown>;
    /** The SDK instance the program ran against, for `isRpcSecret` and `isSecret`. */
    pulumi: typeof pulumiType;
}

/**
 * Brings one declared resource to its inputs and returns its id and state; the default echoes the
 * inputs back. `options` are the resource options the program gave it.
 */
export type ResourceHandler = (
    args: pulumiType.runtime.MockResourceArgs,
    options: pulumiType.CustomResourceOptions,
) => Promise<{ id: string; state: Record<string, any> }>;

const echo: ResourceHandler = async (args) => ({ id: `${args.name}-id`, state: args.inputs });

/**
 * Runs index.ts once, in a fresh module registry so that it declares its resources anew.
 *
 * @param config stack config as `pulumi.runtime.setAllConfig` takes it (`pullthrough:<key>` → string)
 * @param secretKeys config keys set with `--secret`
 * @param createResource what "creating" a resource means; a test stand-in may make it real
 */
export async function runProgram(
    config: Record<string, string>,
    {
        secretKeys = [],
        createResource = echo,
    }: { secretKeys?: string[]; createResource?: ResourceHandler } = {},
): Promise<ProgramRun> {
    let run: ProgramRun | undefined;
    await jest.isolateModulesAsync(async () => {
        // require, not import: inside isolateModules it loads fresh copies for this run alone.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const pulumi: typeof pulumiType = require("@pulumi/pulumi");
        const resources: DeclaredResource[] = [];
        const options = new Map<string, pulumiType.CustomResourceOptions>();
        const key = (type: string, name: string) => `${type}::${name}`;
        const failures: unknown[] = [];
        await pulumi.runtime.setMocks(
            {
                newResource: async (args) => {
                    // Components (the stack) have nothing to create.
                    const resourceOptions = options.get(key(args.type, args.name)) ?? {};
                    const handler = args.custom ? createResource : echo;
                    const created = await handler(args, resourceOptions).catch((error: unknown) => {
                        failures.push(error);
                        throw error;
                    });
                    resources.push({
                        type: args.type,
                        name: args.name,
                        inputs: args.inputs,
                        options: resourceOptions,
                    });
                    return created;
                },
                call: async (args) => args.inputs,
            },
            "pullthrough",
            "dev",
            false,
        );
        pulumi.runtime.setAllConfig(config, secretKeys);
        let outputs: Record<string, unknown> = {};
        let programError: unknown;
        await pulumi.runtime.runInPulumiStack(async () => {
            // Mocks never see resource options; a stack transformation does.
            pulumi.runtime.registerStackTransformation((args) => {
                options.set(
                    key(args.type, args.name),
                    args.opts as pulumiType.CustomResourceOptions,
                );
                return undefined;
            });
            // Caught here: a throw escaping the stack's init becomes an unhandled rejection.
            try {
                // eslint-disable-next-line @typescript-eslint/no-require-imports
                outputs = { ...require("../index") };
            } catch (error) {
                programError = error;
            }
            return outputs;
        });
        // Registrations still in flight finish before the run counts as done.
        await pulumi.runtime.disconnect();
        if (programError) throw programError;
        if (failures.length > 0) throw failures[0];
        run = { resources, outputs, pulumi };
    });
    return run!;
}
