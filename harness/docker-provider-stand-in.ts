/**
 * A test stand-in for the Pulumi Docker provider: it applies each `docker.Network`,
 * `docker.Volume` and `docker.Container` to the real local engine the way the provider does, for
 * the Pulumi engine stand-in (harness/pulumi-engine.ts). What it models, from kreuzwerker
 * terraform-provider-docker v4.5.0 (the upstream of pulumi-docker v5) and pulumi-docker's
 * `provider/resources.go`:
 *
 * - Container: create → connect declared networks → copy `uploads` → start → with `wait`, poll
 *   until healthy (`waitTimeout`, default 60 s). Every input forces replacement except those
 *   `resourceDockerContainerUpdate` applies or only records (restart, resources, mustRun, wait,
 *   waitTimeout, healthcheck, …); Update applies restart alone. Delete-before-replace by default
 *   (`resources.go`). Delete is a forced removal; "no such container" is ignored. HostConfig's
 *   LogConfig is `logDriver` (the schema's default, json-file) with `logOpts` as its Config
 *   (`resource_docker_container_funcs.go`).
 * - Volume: every input forces replacement, create-before-delete; creating a volume whose name
 *   exists returns that volume, and the state records the labels read back from it. Delete is
 *   forced and retried while the volume is in use.
 * - Network: every input forces replacement, create-before-delete; the engine refuses a second
 *   network of the same name.
 *
 * - Provider: `host` picks the engine (the local socket when unset); ssh:// is reached as the
 *   provider reaches it, through Docker's connection helper, and tcp:// with TLS from `certPath`
 *   (harness/docker.ts).
 *
 * Every input it receives must be one it implements; anything else fails the run, so no setting
 * is silently dropped. One deliberate difference: every container on the local engine also joins
 * `testNetwork`, where the fixture upstreams live, in place of the default bridge; on another
 * engine containers stay on its default bridge, and reach the upstreams through its NAT.
 */
import {
    Front,
    FrontAccessFiles,
    frontAccessUploads,
    frontContainer,
    frontLedgerVolume,
    stackNetwork,
} from "../core/front";
import { Cache, cacheContainer, cacheVolume } from "../core/plan";
import { readCacheSupervisor, readFrontScripts } from "../host/assets";
import { dockerApi, waitFor } from "./docker";
import type { ProviderStandIn } from "./pulumi-engine";

export const volumeType = "docker:index/volume:Volume";
export const containerType = "docker:index/container:Container";
export const networkType = "docker:index/network:Network";

/** Inputs `resourceDockerContainerUpdate` may touch without replacing the container. */
const containerUpdatable = [
    "restart",
    "maxRetryCount",
    "cpuShares",
    "cpuSet",
    "memory",
    "memorySwap",
    "mustRun",
    "wait",
    "waitTimeout",
    "healthcheck",
    "destroyGraceSeconds",
];

const implemented: Record<string, readonly string[]> = {
    volume: ["name", "labels"],
    network: ["name", "labels", "internal"],
    container: [
        "name",
        "image",
        "entrypoints",
        "command",
        "envs",
        "volumes",
        "ports",
        "restart",
        "healthcheck",
        "wait",
        "waitTimeout",
        "labels",
        "networksAdvanced",
        "uploads",
        "logDriver",
        "logOpts",
    ],
    "container.volumes": ["volumeName", "containerPath", "readOnly"],
    "container.ports": ["internal", "external", "ip", "protocol"],
    "container.healthcheck": ["tests", "interval", "timeout", "retries", "startPeriod"],
    "container.networksAdvanced": ["name", "aliases"],
    "container.uploads": ["file", "content"],
    labels: ["label", "value"],
    provider: ["host", "certPath"],
};

function requireImplemented(where: string, value: Record<string, unknown> | undefined) {
    const unknown = Object.keys(value ?? {}).filter((key) => !implemented[where].includes(key));
    if (unknown.length > 0) {
        throw new Error(
            `the Docker provider stand-in does not implement ${where} input(s) ${unknown.join(", ")}`,
        );
    }
}

const requireEach = (where: string, values: Record<string, unknown>[] | undefined) =>
    (values ?? []).forEach((value) => requireImplemented(where, value));

const durationUnitsNs: Record<string, number> = {
    ns: 1,
    us: 1e3,
    µs: 1e3,
    ms: 1e6,
    s: 1e9,
    m: 60e9,
    h: 3600e9,
};

/** Go duration → nanoseconds, as the provider converts healthcheck timings. */
function nanoseconds(duration: string): number {
    const parts = [...duration.matchAll(/([0-9.]+)(ns|us|µs|ms|s|m|h)/g)];
    if (parts.map((part) => part[0]).join("") !== duration)
        throw new Error(`not a duration: ${duration}`);
    return Math.round(
        parts.reduce((total, [, value, unit]) => total + Number(value) * durationUnitsNs[unit], 0),
    );
}

