/**
 * Runs a Pulumi program in-process under Pulumi mocks and records what it declares: each
 * resource's type, name, URN, parent, inputs and resource options, and the stack outputs.
 *
 * Mocks give neither URNs nor parents (the SDK's mock monitor makes URNs its own way), so a stack
 * transformation, which sees every resource's options, works them out as the engine does
 * (pulumi/pulumi `pkg/resource/deploy`: `Deployment.generateURN` in deployment.go, and
 * `stepGenerator.collapseAliasToUrn` in step_generator.go for aliases).
 */
import * as path from "node:path";
import * as pulumiType from "@pulumi/pulumi";
import { TlsProviderStandIn } from "./tls-provider-stand-in";

/** The stack program of this repository. */
const stackProgram = path.join(__dirname, "../index.ts");

export interface ResourceIdentity {
    urn: string;
    /** The parent's URN; undefined only for the stack itself. */
    parent: string | undefined;
    /** The URNs its `aliases` option names: where the engine looks when `urn` is not in state. */
    aliases: string[];
}

export interface DeclaredResource extends ResourceIdentity {
    type: string;
    name: string;
    custom: boolean;
    /** Inputs as the engine receives them; secrets are still wrapped (see `isRpcSecret`). */
    inputs: Record<string, any>;
    options: pulumiType.CustomResourceOptions;
}

export interface ProgramRun {
    resources: DeclaredResource[];
    /** The program's named exports, resolved, as the stack outputs are made from them. */
    outputs: Record<string, unknown>;
    /** The program's named exports as it made them (Outputs stay Outputs), for `isSecret`. */
    exports: Record<string, unknown>;
    /** The SDK instance the program ran against, for `isRpcSecret` and `isSecret`. */
    pulumi: typeof pulumiType;
}

/**
 * Brings one declared resource (a custom resource, a component or the stack) to its inputs and
 * returns its id and state; the default is `inputsAsState`.
 */
export type ResourceHandler = (
    args: pulumiType.runtime.MockResourceArgs,
    options: pulumiType.CustomResourceOptions,
    identity: ResourceIdentity,
) => Promise<{ id: string; state: Record<string, any> }>;

const tlsStandIn = new TlsProviderStandIn();

/**
 * A resource's inputs as its state, except a TLS resource's, made by the TLS provider stand-in:
 * the keys and certificates are real even here, since the outputs built from them must parse.
 */
const inputsAsState: ResourceHandler = async (args) =>
    tlsStandIn.handles(args.type)
        ? tlsStandIn.create(args.type, unwrapSecrets(args.inputs))
        : { id: `${args.name}-id`, state: args.inputs };

/** Providers receive secret inputs decrypted; the engine keeps them secret in state. */
export function unwrapSecrets(value: unknown): any {
    if (pulumiType.runtime.isRpcSecret(value))
        return unwrapSecrets(pulumiType.runtime.unwrapRpcSecret(value));
    if (Array.isArray(value)) return value.map(unwrapSecrets);
    if (value && typeof value === "object") {
        return Object.fromEntries(
            Object.entries(value).map(([name, item]) => [name, unwrapSecrets(item)]),
        );
    }
    return value;
}

const stack = "dev";
const rootStackType = "pulumi:pulumi:Stack";

/** The engine's URN: the parent's qualified type before the type, unless the parent is the stack. */
function resourceUrn(project: string, type: string, name: string, parent: string | undefined) {
    const parentType = parent?.split("::")[2];
    const qualified = parentType && parentType !== rootStackType ? `${parentType}$${type}` : type;
    return `urn:pulumi:${stack}::${project}::${qualified}::${name}`;
}

/**
 * Runs a program once, in a fresh module registry so that it declares its resources anew (under
 * jest; a script outside jest runs it once per process).
 *
 * @param config stack config as `pulumi.runtime.setAllConfig` takes it (`pullthrough:<key>` → string)
 * @param secretKeys config keys set with `--secret`
 * @param createResource what "creating" a resource means; a test stand-in may make it real
 * @param program the program's entry file; this repository's stack by default
 * @param project the program's Pulumi project name, which namespaces its config
 */
