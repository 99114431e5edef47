/**
 * A stand-in for the Pulumi engine across several `pulumi up`s. Mocks alone run the program once
 * and forget it; users live in the second and later runs. This keeps each resource's last applied
 * inputs and, on the next `up`, steps each resource the way the Pulumi engine's step generator does
 * (pulumi/pulumi `pkg/resource/deploy/step_generator.go`):
 *
 * - a resource is its URN (parent type chain, type and name); not in state under it, the engine
 *   looks under each URN its `aliases` name, and one found there is the same resource, moved
 *   (`stepGenerator.generateSteps`: "Check the URN first, then aliases");
 * - not in state: create;
 * - the new inputs match the state the provider recorded (inputs listed in the resource's
 *   `ignoreChanges` aside): nothing (`same`). Like a bridged provider's Diff, this compares
 *   against the recorded state, which holds what the provider read back from the engine;
 * - a changed input the provider marks replace-on-change, or one the resource lists in its
 *   `replaceOnChanges` option: replace, delete-before-create when the resource's
 *   `deleteBeforeReplace` option or the provider's default asks for it, else create-before-delete;
 *   `retainOnDelete` drops the old resource from state without deleting it;
 * - any other change: the provider's update;
 * - in state but no longer declared: delete (honouring `retainOnDelete`).
 *
 * Providers are stand-ins too (harness/docker-provider-stand-in.ts and
 * command-provider-stand-in.ts), each with its replace-on-change list cited from its source.
 */
import * as pulumi from "@pulumi/pulumi";
import { ProgramRun, ResourceIdentity, runProgram, unwrapSecrets } from "./program";

export interface ProviderStandIn {
    handles(type: string): boolean;
    /** Inputs whose change replaces the resource; `all` when every input does. */
    replaceKeys(type: string): "all" | readonly string[];
    /** The provider's own delete-before-replace default for the type. */
    deletesBeforeReplace(type: string): boolean;
    /**
     * An attribute the provider's plan marks for replacement whatever the inputs (a certificate
     * due for renewal), or undefined.
     */
    plannedReplacement?(type: string, state: Record<string, any>): string | undefined;
    /** `config`: the inputs of the resource's explicit provider (`{}` for the default one). */
    create(
        type: string,
        inputs: Record<string, any>,
        config: Record<string, any>,
    ): Promise<{ id: string; state: Record<string, any> }>;
    update(
        type: string,
        id: string,
        olds: Record<string, any>,
        news: Record<string, any>,
        config: Record<string, any>,
    ): Promise<void>;
    delete(
        type: string,
        id: string,
        inputs: Record<string, any>,
        config: Record<string, any>,
    ): Promise<void>;
}

export type Operation = "create" | "same" | "update" | "replace" | "delete";

export interface Step {
    urn: string;
    parent: string | undefined;
    type: string;
    name: string;
    op: Operation;
    /** Inputs that differ from the last applied ones (update and replace). */
    changed: string[];
    /** The URN the resource had in state, when it was found by an alias. */
    aliasedFrom?: string;
}

/** One resource as `pulumi stack export` shows it (`deployment.resources[]`), in the fields modelled. */
export interface ExportedResource {
    urn: string;
    custom: boolean;
    type: string;
    id?: string;
    parent?: string;
    /** `<provider urn>::<provider id>`, for a resource with an explicit provider. */
    provider?: string;
    inputs: Record<string, any>;
    outputs: Record<string, any>;
    retainOnDelete?: boolean;
}

/** A stack's state as `pulumi stack export` writes it (checkpoint version 3). */
export interface ExportedStack {
    version: 3;
    deployment: { resources: ExportedResource[] };
}

interface Applied {
    urn: string;
    parent: string | undefined;
    type: string;
    name: string;
    custom: boolean;
    id: string;
    inputs: Record<string, any>;
    state: Record<string, any>;
    options: pulumi.CustomResourceOptions;
    /** Its explicit provider's reference, `<urn>::<id>`. */
    provider?: string;
}

/** Explicit provider resources (`new docker.Provider(…)`) have this type prefix. */
const providerTypePrefix = "pulumi:providers:";

export class PulumiEngineStandIn {
    /** Applied resources in registration order, by URN. */
    private applied = new Map<string, Applied>();
    /** What the last `up` or `destroy` did, one step per resource. */
    steps: Step[] = [];

    constructor(private readonly providers: readonly ProviderStandIn[]) {}

