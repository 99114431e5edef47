/**
 * One local stack for a real-engine suite or the bench: fixture upstreams on a Docker network of
 * its own, the Pulumi engine stand-in with the Docker and Command provider stand-ins behind it,
 * free loopback ports for the caches, and a containerd hosts directory kept in step with the
 * stack's `containerdHosts` output (fallback closed off). Everything it makes is named after
 * `id`, and `remove` takes it all away.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { CommandProviderStandIn } from "./command-provider-stand-in";
import { Containerd, withClosedFallback, writeHostsDir } from "./containerd";
import { DockerProviderStandIn } from "./docker-provider-stand-in";
import { contentRequest, readAccessLog } from "../core/access-log";
import { encodeConfig } from "../mirrors";
import {
    docker,
    fixtureFrontImage,
    fixtureRegistryImage,
    freePort,
    prepareTestHost,
} from "./docker";
import { ProgramRun } from "./program";
import { PulumiEngineStandIn } from "./pulumi-engine";
import { TlsProviderStandIn } from "./tls-provider-stand-in";
import { FixtureImage, FixtureUpstreams } from "./upstreams";

const supervisorScript = readFileSync(
    path.join(__dirname, "../container/cache-supervisor.sh"),
    "utf8",
);

/**
 * The cache supervisor's bounds (container/cache-supervisor.sh): how long a partial upload nobody
 * writes lives, and how often the supervisor looks.
 */
export const supervisorBounds = {
    staleUploadSeconds: Number(/^stale_upload_seconds=(\d+)$/m.exec(supervisorScript)![1]),
    sweepSeconds: Number(/^probe_interval=(\d+)$/m.exec(supervisorScript)![1]),
};

export interface StackUpstream {
    registry: string;
    remote: string;
    port: number;
}

/**
 * Stack config for test caches: the fixture registry image, published on loopback under
 * `namePrefix`, one cache per upstream; `extra` keys as the CLI would hand them over.
 */
export function localStackConfig(
    namePrefix: string,
    upstreams: readonly StackUpstream[],
    extra: Record<string, unknown> = {},
): Record<string, string> {
    return encodeConfig({
        image: fixtureRegistryImage,
        frontImage: fixtureFrontImage,
        bindAddress: "127.0.0.1",
        mirrorHost: "127.0.0.1",
        namePrefix,
        upstreams,
        ...extra,
    });
}

export class TestStack {
    readonly docker: DockerProviderStandIn;
    readonly commands = new CommandProviderStandIn();
    readonly tls = new TlsProviderStandIn();
    readonly engine: PulumiEngineStandIn;
    /** The last `up`'s run: declared resources and outputs. */
    run!: ProgramRun;

    private constructor(
        /** Prefix of every container, volume and network the stack makes. */
        readonly id: string,
        readonly upstreams: FixtureUpstreams,
        /** Host port of each registry's cache. */
        readonly ports: Record<string, number>,
        /** containerd `hosts.toml` directory for the current outputs. */
        readonly hostsDir: string,
        /** The front's one port for every registry: a free one, so suites run side by side. */
        readonly anyRegistryPort: number,
    ) {
        this.docker = new DockerProviderStandIn(id);
        this.engine = new PulumiEngineStandIn([this.docker, this.commands, this.tls]);
    }

    /** Readies the host, starts a fixture upstream per registry and seeds it with `images`. */
    static async start(
        suite: string,
        registries: string[],
        images: FixtureImage[] = [],
    ): Promise<TestStack> {
        prepareTestHost();
        const id = `pt-${suite}-${process.pid}`;
        const upstreams = await FixtureUpstreams.start(id, registries);
        await upstreams.seed(images);
        const ports: Record<string, number> = {};
        for (const registry of registries) ports[registry] = await freePort();
        const hostsDir = mkdtempSync(path.join(tmpdir(), "pt-hosts-"));
        return new TestStack(id, upstreams, ports, hostsDir, await freePort());
    }

    /** `pulumi up` with the local caches' config plus `extra`; `upstreams` overrides the fixture list. */
    async up(
        extra: Record<string, unknown> = {},
        upstreams = this.upstreams.upstreamsOn(this.ports),
    ) {
        this.run = await this.engine.up(
            localStackConfig(`${this.id}-`, upstreams, {
                anyRegistryPort: this.anyRegistryPort,
                ...extra,
            }),
        );
        // Nodes read hosts.toml as the program renders it; only the fallback is closed off.
        rmSync(this.hostsDir, { recursive: true, force: true });
        writeHostsDir(
            this.hostsDir,
            withClosedFallback(this.run.outputs.containerdHosts as Record<string, string>),
            (this.run.outputs.caCertificate as string | null) ?? undefined,
        );
        return this.run;
    }

    /** `pulumi destroy`. */
    async destroy(): Promise<void> {
        await this.engine.destroy();
    }

    cacheName(registry: string): string {
        return `${this.id}-${registry.replace(":", "_")}`;
    }

    /** The front container, which publishes every cache port. */
    get frontName(): string {
        return `${this.id}-front`;
    }

    /** Blob responses the front sent for a cache (its access log), optionally only since a moment. */
    blobsServedBy(registry: string, since?: Date): number {
        const sinceArgs = since ? ["--since", since.toISOString()] : [];
        const log = docker("logs", ...sinceArgs, this.frontName);
        return readAccessLog(log, this.ports[registry]).filter((entry) => {
            const request = contentRequest(entry);
            return request?.kind === "blobs" && request.method === "GET";
        }).length;
    }

    /** Pulls `refs` as a freshly booted node through the current hosts.toml; resolves to their digests. */
    pullOnNewNode(refs: string[]): Promise<string[]> {
        return Containerd.pullOnNewNode(refs, this.hostsDir);
    }

    /** Removes everything the stack made, retained volumes included. */
    async remove(): Promise<void> {
        this.engine.forget();
        await this.docker.removeEverything();
        await this.upstreams.remove();
        rmSync(this.hostsDir, { recursive: true, force: true });
    }
}
