/**
 * `dockerHost` values as the docker CLI takes them in `DOCKER_HOST`: `ssh://user@host[:port]`,
 * `tcp://host:port` (TLS) or `unix:///path`. Pure; reaching one is host/docker-host.ts's job.
 */

/** Where a `dockerHost` engine is: `address` is its host name or address, for ssh:// and tcp://. */
export interface DockerHost {
    url: string;
    scheme: "ssh" | "tcp" | "unix";
    address?: string;
}

/** Parses a `dockerHost` value; undefined when Docker would not take it. */
export function parseDockerHost(value: string): DockerHost | undefined {
    let url: URL;
    try {
        url = new URL(value);
    } catch {
        return undefined;
    }
    const scheme = url.protocol.slice(0, -1);
    const bare = url.pathname === "" || url.pathname === "/";
    const plain = !url.search && !url.hash;
    if (scheme === "ssh" && url.hostname && bare && plain && !url.password)
        return { url: value, scheme, address: url.hostname.replace(/^\[|\]$/g, "") };
    if (scheme === "tcp" && url.hostname && url.port && bare && plain && !url.username)
        return { url: value, scheme, address: url.hostname.replace(/^\[|\]$/g, "") };
    if (scheme === "unix" && !url.hostname && url.pathname.length > 1 && plain)
        return { url: value, scheme };
    return undefined;
}

/** The machine of a `dockerHost` on another machine (ssh:// or tcp://); undefined for this one's. */
export const dockerHostAddress = (dockerHost: string | undefined) =>
    dockerHost === undefined ? undefined : parseDockerHost(dockerHost)?.address;
