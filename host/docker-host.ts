/**
 * The Docker engine the caches run on: this machine's by default, or `dockerHost`, reached the
 * way Docker's own CLI reaches it (ssh:// runs `ssh … docker system dial-stdio` on the other
 * machine; tcp:// is TLS with the client certificates in DOCKER_CERT_PATH or ~/.docker). The
 * Docker provider, the tools' `docker` commands and the checks below all use the same address.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import * as path from "node:path";
import { parseDockerHost } from "../core/docker-host-url";
import { ConfigError } from "../core/config-error";

/**
 * The oldest Engine API the caches work with: Docker's ssh:// transport needs `docker system
 * dial-stdio` on the engine's machine (Docker 18.09, API 1.39); healthcheck start periods need 1.29.
 */
const minimumApiVersion = "1.39";

const tlsFiles = ["ca.pem", "cert.pem", "key.pem"];

/** Where the docker CLI looks for TLS client certificates (its DOCKER_CERT_PATH default). */
function certPath(): string {
    return process.env.DOCKER_CERT_PATH || path.join(homedir(), ".docker");
}

/** The environment that points the docker CLI at `dockerHost`, TLS included for tcp://. */
export function dockerHostEnv(dockerHost: string): Record<string, string> {
    const tcp = parseDockerHost(dockerHost)?.scheme === "tcp";
    return {
        DOCKER_HOST: dockerHost,
        ...(tcp ? { DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: certPath() } : {}),
    };
}

/**
 * `docker ps --format` for parsePublishedPorts. Not `--filter publish=`, which Podman 4.3 rejects
 * (`publish is an invalid filter`).
 */
export const publishedPortsFormat = "{{.Names}}\t{{.Ports}}";

/**
 * Host ports the engine publishes, by the container publishing them, from `docker ps` in
 * publishedPortsFormat. Docker and Podman both write consecutive ports as one range
 * (`127.0.0.1:5000-5004->5000-5004/tcp`).
 */
export function parsePublishedPorts(listing: string): Map<number, string> {
    const ports = new Map<number, string>();
    for (const line of listing.split("\n").filter(Boolean)) {
        const [name, mappings = ""] = line.split("\t");
        for (const [, first, last = first] of mappings.matchAll(/:(\d+)(?:-(\d+))?->/g))
            for (let port = Number(first); port <= Number(last); port++) ports.set(port, name);
    }
    return ports;
}

/** The explicit Docker provider's inputs for `dockerHost`. */
export function dockerProviderArgs(dockerHost: string) {
    const tcp = parseDockerHost(dockerHost)?.scheme === "tcp";
    return { host: dockerHost, ...(tcp ? { certPath: certPath() } : {}) };
}

const apiNumber = (version: string) => version.split(".").map(Number);
const olderThan = (version: string, minimum: string) => {
    const [major, minor] = apiNumber(version);
    const [minMajor, minMinor] = apiNumber(minimum);
    return major < minMajor || (major === minMajor && minor < minMinor);
};

/**
 * Why the docker CLI could not reach its engine, from what it printed; undefined for any other
 * failure. The tools exit 2 with this line: nothing about the caches can be known. (`up` words
 * a `dockerHost` it cannot reach with describeDockerHostFailure, below.)
 */
export function dockerUnreachable(stderr: string): string | undefined {
    const address = /\b(?:unix|tcp|ssh|npipe):\/\/\S*?(?=[.:]?(?:\s|$))/.exec(stderr)?.[0];
    const at = address ? ` at ${address}` : "";
    if (/permission denied while trying to connect/i.test(stderr))
        return `no permission to use the Docker engine${at}: add your user to the docker group and log in again, or run as root`;
    if (/Cannot connect to the Docker (?:daemon|API)|error during connect/i.test(stderr))
        return `the Docker engine${at} does not answer: start Docker, or check pullthrough:dockerHost`;
    return undefined;
}

/** Why the docker CLI could not reach `dockerHost`, in a user's words, from what it printed. */
export function describeDockerHostFailure(dockerHost: string, stderr: string): string {
    const url = new URL(dockerHost);
    const login = `${url.username ? `${url.username}@` : ""}${url.hostname}`;
    const said = stderr.replace(/\s+/g, " ").trim();
    if (/Permission denied \(/.test(said))
        return `ssh refused the login to ${login} (${said.match(/\S*Permission denied \([^)]*\)/)![0]}); check that "ssh ${login}" logs in without a prompt (a key in ssh-agent or ~/.ssh/config)`;
    if (/Host key verification failed/.test(said))
        return `ssh does not know ${url.hostname}'s host key; run "ssh ${login}" once and accept it`;
    return `no Docker engine answers at ${dockerHost}: ${said || "no reason given"}`;
}

/**
 * Asks the engine at `dockerHost` for its API version.
 * @throws ConfigError naming `dockerHost` when it cannot be reached, refuses the login, is older
 *   than minimumApiVersion, or (tcp://) the TLS client certificates are missing
 */
export function checkDockerHost(dockerHost: string): void {
    const fail = (detail: string) => new ConfigError([{ key: ["dockerHost"], detail }]);
    const env = dockerHostEnv(dockerHost);
    if (env.DOCKER_CERT_PATH) {
        const missing = tlsFiles.filter(
            (file) => !existsSync(path.join(env.DOCKER_CERT_PATH, file)),
        );
        if (missing.length > 0)
            throw fail(
                `${dockerHost} is TLS, and ${missing.join(", ")} are not in ${env.DOCKER_CERT_PATH} (set DOCKER_CERT_PATH to the folder with ca.pem, cert.pem and key.pem)`,
            );
    }
    let version: string;
    try {
        version = execFileSync("docker", ["version", "--format", "{{.Server.APIVersion}}"], {
            env: { ...process.env, ...env },
            encoding: "utf8",
            stdio: ["ignore", "pipe", "pipe"],
            timeout: 30_000,
        }).trim();
    } catch (error) {
        const { code, stderr } = error as NodeJS.ErrnoException & { stderr?: string };
        if (code === "ENOENT")
            throw fail(
                `reaching ${dockerHost} needs the docker CLI on this machine, and there is none on PATH`,
            );
        throw fail(describeDockerHostFailure(dockerHost, stderr ?? ""));
    }
    if (olderThan(version, minimumApiVersion))
        throw fail(
            `the engine at ${dockerHost} speaks Docker API ${version}; the caches need ${minimumApiVersion} or newer (Docker 18.09+)`,
        );
}
