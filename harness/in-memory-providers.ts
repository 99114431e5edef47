/**
 * Providers that apply the real providers' rules (what replaces, what deletes first) to an
 * in-memory record instead of a Docker engine or a shell: for program tests that step many
 * `pulumi up`s and care which resources would be touched, not what they do.
 */
import { CommandProviderStandIn } from "./command-provider-stand-in";
import { DockerProviderStandIn, volumeType } from "./docker-provider-stand-in";
import { ProviderStandIn } from "./pulumi-engine";

/** The Docker provider's rules, with resources kept in memory: what exists, by id. */
export class InMemoryDocker implements ProviderStandIn {
    private readonly rules = new DockerProviderStandIn("unused");
    readonly live = new Map<string, { type: string; inputs: Record<string, any> }>();
    private next = 0;

    handles = (type: string) => this.rules.handles(type);
    replaceKeys = (type: string) => this.rules.replaceKeys(type);
    deletesBeforeReplace = (type: string) => this.rules.deletesBeforeReplace(type);

    async create(type: string, inputs: Record<string, any>) {
        // Like Docker: a second container or network of the same name is refused; a volume is reused.
        const existing = [...this.live].find(
            ([, made]) => made.type === type && made.inputs.name === inputs.name,
        );
        if (existing && type === volumeType)
            return { id: existing[0], state: { ...existing[1].inputs } };
        if (existing) throw new Error(`${type} ${inputs.name} exists`);
        const id = type === volumeType ? inputs.name : `id-${this.next++}`;
        this.live.set(id, { type, inputs });
        return { id, state: { ...inputs } };
    }

    async update() {}

    async delete(_type: string, id: string) {
        this.live.delete(id);
    }
}

/** The Command provider's rules; its commands are recorded, never run. */
export class InMemoryCommands implements ProviderStandIn {
    private readonly rules = new CommandProviderStandIn();
    /** Every command that would have run, in order. */
    readonly ran: string[] = [];
    private next = 0;

    handles = (type: string) => this.rules.handles(type);
    replaceKeys = () => this.rules.replaceKeys();
    deletesBeforeReplace = () => this.rules.deletesBeforeReplace();

    async create(_type: string, inputs: Record<string, any>) {
        this.ran.push(inputs.create);
        return { id: `command-${this.next++}`, state: { ...inputs, stdout: "", stderr: "" } };
    }

    async update(_type: string, _id: string, _olds: unknown, news: Record<string, any>) {
        this.ran.push(news.update ?? news.create);
    }

    async delete(_type: string, _id: string, inputs: Record<string, any>) {
        if (inputs.delete) this.ran.push(inputs.delete);
    }
}
