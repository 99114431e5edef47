/**
 * What the bench's scenarios share: the caches planned from the program's own code for local
 * fixture upstreams, started as `pulumi up` declares them, and removed again, along with what an
 * interrupted run may have left.
 */
import { cpus, totalmem } from "node:os";
import * as path from "node:path";
import { registryStoragePath, registryStorageRoot } from "../core/container-facts";
import { Front, planFront } from "../core/front";
import { Cache, CacheEndpoint, cacheEndpoint, planCaches } from "../core/plan";
import { DockerProviderStandIn } from "../harness/docker-provider-stand-in";
import { Containerd } from "../harness/containerd";
import { docker } from "../harness/docker";
import { localStackConfig } from "../harness/stack";
import { parseSettings } from "../mirrors";
import { storagePaths } from "../core/storage-layout";
import { dockerCli } from "../tools/docker";

export const benchId = "pt-bench";

/** The tools' docker CLI, on this machine's engine. */
export const toolsDocker = dockerCli();

/** The machine a result was measured on. */
export const machineDescription = () =>
    `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;

/** Where a blob's data lies under a cache volume's mount point on this host. */
export const blobFile = (volumeMountpoint: string, digest: string) =>
    path.join(
        volumeMountpoint,
        path.relative(registryStoragePath, registryStorageRoot),
        storagePaths.blobData(digest),
    );

/** The bench stack's caches, front and endpoints, for `remotes` (registry → URL) on `ports`. */
export function planBenchCaches(
    remotes: Record<string, string>,
    ports: Record<string, number>,
    image: string,
): { caches: Cache[]; front: Front; endpoints: CacheEndpoint[] } {
    const settings = parseSettings(
        localStackConfig(
            `${benchId}-`,
            Object.entries(remotes).map(([registry, remote]) => ({
                registry,
                remote,
                port: ports[registry],
            })),
            { image },
        ),
    );
    const identity = { project: "pullthrough", stack: "bench" };
    const caches = planCaches(settings, identity);
    return {
        caches,
        front: planFront(settings, identity),
        endpoints: caches.map(cacheEndpoint),
    };
}

/** Fresh caches with empty volumes and a fresh front, declared as `pulumi up` declares them. */
export async function startCaches(
    caches: readonly Cache[],
    front: Front,
    network: string,
): Promise<void> {
    cleanUpCaches();
    await new DockerProviderStandIn(network).createCaches(caches, front);
}

/** The address of a container on a network, which the host reaches without docker-proxy. */
export function containerAddress(container: string, network: string): string {
    const format = `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`;
    return docker("inspect", "--format", format, container);
}

/** Removes the bench stack's containers, volumes and network (everything labelled with it). */
function cleanUpCaches() {
    const listed = (kind: "ps" | "volume" | "network", ...args: string[]) =>
        docker(
            ...(kind === "ps" ? ["ps", "--all"] : [kind, "ls"]),
            "--quiet",
            ...args,
            "--filter",
            "label=pullthrough.stack=bench",
        )
            .split("\n")
            .filter(Boolean);
    const containers = listed("ps");
    if (containers.length > 0) docker("rm", "--force", "--volumes", ...containers);
    const volumes = listed("volume");
    if (volumes.length > 0) docker("volume", "rm", "--force", ...volumes);
    const networks = listed("network");
    if (networks.length > 0) docker("network", "rm", ...networks);
}

/** Removes what an interrupted run may have left: the stack, fixture upstreams, their network. */
export function cleanUp() {
    cleanUpCaches();
    const upstreamContainers = docker("ps", "--all", "--quiet", "--filter", `name=^${benchId}-up-`)
        .split("\n")
        .filter(Boolean);
    if (upstreamContainers.length > 0) docker("rm", "--force", "--volumes", ...upstreamContainers);
    if (docker("network", "ls", "--quiet", "--filter", `name=^${benchId}$`))
        docker("network", "rm", benchId);
}

export const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const middle = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

/**
 * `nodes` fresh nodes pull every image, all nodes at once, each node step after step and the
 * images of a step at once (`pullSteps`); resolves to the seconds that took. `images pull`
 * unpacks each layer as a node does; `content fetch` only downloads (a diagnostic). `user`
 * (`name:password`) answers a registry that asks.
 */
export async function bootNodes(
    nodes: number,
    steps: readonly (readonly string[])[],
    hostsDir: string,
    { how = "images pull", user }: { how?: "images pull" | "content fetch"; user?: string } = {},
): Promise<number> {
    const daemons = await Promise.all(Array.from({ length: nodes }, () => Containerd.start()));
    const login = user ? ["--user", user] : [];
    try {
        const started = performance.now();
        await Promise.all(
            daemons.map(async (daemon) => {
                for (const step of steps)
                    await Promise.all(
                        step.map((ref) =>
                            daemon.ctr(
                                "default",
                                ...how.split(" "),
                                "--hosts-dir",
                                hostsDir,
                                ...login,
                                ref,
                            ),
                        ),
                    );
            }),
        );
        return (performance.now() - started) / 1000;
    } finally {
        await Promise.all(daemons.map((daemon) => daemon.stop()));
    }
}
