/**
 * The local Docker engine for the real-engine tests: making sure it runs, its Engine API over the
 * unix socket, and the `docker` CLI for the odd command. Everything here stays on this machine.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { Agent, request } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { Socket } from "node:net";
import { Duplex } from "node:stream";
import * as path from "node:path";

const socketPath = process.env.DOCKER_SOCKET ?? "/var/run/docker.sock";
const repoRoot = path.resolve(__dirname, "..");

/** The caches' registry: distribution 3.0.0 built from source, laid out like `registry:3`. */
export const fixtureRegistryImage = "pullthrough-test/registry:3.0.0";
/** Debian's distribution 2.8, for what is specific to `registry:2`, and the fixture upstreams. */
export const fixtureRegistry2Image = "pullthrough-test/registry:2.8-debian";
/** Debian's nginx laid out like the official `nginx` image: the front. */
export const fixtureFrontImage = "pullthrough-test/nginx:1.22-debian";

/** Runs the docker CLI and returns its trimmed stdout; throws with stderr on failure. */
export function docker(...args: string[]): string {
    return execFileSync("docker", args, {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
        maxBuffer: 256 << 20,
    }).trim();
}

/** A blob download in a registry's access log; group 1 is the digest, 2 the status, 3 the bytes. */
export const blobGet = /"GET \/v2\/\S+\/blobs\/(sha256:[0-9a-f]{64})\S* HTTP\/1\.1" (\d{3}) (\d+)/;

/** Bytes of the blobs a registry sent in full (HTTP 200), by its access log, since a moment. */
export function blobBytesServed(container: string, since: Date): number {
    const log = docker("logs", "--since", since.toISOString(), container);
    return [...log.matchAll(new RegExp(blobGet.source, "g"))]
        .filter((match) => match[2] === "200")
        .reduce((sum, match) => sum + Number(match[3]), 0);
}

/** How many lines of a container's log (its registry access log) match `pattern`, optionally only since a moment. */
export function countLogLines(container: string, pattern: RegExp, since?: Date): number {
    return docker("logs", ...(since ? ["--since", since.toISOString()] : []), container)
        .split("\n")
        .filter((line) => pattern.test(line)).length;
}

const dockerIsUp = () => {
    try {
        docker("info", "--format", "{{.ServerVersion}}");
        return true;
    } catch {
        return false;
    }
};

/**
 * Starts what the real-engine tests need (Debian packages, dockerd) when it is missing, and makes
 * the fixture images. Fails, never skips, when the engine cannot be had.
 */
export function prepareTestHost(): void {
    if (!dockerIsUp()) {
        if (process.getuid?.() !== 0)
            throw new Error(
                "Docker is not running and only root can start it: run scripts/test-host.sh as root",
            );
        execFileSync("bash", [path.join(repoRoot, "scripts/test-host.sh")], { stdio: "inherit" });
    }
    execFileSync("bash", [path.join(repoRoot, "harness/fixture-images.sh")], { stdio: "inherit" });
}

/**
 * How to reach the Engine API of `dockerHost` (the local socket when unset): unix:// as a socket,
 * ssh:// as Docker's own connection helper does it, `ssh -l USER -p PORT -- HOST docker system
 * dial-stdio` with a connect timeout and no terminal (docker/cli cli/connhelper), carrying the
 * API over ssh's stdio.
 */
function connectionTo(dockerHost: string | undefined, certPath: string | undefined) {
    if (!dockerHost) return { socketPath };
    const url = new URL(dockerHost);
    if (url.protocol === "unix:") return { socketPath: url.pathname };
    if (url.protocol === "tcp:") {
        // TLS both ways, as the docker CLI with DOCKER_TLS_VERIFY: the CA and a client certificate.
        const read = (file: string) => readFileSync(path.join(certPath ?? "", file));
        return {
            agent: new HttpsAgent({
                ca: read("ca.pem"),
                cert: read("cert.pem"),
                key: read("key.pem"),
            }),
            host: url.hostname,
            port: url.port,
            protocol: "https:",
        };
    }
    if (url.protocol !== "ssh:")
        throw new Error(
            `the Docker provider stand-in reaches unix://, ssh:// and tcp:// engines, not ${dockerHost}`,
        );
    const agent = new Agent();
    agent.createConnection = () => {
        const ssh = spawn(
            "ssh",
            [
                ...["-o", "ConnectTimeout=30", "-T"],
                ...(url.username ? ["-l", url.username] : []),
                ...(url.port ? ["-p", url.port] : []),
                ...["--", url.hostname, "docker", "system", "dial-stdio"],
            ],
            // The test's environment (a suite may put its own ssh first on PATH), not jest's parent's.
            { stdio: ["pipe", "pipe", "ignore"], env: process.env },
        );
        const stream = Duplex.from({ readable: ssh.stdout, writable: ssh.stdin });
        stream.on("close", () => ssh.kill());
        return stream as unknown as Socket;
    };
    return { agent };
}