const labelMap = (labels: { label: string; value: string }[] = []) =>
    Object.fromEntries(labels.map(({ label, value }) => [label, value]));

const ignoreMissing = (error: Error) => {
    if (!/HTTP 404/.test(error.message)) throw error;
};

/** The Engine API of the engine a provider configuration names. */
const dockerApiOf =
    (config: Record<string, any>) =>
    (method: string, apiPath: string, body?: unknown, archive?: Buffer) =>
        dockerApi(method, apiPath, body, archive, config.host, config.certPath);

export class DockerProviderStandIn implements ProviderStandIn {
    /** Everything ever created, for test teardown: `[type, id, provider config]`. */
    private readonly created: [string, string, Record<string, any>][] = [];

    constructor(private readonly testNetwork: string) {}

    handles(type: string): boolean {
        return [volumeType, containerType, networkType].includes(type);
    }

    replaceKeys(type: string): "all" | readonly string[] {
        if (type !== containerType) return "all";
        return implemented.container.filter((input) => !containerUpdatable.includes(input));
    }

    deletesBeforeReplace(type: string): boolean {
        return type === containerType;
    }

    async create(type: string, inputs: Record<string, any>, config: Record<string, any> = {}) {
        requireImplemented("provider", config);
        if (type === volumeType) return this.createVolume(inputs, config);
        if (type === networkType) return this.createNetwork(inputs, config);
        return this.createContainer(inputs, config);
    }

    /** Only restart is applied; other updatable inputs are recorded and nothing more. */
    async update(
        type: string,
        id: string,
        olds: Record<string, any>,
        news: Record<string, any>,
        config: Record<string, any> = {},
    ) {
        if (type === containerType && olds.restart !== news.restart) {
            await dockerApiOf(config)("POST", `/containers/${id}/update`, {
                RestartPolicy: { Name: news.restart ?? "no" },
            });
        }
    }

    async delete(
        type: string,
        id: string,
        _inputs: Record<string, any>,
        config: Record<string, any> = {},
    ) {
        const api = dockerApiOf(config);
        if (type === containerType) {
            await api("DELETE", `/containers/${id}?force=true&v=true`).catch(ignoreMissing);
        } else if (type === networkType) {
            await api("DELETE", `/networks/${id}`).catch(ignoreMissing);
        } else {
            // Forced, and retried while a container still uses it, as the provider does (30 s).
            await waitFor(`volume ${id} to be removed`, 30_000, async () => {
                await api("DELETE", `/volumes/${encodeURIComponent(id)}?force=true`).catch(
                    ignoreMissing,
                );
                return true;
            });
        }
    }

    /**
     * Declares the stack's network, caches and front as index.ts does, outside a Pulumi run (the
     * bench): the same definitions, in the same order.
     */
    async createCaches(caches: readonly Cache[], front: Front): Promise<void> {
        const supervisor = readCacheSupervisor();
        await this.createNetwork(stackNetwork(front));
        for (const cache of caches) await this.createVolume(cacheVolume(cache));
        await Promise.all(
            caches.map((cache) => this.createContainer(cacheContainer(cache, supervisor).args)),
        );
        await this.createFront(front, caches);
    }

    /** A front (and its ledger's volume) for `caches`, given its TLS and credential files. */
    async createFront(
        front: Front,
        caches: readonly Cache[],
        access: FrontAccessFiles = {},
    ): Promise<void> {
        await this.createVolume(frontLedgerVolume(front));
        const args = frontContainer(front, caches, readFrontScripts());
        await this.createContainer({
            ...args,
            uploads: [...args.uploads, ...frontAccessUploads(access)],
        });
    }

    /** Removes everything this stand-in ever made, retained volumes included; for test teardown. */
    async removeEverything(): Promise<void> {
        for (const [type, id, config] of [...this.created].reverse())
            await this.delete(type, id, {}, config);
        this.created.length = 0;
    }

    private async createVolume(inputs: Record<string, any>, config: Record<string, any> = {}) {
        requireImplemented("volume", inputs);
        requireEach("labels", inputs.labels);
        const volume = await dockerApiOf(config)("POST", "/volumes/create", {
            Name: inputs.name,
            Labels: labelMap(inputs.labels),
        });
        this.created.push([volumeType, inputs.name, config]);
        // The provider reads the volume back, so its state holds the labels the engine has.
        const labels = Object.entries(volume.Labels ?? {}).map(([label, value]) => ({
            label,
            value,
        }));
        return { id: inputs.name, state: { ...inputs, labels, mountpoint: volume.Mountpoint } };
    }

    private async createNetwork(inputs: Record<string, any>, config: Record<string, any> = {}) {
        requireImplemented("network", inputs);
        requireEach("labels", inputs.labels);
        const { Id: id } = await dockerApiOf(config)("POST", "/networks/create", {
            Name: inputs.name,
            CheckDuplicate: true,
            Internal: inputs.internal ?? false,
            Labels: labelMap(inputs.labels),
        });
        this.created.push([networkType, id, config]);
        return { id, state: { ...inputs } };
    }

