/** The coalescing front as the tools find it: the container publishing a cache's port, and how to reach it. */
import { frontFiles, toolHeader } from "../core/front";
import { CacheEndpoint } from "../core/plan";
import { parsePublishedPorts, publishedPortsFormat } from "../host/docker-host";
import { DockerCli } from "./docker";
import { EndpointTrust, RegistryClient } from "./registry-client";

/** The front container publishing `port`, if any. */
export async function frontOf(docker: DockerCli, port: number): Promise<string | undefined> {
    return parsePublishedPorts(await docker("ps", "--format", publishedPortsFormat)).get(port);
}

/**
 * How a tool reaches the front: the token that lets it past pull credentials (sent with every
 * request), and, on HTTPS, the CA the front's certificate is checked against and the name
 * (`mirrorHost`) it must carry.
 */
export interface FrontAccess {
    headers: Record<string, string>;
    trust?: EndpointTrust;
}

/**
 * Reads the front's token and CA with one `docker exec`: whoever runs the tools commands the
 * engine, so needs no password. A front without them (older, or gone) gives none; its pings
 * then say what is wrong.
 */
export async function readFrontAccess(
    docker: DockerCli,
    caches: readonly CacheEndpoint[],
): Promise<FrontAccess> {
    if (caches.length === 0) return { headers: {} };
    const front = await frontOf(docker, caches[0].port);
    const read = `cat ${frontFiles.toolToken} 2>/dev/null; echo; cat ${frontFiles.ca} 2>/dev/null || true`;
    const text = front ? await docker("exec", front, "sh", "-c", read).catch(() => "") : "";
    const [token, ...ca] = text.split("\n");
    const endpoint = new URL(caches[0].endpoint);
    const pem = ca.join("\n").trim();
    return {
        headers: token ? { [toolHeader]: token } : {},
        ...(endpoint.protocol === "https:"
            ? { trust: { serverName: endpoint.hostname, ...(pem ? { ca: pem } : {}) } }
            : {}),
    };
}

/** A client of `endpoint` (a cache port of the front) that reaches it as the tools do. */
export const frontClient = (
    access: FrontAccess,
    endpoint: string,
    registry: string,
    headers: Record<string, string> = {},
) => new RegistryClient(endpoint, registry, { ...access.headers, ...headers }, access.trust);

/** The front's server certificate (PEM), when it serves HTTPS. */
export async function readFrontCertificate(
    docker: DockerCli,
    caches: readonly CacheEndpoint[],
): Promise<string | undefined> {
    if (!caches.some((cache) => cache.endpoint.startsWith("https:"))) return undefined;
    const front = await frontOf(docker, caches[0].port);
    return front
        ? docker("exec", front, "cat", frontFiles.certificate).catch(() => undefined)
        : undefined;
}
