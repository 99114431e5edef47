/** The coalescing front as the tools find it: the container publishing a cache's port. */
import { parsePublishedPorts, publishedPortsFormat } from "../host/docker-host";
import { DockerCli } from "./docker";

/** The front container publishing `port`, if any. */
export async function frontOf(docker: DockerCli, port: number): Promise<string | undefined> {
    return parsePublishedPorts(await docker("ps", "--format", publishedPortsFormat)).get(port);
}