    /**
     * `pulumi up` with this config: runs the program (the stack's, or `program`) and steps every
     * resource it declares.
     */
    async up(
        config: Record<string, string>,
        { secretKeys = [], program }: { secretKeys?: string[]; program?: string } = {},
    ): Promise<ProgramRun> {
        this.steps = [];
        const olds = this.applied;
        this.applied = new Map();
        let run: ProgramRun;
        try {
            run = await runProgram(config, {
                secretKeys,
                program,
                createResource: (args, options, identity) =>
                    this.step(olds, args, unwrapSecrets(args.inputs), options, identity),
            });
        } catch (error) {
            // A failed update deletes nothing: what it did not reach stays in state as it was.
            for (const [urn, old] of olds) this.applied.set(urn, old);
            throw error;
        }
        for (const old of [...olds.values()].reverse()) {
            await this.remove(old);
            this.steps.push(stepOf(old, "delete"));
        }
        return run;
    }

    /** `pulumi destroy`: deletes everything in state, newest first. */
    async destroy(): Promise<void> {
        this.steps = [];
        for (const old of [...this.applied.values()].reverse()) {
            await this.remove(old);
            this.steps.push(stepOf(old, "delete"));
        }
        this.applied.clear();
    }

    /** The steps of the last run that changed something (a preview's summary). */
    changes(): Step[] {
        return this.steps.filter((step) => step.op !== "same");
    }

    /** The state recorded for a resource, as `pulumi stack export` shows it; tests may edit it. */
    recordedState(type: string, name: string): Record<string, any> {
        const found = [...this.applied.values()].filter(
            (applied) => applied.type === type && applied.name === name,
        );
        if (found.length !== 1) throw new Error(`${found.length} ${type} named ${name} in state`);
        return found[0].state;
    }

    /** `pulumi stack export`. */
    exportStack(): ExportedStack {
        const resources = [...this.applied.values()].map((applied) => ({
            urn: applied.urn,
            custom: applied.custom,
            type: applied.type,
            ...(applied.custom ? { id: applied.id } : {}),
            ...(applied.parent ? { parent: applied.parent } : {}),
            ...(applied.provider ? { provider: applied.provider } : {}),
            inputs: applied.inputs,
            outputs: applied.state,
            ...(applied.options.retainOnDelete ? { retainOnDelete: true } : {}),
        }));
        return { version: 3, deployment: { resources } };
    }

    /** `pulumi stack import`: the state becomes `exported`, and nothing is touched. */
    importStack(exported: ExportedStack): void {
        this.applied = new Map(
            exported.deployment.resources.map((resource) => [
                resource.urn,
                {
                    urn: resource.urn,
                    parent: resource.parent,
                    type: resource.type,
                    name: resource.urn.split("::").pop()!,
                    custom: resource.custom,
                    id: resource.id ?? "",
                    inputs: resource.inputs,
                    state: resource.outputs,
                    options: { retainOnDelete: resource.retainOnDelete },
                    provider: resource.provider,
                },
            ]),
        );
    }

    /** Forgets the state without touching anything, as `pulumi stack rm --force` would. */
    forget(): void {
        this.applied.clear();
    }

    private async step(
        olds: Map<string, Applied>,
        args: pulumi.runtime.MockResourceArgs,
        inputs: Record<string, any>,
        options: pulumi.CustomResourceOptions,
        identity: ResourceIdentity,
    ) {
        const { type, name } = args;
        const custom = args.custom ?? false;
        const { urn, parent } = identity;
        // Check the URN first, then aliases, as the engine does.
        const foundAt = [urn, ...identity.aliases].find((candidate) => olds.has(candidate));
        const old = foundAt === undefined ? undefined : olds.get(foundAt);
        if (foundAt !== undefined) olds.delete(foundAt);
        const aliasedFrom = foundAt !== undefined && foundAt !== urn ? foundAt : undefined;
        const record = (op: Operation, changed: string[] = []) =>
            this.steps.push({
                urn,
                parent,
                type,
                name,
                op,
                changed,
                ...(aliasedFrom ? { aliasedFrom } : {}),
            });
        const keep = (made: Omit<Applied, "urn" | "parent" | "type" | "name" | "custom">) =>
            this.applied.set(urn, { ...made, urn, parent, type, name, custom });
        const provider = args.provider;
        const config = this.providerConfig(provider);

        // The stack, components and explicit providers hold nothing of their own: their inputs
        // are recorded, and a provider's configure the resources that use it.
        if (!custom || type.startsWith(providerTypePrefix)) {
            const id = custom ? `${name}-provider` : "";
            if (old && custom && JSON.stringify(old.inputs) !== JSON.stringify(inputs))
                throw new Error(
                    `the Pulumi engine stand-in does not model a change of provider ${name}`,
                );
            keep({ id, inputs, state: inputs, options });
            record(old ? "same" : "create");
            return { id, state: inputs };
        }

        const providerStandIn = this.providerFor(type);
        if (!old) {
            const created = await providerStandIn.create(type, inputs, config);
            keep({ ...created, inputs, options, provider });
            record("create");
            return created;
        }
        const { changed, replaces } = diff(providerStandIn, type, old.state, inputs, options);
        if (changed.length === 0) {
            keep({ ...old, options, provider });
            record("same");
            return { id: old.id, state: old.state };
        }
        if (!replaces) {
            await providerStandIn.update(type, old.id, old.inputs, inputs, config);
            const state = { ...old.state, ...inputs };
            keep({ id: old.id, inputs, state, options, provider });
            record("update", changed);
            return { id: old.id, state };
        }
        const deleteFirst =
            options.deleteBeforeReplace ?? providerStandIn.deletesBeforeReplace(type);
        if (deleteFirst) await this.remove(old);
        const created = await providerStandIn.create(type, inputs, config);
        if (!deleteFirst) await this.remove(old);
        keep({ ...created, inputs, options, provider });
        record("replace", changed);
        return created;
    }