/**
 * One Engine API call; resolves to the parsed JSON body (or undefined), rejects on HTTP >= 400.
 * `archive` is sent as a tar body (for PUT …/archive) instead of a JSON `body`. `dockerHost`
 * picks another engine than this machine's; for tcp://, `certPath` holds the TLS client files.
 */
export function dockerApi<T = any>(
    method: string,
    apiPath: string,
    body?: unknown,
    archive?: Buffer,
    dockerHost?: string,
    certPath?: string,
): Promise<T> {
    const payload = archive ?? (body === undefined ? undefined : Buffer.from(JSON.stringify(body)));
    const contentType = archive ? "application/x-tar" : "application/json";
    return new Promise<T>((resolve, reject) => {
        const connection = connectionTo(dockerHost, certPath);
        const send = "protocol" in connection ? httpsRequest : request;
        const req = send(
            {
                ...connection,
                method,
                path: apiPath,
                headers: payload
                    ? { "content-type": contentType, "content-length": payload.length }
                    : {},
            },
            (res) => {
                const chunks: Buffer[] = [];
                res.on("data", (chunk: Buffer) => chunks.push(chunk));
                res.on("end", () => {
                    const text = Buffer.concat(chunks).toString("utf8");
                    if ((res.statusCode ?? 500) >= 400) {
                        reject(
                            new Error(
                                `Docker ${method} ${apiPath}: HTTP ${res.statusCode} ${text.trim()}`,
                            ),
                        );
                    } else {
                        // Podman answers some calls with a plain "OK" where Docker sends nothing.
                        const json = /json/.test(res.headers["content-type"] ?? "");
                        resolve((text && json ? JSON.parse(text) : undefined) as T);
                    }
                });
            },
        );
        req.on("error", reject);
        req.end(payload);
    });
}

/** Docker's json-file log of `container`: the live file and each rotated one, with its size. */
export function dockerLogFiles(container: string): { file: string; bytes: number }[] {
    const live = docker("inspect", "--format", "{{.LogPath}}", container);
    return [live, ...Array.from({ length: 99 }, (_, index) => `${live}.${index + 1}`)]
        .filter((file) => existsSync(file))
        .map((file) => ({ file, bytes: statSync(file).size }));
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
    what: string,
    timeoutMs: number,
    check: () => Promise<T | undefined>,
): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
        try {
            const value = await check();
            if (value !== undefined) return value;
        } catch (error) {
            lastError = error;
        }
        await sleep(250);
    }
    throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ""}`,
    );
}

/** Waits until Docker has restarted `container` after a crash and it reports healthy again. */
export function waitUntilRestartedHealthy(
    container: string,
    restartsBefore: number,
): Promise<true> {
    return waitFor(`${container} to restart healthy`, 60_000, async () => {
        const inspected = await dockerApi("GET", `/containers/${container}/json`);
        const healthy = inspected.State.Health?.Status === "healthy";
        return inspected.RestartCount > restartsBefore && healthy ? true : undefined;
    });
}

/**
 * What an engine holds, by kind, through its CLI (docker's or podman's, which list alike): to
 * compare before and after a stack.
 */
export function dockerInventory(cli: (...args: string[]) => string): {
    containers: string[];
    volumes: string[];
    networks: string[];
} {
    const list = (...args: string[]) =>
        cli(...args)
            .split("\n")
            .filter(Boolean)
            .sort();
    return {
        containers: list("ps", "--all", "--format", "{{.Names}}"),
        volumes: list("volume", "ls", "--format", "{{.Name}}"),
        networks: list("network", "ls", "--format", "{{.Name}}"),
    };
}

/**
 * A TCP port on 127.0.0.1 that nothing listens on right now, below Linux's ephemeral range
 * (32768–60999): a port from that range (what `listen(0)` hands out) can become some client
 * connection's source port before the stack binds it again, as a second `up` does.
 */
export async function freePort(): Promise<number> {
    const { createServer } = await import("node:net");
    const bindable = (port: number) =>
        new Promise<boolean>((resolve) => {
            const server = createServer();
            server.once("error", () => resolve(false));
            server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
        });
    for (;;) {
        const port = 10_000 + Math.floor(Math.random() * 22_000);
        if (await bindable(port)) return port;
    }
}