    private async createContainer(inputs: Record<string, any>, config: Record<string, any> = {}) {
        const api = dockerApiOf(config);
        requireImplemented("container", inputs);
        requireEach("container.volumes", inputs.volumes);
        requireEach("container.ports", inputs.ports);
        requireEach("container.networksAdvanced", inputs.networksAdvanced);
        requireEach("container.uploads", inputs.uploads);
        requireEach("labels", inputs.labels);
        const healthcheck: Record<string, any> | undefined = inputs.healthcheck;
        requireImplemented("container.healthcheck", healthcheck);
        if (inputs.wait && !healthcheck)
            throw new Error("wait needs a healthcheck (the provider errors too)");

        const { Id: id } = await api(
            "POST",
            `/containers/create?name=${encodeURIComponent(inputs.name)}`,
            containerCreateBody(inputs, config.host ? "default" : this.testNetwork),
        );
        this.created.push([containerType, id, config]);
        for (const network of inputs.networksAdvanced ?? []) {
            await api("POST", `/networks/${encodeURIComponent(network.name)}/connect`, {
                Container: id,
                EndpointConfig: { Aliases: network.aliases ?? [] },
            });
        }
        for (const upload of inputs.uploads ?? []) {
            await api(
                "PUT",
                `/containers/${id}/archive?path=/`,
                undefined,
                tarOf(upload.file, upload.content),
            );
        }
        await api("POST", `/containers/${id}/start`);
        if (inputs.wait) {
            await waitFor(
                `container ${inputs.name} to be healthy`,
                (inputs.waitTimeout ?? 60) * 1000,
                async () => {
                    const state = (await api("GET", `/containers/${id}/json`)).State;
                    return state.Health?.Status === "healthy" ? true : undefined;
                },
            );
        }
        return { id, state: { ...inputs } };
    }
}

/** The Engine API's container create body for the provider's inputs, as the provider builds it. */
function containerCreateBody(inputs: Record<string, any>, networkMode: string) {
    const healthcheck: Record<string, any> | undefined = inputs.healthcheck;
    const ports: Record<string, any>[] = inputs.ports ?? [];
    const portKey = (port: Record<string, any>) => `${port.internal}/${port.protocol ?? "tcp"}`;
    return {
        Image: inputs.image,
        // As with the provider: an entrypoint given drops the image's CMD (Engine API merge rule).
        Entrypoint: inputs.entrypoints,
        Cmd: inputs.command,
        Env: inputs.envs ?? [],
        Labels: labelMap(inputs.labels),
        ExposedPorts: Object.fromEntries(ports.map((port) => [portKey(port), {}])),
        Healthcheck: healthcheck && {
            Test: healthcheck.tests,
            Interval: healthcheck.interval && nanoseconds(healthcheck.interval),
            Timeout: healthcheck.timeout && nanoseconds(healthcheck.timeout),
            StartPeriod: healthcheck.startPeriod && nanoseconds(healthcheck.startPeriod),
            Retries: healthcheck.retries,
        },
        HostConfig: {
            Mounts: (inputs.volumes ?? []).map((volume: Record<string, any>) => ({
                Type: "volume",
                Source: volume.volumeName,
                Target: volume.containerPath,
                ReadOnly: volume.readOnly ?? false,
            })),
            PortBindings: Object.fromEntries(
                ports.map((port) => [
                    portKey(port),
                    [
                        {
                            HostIp: port.ip ?? "0.0.0.0",
                            HostPort: String(port.external ?? ""),
                        },
                    ],
                ]),
            ),
            RestartPolicy: { Name: inputs.restart ?? "no" },
            NetworkMode: networkMode,
            // The provider's `log_driver` defaults to json-file; `log_opts` are its Config.
            LogConfig: { Type: inputs.logDriver ?? "json-file", Config: inputs.logOpts ?? {} },
        },
    };
}

/** A one-file tar archive (ustar), as the provider builds for `uploads`. */
function tarOf(file: string, content: string): Buffer {
    const body = Buffer.from(content, "utf8");
    const header = Buffer.alloc(512);
    const name = file.replace(/^\//, "");
    header.write(name, 0, 100);
    header.write("0000644\0", 100);
    header.write("0000000\0", 108);
    header.write("0000000\0", 116);
    header.write(body.length.toString(8).padStart(11, "0") + "\0", 124);
    header.write(
        Math.floor(Date.now() / 1000)
            .toString(8)
            .padStart(11, "0") + "\0",
        136,
    );
    header.write("        ", 148);
    header.write("0", 156);
    header.write("ustar\0" + "00", 257);
    const checksum = [...header].reduce((sum, byte) => sum + byte, 0);
    header.write(checksum.toString(8).padStart(6, "0") + "\0 ", 148);
    const padding = Buffer.alloc((512 - (body.length % 512)) % 512);
    return Buffer.concat([header, body, padding, Buffer.alloc(1024)]);
}
