/**
 * A test stand-in for the Pulumi Docker provider: under `pulumi.runtime.setMocks`, it applies each
 * `docker.Volume` and `docker.Container` the program declares to the real local engine, the way
 * the provider would, and destroys them with the provider's semantics. Every input it receives
 * must be one it implements; anything else fails the run, so no setting is silently dropped.
 *
 * One deliberate difference: containers join `network` (a network the test created) instead of
 * the engine's default bridge, so caches and fixture upstreams reach each other by name.
 */
import * as pulumi from "@pulumi/pulumi";
import { engine, waitFor } from "./engine";
import type { DeclaredResource, ResourceHandler } from "./program";

const volumeType = "docker:index/volume:Volume";
const containerType = "docker:index/container:Container";

const implemented: Record<string, readonly string[]> = {
    volume: ["name", "labels"],
    container: ["name", "image", "entrypoints", "envs", "volumes", "ports", "restart", "healthcheck", "wait", "waitTimeout", "labels"],
    "container.volumes": ["volumeName", "containerPath"],
    "container.ports": ["internal", "external", "ip", "protocol"],
    "container.healthcheck": ["tests", "interval", "timeout", "retries", "startPeriod"],
    "container.labels": ["label", "value"],
    "volume.labels": ["label", "value"],
};

function requireImplemented(where: string, value: Record<string, unknown>) {
    const unknown = Object.keys(value).filter((key) => !implemented[where].includes(key));
    if (unknown.length > 0) throw new Error(`the Docker provider stand-in does not implement ${where} input(s) ${unknown.join(", ")}`);
}

const durationUnitsNs: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Go duration → nanoseconds, as the provider converts healthcheck timings. */
function nanoseconds(duration: string): number {
    const parts = [...duration.matchAll(/([0-9.]+)(ns|us|µs|ms|s|m|h)/g)];
    if (parts.map((part) => part[0]).join("") !== duration) throw new Error(`not a duration: ${duration}`);
    return Math.round(parts.reduce((total, [, value, unit]) => total + Number(value) * durationUnitsNs[unit], 0));
}

const labelMap = (labels: { label: string; value: string }[] = []) => Object.fromEntries(labels.map(({ label, value }) => [label, value]));

interface Created {
    type: string;
    name: string;
    /** Engine id of a container, name of a volume. */
    id: string;
}

export class DockerProviderStandIn {
    private readonly created: Created[] = [];

    constructor(private readonly network: string) {}

    /** Pass as `createResource` to `runProgram`. */
    readonly createResource: ResourceHandler = async (args) => {
        const inputs = unwrapSecrets(args.inputs) as Record<string, any>;
        if (args.type === volumeType) return this.createVolume(inputs);
        if (args.type === containerType) return this.createContainer(inputs);
        throw new Error(`the Docker provider stand-in does not implement ${args.type}`);
    };

    private async createVolume(inputs: Record<string, any>) {
        requireImplemented("volume", inputs);
        (inputs.labels ?? []).forEach((label: Record<string, unknown>) => requireImplemented("volume.labels", label));
        // Like the provider: creating a volume that exists is a success and reuses it.
        const volume = await engine("POST", "/volumes/create", { Name: inputs.name, Labels: labelMap(inputs.labels) });
        this.created.push({ type: volumeType, name: inputs.name, id: inputs.name });
        return { id: inputs.name, state: { ...inputs, driver: volume.Driver, mountpoint: volume.Mountpoint } };
    }

    private async createContainer(inputs: Record<string, any>) {
        requireImplemented("container", inputs);
        const volumes: Record<string, any>[] = inputs.volumes ?? [];
        const ports: Record<string, any>[] = inputs.ports ?? [];
        const healthcheck: Record<string, any> | undefined = inputs.healthcheck;
        volumes.forEach((volume) => requireImplemented("container.volumes", volume));
        ports.forEach((port) => requireImplemented("container.ports", port));
        (inputs.labels ?? []).forEach((label: Record<string, unknown>) => requireImplemented("container.labels", label));
        if (healthcheck) requireImplemented("container.healthcheck", healthcheck);
        if (inputs.wait && !healthcheck) throw new Error("wait needs a healthcheck (the provider errors too)");

        const portKey = (port: Record<string, any>) => `${port.internal}/${port.protocol ?? "tcp"}`;
        const { Id: id } = await engine("POST", `/containers/create?name=${encodeURIComponent(inputs.name)}`, {
            Image: inputs.image,
            // As with the provider: an entrypoint given drops the image's CMD (Engine API merge rule).
            Entrypoint: inputs.entrypoints,
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
                Mounts: volumes.map((volume) => ({ Type: "volume", Source: volume.volumeName, Target: volume.containerPath })),
                PortBindings: Object.fromEntries(ports.map((port) => [portKey(port), [{ HostIp: port.ip ?? "0.0.0.0", HostPort: String(port.external) }]])),
                RestartPolicy: { Name: inputs.restart ?? "no" },
                NetworkMode: this.network,
            },
        });
        this.created.push({ type: containerType, name: inputs.name, id });
        await engine("POST", `/containers/${id}/start`);
        if (inputs.wait) {
            const timeoutMs = (inputs.waitTimeout ?? 60) * 1000;
            await waitFor(`container ${inputs.name} to be healthy`, timeoutMs, async () => {
                const state = (await engine("GET", `/containers/${id}/json`)).State;
                return state.Health?.Status === "healthy" ? true : undefined;
            });
        }
        return { id, state: { ...inputs } };
    }

    /** `pulumi destroy`: removes what a run declared, in reverse order, keeping `retainOnDelete` resources. */
    async destroy(resources: readonly DeclaredResource[]): Promise<void> {
        for (const resource of [...resources].reverse()) {
            if (resource.options.retainOnDelete) continue;
            if (resource.type === containerType) await engine("DELETE", `/containers/${encodeURIComponent(resource.inputs.name)}?force=true`);
            if (resource.type === volumeType) await engine("DELETE", `/volumes/${encodeURIComponent(resource.inputs.name)}`);
        }
    }

    /** Removes everything this stand-in ever made, retained volumes included; for test teardown. */
    async removeEverything(): Promise<void> {
        for (const made of [...this.created].reverse()) {
            const path = made.type === containerType ? `/containers/${made.id}?force=true` : `/volumes/${encodeURIComponent(made.id)}?force=true`;
            await engine("DELETE", path).catch((error: Error) => {
                if (!/HTTP 404/.test(error.message)) throw error;
            });
        }
    }
}

/** The provider receives secret inputs decrypted; the engine must see the plain values too. */
function unwrapSecrets(value: unknown): unknown {
    if (pulumi.runtime.isRpcSecret(value)) return unwrapSecrets(pulumi.runtime.unwrapRpcSecret(value));
    if (Array.isArray(value)) return value.map(unwrapSecrets);
    if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, unwrapSecrets(item)]));
    return value;
}
