/**
 * A private containerd daemon and its `ctr` client: the same image-pull path a Talos node takes,
 * configured by `hosts.toml` files. Its state lives in a temporary folder and goes with `stop()`.
 */
import { ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { containerdCaFile } from "../core/render";
import { waitFor } from "./docker";

const run = promisify(execFile);

export interface PulledImage {
    ref: string;
    /** Digest of what the reference resolved to: a manifest, or an index for multi-arch images. */
    digest: string;
}

/**
 * How `ctr` reaches registries: every host but this one's loopback through a proxy at a closed
 * loopback port (Go's ProxyFromEnvironment, which containerd's transport uses), so a fallback to
 * a real registry fails here, before any packet (or DNS lookup) leaves the machine.
 */
const onlyLoopback = {
    HTTPS_PROXY: "http://127.0.0.1:1",
    HTTP_PROXY: "http://127.0.0.1:1",
    NO_PROXY: "127.0.0.1,localhost",
};

export class Containerd {
    private constructor(
        private readonly dir: string,
        private readonly daemon: ChildProcess,
        readonly address: string,
        private readonly env: NodeJS.ProcessEnv,
    ) {}

    /** `loopbackOnly`: ctr reaches nothing but this host's loopback (see onlyLoopback). */
    static async start({ loopbackOnly = false } = {}): Promise<Containerd> {
        const dir = mkdtempSync(path.join(tmpdir(), "pt-containerd-"));
        const address = path.join(dir, "containerd.sock");
        const config = path.join(dir, "config.toml");
        writeFileSync(
            config,
            [
                "version = 2",
                `root = "${dir}/root"`,
                `state = "${dir}/state"`,
                'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
                "[grpc]",
                `  address = "${address}"`,
                '[plugins."io.containerd.internal.v1.opt"]',
                `  path = "${dir}/opt"`,
                "",
            ].join("\n"),
        );
        const daemon = spawn("containerd", ["--config", config], {
            stdio: ["ignore", "ignore", "pipe"],
        });
        let log = "";
        daemon.stderr!.on("data", (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
        const env = loopbackOnly ? { ...process.env, ...onlyLoopback } : process.env;
        const containerd = new Containerd(dir, daemon, address, env);
        await waitFor("containerd to answer", 20_000, async () => {
            if (daemon.exitCode !== null) throw new Error(`containerd exited: ${log}`);
            await containerd.ctr("default", "version");
            return true;
        });
        return containerd;
    }

    /** containerd's `root`: its content store, partial downloads (`ingest`) included. */
    get root(): string {
        return path.join(this.dir, "root");
    }

    async ctr(namespace: string, ...args: string[]): Promise<string> {
        const { stdout } = await run(
            "ctr",
            ["--address", this.address, "--namespace", namespace, ...args],
            { timeout: 120_000, maxBuffer: 16 << 20, env: this.env },
        );
        return stdout;
    }

    /**
     * Pulls (and unpacks) `ref` through the mirrors configured in `hostsDir`, as a node would;
     * `user` (`name:password`) is sent to whichever host asks for credentials.
     */
    async pull(
        namespace: string,
        ref: string,
        hostsDir: string,
        user?: string,
    ): Promise<PulledImage> {
        const login = user ? ["--user", user] : [];
        await this.ctr(namespace, "images", "pull", "--hosts-dir", hostsDir, ...login, ref);
        const listing = await this.ctr(namespace, "images", "ls");
        const row = listing
            .split("\n")
            .map((line) => line.trim().split(/\s+/))
            .find((columns) => columns[0] === ref);
        if (!row) throw new Error(`${ref} not listed after pull:\n${listing}`);
        return { ref, digest: row[2] };
    }

    /**
     * Pulls `refs` in order with a new containerd, like a freshly booted node (containerd shares
     * content between namespaces, so only a new content store fetches everything).
     * @returns the digest each reference resolved to
     */
    static async pullOnNewNode(
        refs: readonly string[],
        hostsDir: string,
        options: { loopbackOnly?: boolean } = {},
    ): Promise<string[]> {
        const containerd = await Containerd.start(options);
        try {
            const digests: string[] = [];
            for (const ref of refs)
                digests.push((await containerd.pull("default", ref, hostsDir)).digest);
            return digests;
        } finally {
            await containerd.stop();
        }
    }

    async stop(): Promise<void> {
        this.daemon.kill("SIGTERM");
        await waitFor("containerd to exit", 10_000, async () =>
            this.daemon.exitCode !== null || this.daemon.signalCode ? true : undefined,
        ).catch(() => this.daemon.kill("SIGKILL"));
        rmSync(this.dir, { recursive: true, force: true });
    }
}

/**
 * Writes `<dir>/<registry>/hosts.toml` files, each with `ca` as its `ca.crt` when given (what
 * the `containerdHosts` output's `ca = "ca.crt"` names), and returns `dir`.
 */
export function writeHostsDir(dir: string, hosts: Record<string, string>, ca?: string): string {
    for (const [registry, toml] of Object.entries(hosts)) {
        mkdirSync(path.join(dir, registry), { recursive: true });
        writeFileSync(path.join(dir, registry, "hosts.toml"), toml);
        if (ca !== undefined) writeFileSync(path.join(dir, registry, containerdCaFile), ca);
    }
    return dir;
}

/** A closed loopback port: as `server`, a broken mirror fails instead of reaching a real registry. */
export const closedLoopbackServer = "http://127.0.0.1:1";

/** The program's `containerdHosts` output with the `server` fallback closed off. */
export function withClosedFallback(hosts: Record<string, string>): Record<string, string> {
    return Object.fromEntries(
        Object.entries(hosts).map(([registry, toml]) => [
            registry,
            toml.replace(/^server = .*$/m, `server = "${closedLoopbackServer}"`),
        ]),
    );
}
