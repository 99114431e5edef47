/**
 * A stand-in for the Pulumi engine across several `pulumi up`s. Mocks alone run the program once
 * and forget it; users live in the second and later runs. This keeps each resource's last applied
 * inputs and, on the next `up`, steps each resource the way the Pulumi engine's step generator does
 * (pulumi/pulumi `pkg/resource/deploy/step_generator.go`):
 *
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
import { ProgramRun, runProgram } from "./program";

export interface ProviderStandIn {
    handles(type: string): boolean;
    /** Inputs whose change replaces the resource; `all` when every input does. */
    replaceKeys(type: string): "all" | readonly string[];
    /** The provider's own delete-before-replace default for the type. */
    deletesBeforeReplace(type: string): boolean;
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
    type: string;
    name: string;
    op: Operation;
    /** Inputs that differ from the last applied ones (update and replace). */
    changed: string[];
}

interface Applied {
    type: string;
    name: string;
    id: string;
    inputs: Record<string, any>;
    state: Record<string, any>;
    options: pulumi.CustomResourceOptions;
    /** Its explicit provider's inputs, `{}` for the default provider. */
    config: Record<string, any>;
}

/** Explicit provider resources (`new docker.Provider(…)`) have this type prefix. */
const providerTypePrefix = "pulumi:providers:";

export class PulumiEngineStandIn {
    /** Applied resources in creation order, by `type::name`. */
    private readonly applied = new Map<string, Applied>();
    /** Explicit providers' inputs, by the id the program's resources refer to them with. */
    private readonly providerConfigs = new Map<string, Record<string, any>>();
    /** What the last `up` or `destroy` did, one step per resource. */
    steps: Step[] = [];

    constructor(private readonly providers: readonly ProviderStandIn[]) {}

    /** `pulumi up` with this config: runs the program and steps every resource it declares. */
    async up(config: Record<string, string>, secretKeys: string[] = []): Promise<ProgramRun> {
        this.steps = [];
        const declared = new Set<string>();
        const run = await runProgram(config, {
            secretKeys,
            createResource: (args, options) => {
                declared.add(key(args.type, args.name));
                const inputs = unwrapSecrets(args.inputs);
                if (args.type.startsWith(providerTypePrefix))
                    return this.configureProvider(args.name, inputs);
                // A provider reference is `<urn>::<id>`.
                const providerId = args.provider?.split("::").pop();
                const config = (providerId && this.providerConfigs.get(providerId)) || {};
                return this.step(args.type, args.name, inputs, options, config);
            },
        });
        for (const [resourceKey, old] of [...this.applied].reverse()) {
            if (declared.has(resourceKey)) continue;
            await this.remove(old);
            this.applied.delete(resourceKey);
            this.steps.push({ type: old.type, name: old.name, op: "delete", changed: [] });
        }
        return run;
    }

    /** `pulumi destroy`: deletes everything in state, newest first. */
    async destroy(): Promise<void> {
        this.steps = [];
        for (const old of [...this.applied.values()].reverse()) {
            await this.remove(old);
            this.steps.push({ type: old.type, name: old.name, op: "delete", changed: [] });
        }
        this.applied.clear();
        this.providerConfigs.clear();
    }

    /** The steps of the last run that changed something (a preview's summary). */
    changes(): Step[] {
        return this.steps.filter((step) => step.op !== "same");
    }

    /** The state recorded for a resource, as `pulumi stack export` shows it; tests may edit it. */
    recordedState(type: string, name: string): Record<string, any> {
        const applied = this.applied.get(key(type, name));
        if (!applied) throw new Error(`no ${type} named ${name} in state`);
        return applied.state;
    }

    /** Forgets the state without touching anything, as `pulumi stack rm --force` would. */
    forget(): void {
        this.applied.clear();
        this.providerConfigs.clear();
    }

    /**
     * An explicit provider holds no resource of its own: its inputs configure the resources that
     * use it. Changing them would replace every such resource, which is not modelled: it fails.
     */
    private async configureProvider(name: string, inputs: Record<string, any>) {
        const id = `${name}-provider`;
        const before = this.providerConfigs.get(id);
        if (before && JSON.stringify(before) !== JSON.stringify(inputs))
            throw new Error(
                `the Pulumi engine stand-in does not model a change of provider ${name}`,
            );
        this.providerConfigs.set(id, inputs);
        return { id, state: inputs };
    }

    private async step(
        type: string,
        name: string,
        inputs: Record<string, any>,
        options: pulumi.CustomResourceOptions,
        config: Record<string, any>,
    ) {
        const provider = this.providerFor(type);
        const resourceKey = key(type, name);
        const old = this.applied.get(resourceKey);
        const record = (op: Operation, changed: string[] = []) =>
            this.steps.push({ type, name, op, changed });
        if (!old) {
            const created = await provider.create(type, inputs, config);
            this.applied.set(resourceKey, { type, name, ...created, inputs, options, config });
            record("create");
            return created;
        }
        const changed = changedKeys(old.state, inputs, options.ignoreChanges ?? []);
        if (changed.length === 0) {
            old.options = options;
            record("same");
            return { id: old.id, state: old.state };
        }
        const replaceKeys = provider.replaceKeys(type);
        const replaces = changed.some(
            (input) =>
                replaceKeys === "all" ||
                replaceKeys.includes(input) ||
                (options.replaceOnChanges ?? []).includes(input),
        );
        if (!replaces) {
            await provider.update(type, old.id, old.inputs, inputs, config);
            Object.assign(old, { inputs, options, state: { ...old.state, ...inputs } });
            record("update", changed);
            return { id: old.id, state: old.state };
        }
        const deleteFirst = options.deleteBeforeReplace ?? provider.deletesBeforeReplace(type);
        if (deleteFirst) await this.remove(old);
        const created = await provider.create(type, inputs, config);
        if (!deleteFirst) await this.remove(old);
        this.applied.set(resourceKey, { type, name, ...created, inputs, options, config });
        record("replace", changed);
        return created;
    }

    private async remove(resource: Applied): Promise<void> {
        if (resource.options.retainOnDelete) return;
        await this.providerFor(resource.type).delete(
            resource.type,
            resource.id,
            resource.inputs,
            resource.config,
        );
    }

    private providerFor(type: string): ProviderStandIn {
        const provider = this.providers.find((candidate) => candidate.handles(type));
        if (!provider) throw new Error(`no provider stand-in for ${type}`);
        return provider;
    }
}

const key = (type: string, name: string) => `${type}::${name}`;

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

/** Providers receive secret inputs decrypted; the engine keeps them secret in state. */
function unwrapSecrets(value: unknown): any {
    if (pulumi.runtime.isRpcSecret(value))
        return unwrapSecrets(pulumi.runtime.unwrapRpcSecret(value));
    if (Array.isArray(value)) return value.map(unwrapSecrets);
    if (value && typeof value === "object") {
        return Object.fromEntries(
            Object.entries(value).map(([name, item]) => [name, unwrapSecrets(item)]),
        );
    }
    return value;
}
