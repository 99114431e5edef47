/**
 * Checks on this host (and `dockerHost`'s engine) before any resource is declared: what the Docker engine would otherwise
 * reject half-way through `up`, after other caches were already created. Host I/O only.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { Settings, formatValue } from "../mirrors";
import { dockerHostAddress } from "../core/docker-host-url";
import { ConfigError, ConfigProblem } from "../core/config-error";
import {
    checkDockerHost,
    dockerHostEnv,
    parsePublishedPorts,
    publishedPortsFormat,
} from "./docker-host";
import { Cache } from "../core/plan";
import { Front } from "../core/front";

/**
 * @throws ConfigError when `bindAddress` is not this host's or a cache port is held by anything
 *   but this stack's own front (a second `up` finds its own ports taken, by itself)
 */
export function checkHost(settings: Settings, caches: readonly Cache[], front: Front): void {
    if (settings.dockerHost) checkDockerHost(settings.dockerHost);
    // On another machine's engine only that engine's own containers can be seen.
    const remote = dockerHostAddress(settings.dockerHost) !== undefined;
    const problems: ConfigProblem[] = [];
    const addresses = localAddresses();
    if (
        !remote &&
        settings.bindAddress !== "0.0.0.0" &&
        !addresses.includes(settings.bindAddress)
    ) {
        problems.push({
            key: ["bindAddress"],
            detail: `got ${formatValue([], settings.bindAddress)}; expected an address of this host ("0.0.0.0" for all of them, or one of ${addresses.join(", ")})`,
        });
    }
    const published = publishedPorts(settings.dockerHost);
    const listening = remote ? [] : listeningSockets();
    const ports = [
        ...caches.map((cache) => ({
            port: cache.port,
            key: [
                "upstreams",
                settings.upstreams.findIndex((upstream) => upstream.port === cache.port),
                "port",
            ],
        })),
        { port: front.anyRegistryPort, key: ["anyRegistryPort"] },
    ];
    for (const { port, key } of ports) {
        const container = published.get(port);
        if (container === front.name) continue;
        const holder =
            container !== undefined
                ? `container ${container}`
                : holderOf(listening, port, settings.bindAddress);
        if (holder === undefined) continue;
        problems.push({
            key,
            detail: `got ${port}; expected a port free on ${settings.bindAddress} (${holder} holds it)`,
        });
    }
    if (problems.length > 0) throw new ConfigError(problems);
}

function localAddresses(): string[] {
    return Object.values(networkInterfaces())
        .flat()
        .filter((address) => address?.family === "IPv4")
        .map((address) => address!.address);
}

/** Host ports the engine publishes, by the container publishing them; empty without an engine. */
function publishedPorts(dockerHost: string | undefined): Map<number, string> {
    const ports = new Map<number, string>();
    let listing: string;
    try {
        listing = execFileSync("docker", ["ps", "--format", publishedPortsFormat], {
            env: { ...process.env, ...(dockerHost ? dockerHostEnv(dockerHost) : {}) },
            encoding: "utf8",
            stdio: ["ignore", "pipe", "ignore"],
            timeout: 15_000,
        });
    } catch {
        return ports; // no engine here: the provider will say so
    }
    return parsePublishedPorts(listing);
}

interface ListeningSocket {
    address: string;
    port: number;
    inode: string;
}

/** TCP listeners of this network namespace, from /proc/net/tcp{,6}. */
function listeningSockets(): ListeningSocket[] {
    return ["/proc/net/tcp", "/proc/net/tcp6"].flatMap((table) => {
        let text: string;
        try {
            text = readFileSync(table, "utf8");
        } catch {
            return [];
        }
        return text
            .split("\n")
            .slice(1)
            .map((line) => line.trim().split(/\s+/))
            .filter((fields) => fields[3] === "0A") // TCP_LISTEN
            .map((fields) => {
                const [hexAddress, hexPort] = fields[1].split(":");
                return {
                    // Of IPv6 listeners only the wildcard also takes IPv4 connections.
                    address:
                        hexAddress.length === 8
                            ? ipv4FromProc(hexAddress)
                            : /^0+$/.test(hexAddress)
                              ? "::"
                              : "an IPv6 address",
                    port: parseInt(hexPort, 16),
                    inode: fields[9],
                };
            });
    });
}

/** /proc/net/tcp writes an IPv4 address as a little-endian hex word. */
const ipv4FromProc = (hex: string) =>
    [6, 4, 2, 0].map((offset) => parseInt(hex.slice(offset, offset + 2), 16)).join(".");

/** Who listens where a bind to `bindAddress:port` would collide, as "node (pid 42)". */
function holderOf(
    listening: readonly ListeningSocket[],
    port: number,
    bindAddress: string,
): string | undefined {
    const socket = listening.find(
        (candidate) =>
            candidate.port === port &&
            (bindAddress === "0.0.0.0" ||
                candidate.address === bindAddress ||
                candidate.address === "0.0.0.0" ||
                candidate.address === "::"),
    );
    if (!socket) return undefined;
    return processOwning(socket.inode) ?? "another process";
}

/** The process holding a socket inode, when this user may look (root sees every process). */
function processOwning(inode: string): string | undefined {
    const target = `socket:[${inode}]`;
    for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
        let fds: string[];
        try {
            fds = readdirSync(`/proc/${pid}/fd`);
        } catch {
            continue;
        }
        for (const fd of fds) {
            try {
                if (readlinkSync(`/proc/${pid}/fd/${fd}`) === target) {
                    const name = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
                    return `${name} (pid ${pid})`;
                }
            } catch {
                continue;
            }
        }
    }
    return undefined;
}