export async function runProgram(
    config: Record<string, string>,
    {
        secretKeys = [],
        createResource = inputsAsState,
        program = stackProgram,
        project = "pullthrough",
    }: {
        secretKeys?: string[];
        createResource?: ResourceHandler;
        program?: string;
        project?: string;
    } = {},
): Promise<ProgramRun> {
    let run: ProgramRun | undefined;
    const isolated =
        typeof jest === "undefined"
            ? (body: () => Promise<void>) => body()
            : (body: () => Promise<void>) => jest.isolateModulesAsync(body);
    await isolated(async () => {
        // require, not import: inside isolateModules it loads fresh copies for this run alone.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const pulumi: typeof pulumiType = require("@pulumi/pulumi");
        const resources: DeclaredResource[] = [];
        const declarations = new Declarations(project);
        const failures: unknown[] = [];
        await pulumi.runtime.setMocks(
            {
                newResource: async (args) => {
                    const { options, identity } = declarations.of(args.type, args.name);
                    const created = await createResource(args, options, identity).catch(
                        (error: unknown) => {
                            failures.push(error);
                            throw error;
                        },
                    );
                    const { type, name, inputs } = args;
                    resources.push({
                        type,
                        name,
                        custom: args.custom ?? false,
                        inputs,
                        options,
                        ...identity,
                    });
                    return created;
                },
                call: async (args) => args.inputs,
            },
            project,
            stack,
            false,
        );
        pulumi.runtime.setAllConfig(config, secretKeys);
        const exports = await runInStack(pulumi, program, declarations);
        if (failures.length > 0) throw failures[0];
        const outputs: Record<string, unknown> = {};
        for (const [name, value] of Object.entries(exports))
            outputs[name] = await new Promise((resolve) =>
                // A stack output holds a value with the Outputs inside it resolved, at any depth.
                pulumi.output(value as object).apply(resolve),
            );
        run = { resources, outputs, exports, pulumi };
    });
    return run!;
}

/** Runs the program as the stack's body and returns its exports, once every registration is done. */
async function runInStack(
    pulumi: typeof pulumiType,
    program: string,
    declarations: Declarations,
): Promise<Record<string, unknown>> {
    let exports: Record<string, unknown> = {};
    let programError: unknown;
    await pulumi.runtime.runInPulumiStack(async () => {
        // Mocks never see resource options, parents or aliases; a stack transformation does.
        pulumi.runtime.registerStackTransformation((args) => {
            declarations.record(args);
            return undefined;
        });
        // Caught here: a throw escaping the stack's init becomes an unhandled rejection.
        try {
            // eslint-disable-next-line @typescript-eslint/no-require-imports
            exports = { ...require(program) };
        } catch (error) {
            programError = error;
        }
        return exports;
    });
    // Registrations still in flight finish before the run counts as done.
    await pulumi.runtime.disconnect();
    if (programError) throw programError;
    return exports;
}

/** Each declared resource's options and identity, as the stack transformation saw them. */
class Declarations {
    private readonly declared = new Map<
        string,
        { options: pulumiType.CustomResourceOptions; identity: ResourceIdentity }
    >();
    private readonly urns = new Map<pulumiType.Resource, string>();
    private readonly stackUrn: string;

    constructor(private readonly project: string) {
        this.stackUrn = resourceUrn(project, rootStackType, `${project}-${stack}`, undefined);
    }

    record(args: pulumiType.ResourceTransformationArgs): void {
        const { type, name, opts } = args;
        const parent = (opts.parent && this.urns.get(opts.parent)) ?? this.stackUrn;
        const urn = resourceUrn(this.project, type, name, parent);
        this.urns.set(args.resource, urn);
        const aliases = (opts.aliases ?? []).map((alias) => {
            if (typeof alias === "string") return alias;
            const spec = aliasSpec(alias as pulumiType.Alias, parent, this.urns);
            return resourceUrn(this.project, spec.type ?? type, spec.name ?? name, spec.parent);
        });
        if (this.declared.has(`${type}::${name}`))
            throw new Error(
                `the program stand-in tells resources apart by type and name: ${type} ${name} is declared twice`,
            );
        this.declared.set(`${type}::${name}`, {
            options: opts as pulumiType.CustomResourceOptions,
            identity: { urn, parent, aliases },
        });
    }

    /** Only the stack itself is registered without the transformation seeing it. */
    of(type: string, name: string) {
        return (
            this.declared.get(`${type}::${name}`) ?? {
                options: {},
                identity: { urn: this.stackUrn, parent: undefined, aliases: [] },
            }
        );
    }
}

/**
 * What an alias names, as the engine collapses an alias spec: unset fields are the resource's
 * own; `{ parent: undefined }` (`pulumi.rootStackResource`) and a stack parent mean no parent.
 */
function aliasSpec(
    spec: pulumiType.Alias,
    parent: string,
    urns: ReadonlyMap<pulumiType.Resource, string>,
): { type?: string; name?: string; parent: string | undefined } {
    for (const field of ["type", "name"] as const)
        if (spec[field] !== undefined && typeof spec[field] !== "string")
            throw new Error(`the program stand-in takes alias ${field}s as plain strings`);
    let aliasParent: string | undefined = parent;
    if (Object.hasOwn(spec, "parent"))
        aliasParent =
            typeof spec.parent === "string"
                ? spec.parent
                : spec.parent && urns.get(spec.parent as pulumiType.Resource);
    return {
        type: spec.type as string | undefined,
        name: spec.name as string | undefined,
        parent: aliasParent,
    };
}