    private async remove(resource: Applied): Promise<void> {
        if (!resource.custom || resource.type.startsWith(providerTypePrefix)) return;
        if (resource.options.retainOnDelete) return;
        await this.providerFor(resource.type).delete(
            resource.type,
            resource.id,
            resource.inputs,
            this.providerConfig(resource.provider),
        );
    }

    /** The inputs of the explicit provider a reference (`<urn>::<id>`) names; `{}` for none. */
    private providerConfig(reference: string | undefined): Record<string, any> {
        const id = reference?.split("::").pop();
        const provider = [...this.applied.values()].find(
            (applied) => applied.type.startsWith(providerTypePrefix) && applied.id === id,
        );
        return provider?.inputs ?? {};
    }

    private providerFor(type: string): ProviderStandIn {
        const provider = this.providers.find((candidate) => candidate.handles(type));
        if (!provider) throw new Error(`no provider stand-in for ${type}`);
        return provider;
    }
}

const stepOf = (resource: Applied, op: Operation): Step => ({
    urn: resource.urn,
    parent: resource.parent,
    type: resource.type,
    name: resource.name,
    op,
    changed: [],
});

const planSymbols: Record<Operation, string> = {
    create: "+",
    same: " ",
    update: "~",
    replace: "+-",
    delete: "-",
};

/**
 * Steps drawn as `pulumi preview` draws them: one row per resource under its parent, with the
 * operation's symbol and name (blank for an unchanged resource).
 */
export function previewTree(steps: readonly Step[]): string {
    const children = new Map<string | undefined, Step[]>();
    for (const step of steps) {
        const parent = steps.some((other) => other.urn === step.parent) ? step.parent : undefined;
        children.set(parent, [...(children.get(parent) ?? []), step]);
    }
    const rows: [string, string, string, string][] = [];
    const walk = (parent: string | undefined, indent: string) => {
        const level = children.get(parent) ?? [];
        level.forEach((step, index) => {
            const last = index === level.length - 1;
            const branch = parent === undefined ? "" : last ? "└─ " : "├─ ";
            const plan = step.op === "same" ? "" : step.op;
            rows.push([planSymbols[step.op], indent + branch + step.type, step.name, plan]);
            walk(step.urn, parent === undefined ? "" : indent + (last ? "   " : "│  "));
        });
    };
    walk(undefined, "");
    const header: [string, string, string, string] = ["", "Type", "Name", "Plan"];
    const width = (column: number) =>
        Math.max(...[header, ...rows].map((row) => row[column].length));
    return [header, ...rows]
        .map(([symbol, type, name, plan]) =>
            `${symbol.padEnd(4)}${[type.padEnd(width(1)), name.padEnd(width(2)), plan].join("  ")}`.trimEnd(),
        )
        .join("\n");
}

/**
 * What the provider's Diff says: the changed inputs (and an attribute its plan marks for
 * replacement, such as a certificate due for renewal), and whether they replace the resource.
 */
function diff(
    provider: ProviderStandIn,
    type: string,
    state: Record<string, any>,
    inputs: Record<string, any>,
    options: pulumi.CustomResourceOptions,
) {
    const planned = provider.plannedReplacement?.(type, state);
    const changed = [
        ...changedKeys(state, inputs, options.ignoreChanges ?? []),
        ...(planned ? [planned] : []),
    ];
    const replaceKeys = provider.replaceKeys(type);
    const replaces = changed.some(
        (input) =>
            input === planned ||
            replaceKeys === "all" ||
            replaceKeys.includes(input) ||
            (options.replaceOnChanges ?? []).includes(input),
    );
    return { changed, replaces };
}

/** Declared inputs whose values differ from the recorded state, compared as data. */
function changedKeys(
    state: Record<string, any>,
    news: Record<string, any>,
    ignored: readonly string[],
): string[] {
    return Object.keys(news).filter(
        (input) =>
            !ignored.includes(input) &&
            JSON.stringify(state[input]) !== JSON.stringify(news[input]),
    );
}
