/**
 * Reads and writes a cache's volume through its running container, with the container's own
 * busybox (the official registry images are Alpine), so it works wherever `docker` reaches the
 * cache. What the listings mean is core/storage-layout.ts.
 */
import { registryStoragePath, registryStorageRoot } from "../core/container-facts";
import {
    ManifestRefs,
    Storage,
    listingScript,
    manifestsScript,
    parseListing,
    parseManifests,
    storedManifestPaths,
} from "../core/storage-layout";
import { readCacheSupervisor } from "../host/assets";
import { DockerCli } from "./docker";

/**
 * The partial uploads in a cache's volume, as its supervisor sees them: `upload SIZE MTIME STATE
 * PATH` lines. Run in the cache container, where the registry's open files are visible.
 */
export function readUploads(docker: DockerCli, container: string): Promise<string> {
    return docker("exec", container, "sh", "-c", readCacheSupervisor(), "sh", "uploads");
}

/** Reads a cache's storage through its running container. */
export async function readStorage(docker: DockerCli, container: string): Promise<Storage> {
    const [files, uploads] = await Promise.all([
        docker("exec", container, "sh", "-c", listingScript),
        readUploads(docker, container),
    ]);
    const listing = parseListing(`${files}\n${uploads}`);
    const manifests = new Map<string, ManifestRefs>();
    for (const paths of batches(storedManifestPaths(listing))) {
        const output = await docker(
            ...["exec", "--workdir", registryStorageRoot, container],
            ...["sh", "-c", manifestsScript, "sh", ...paths],
        );
        for (const [digest, refs] of parseManifests(output)) manifests.set(digest, refs);
    }
    return { ...listing, manifests };
}

/** A few hundred paths per `docker exec` keeps the command line well inside the kernel's limit. */
export function batches<T>(items: readonly T[], size = 200): T[][] {
    return Array.from({ length: Math.ceil(items.length / size) }, (_, index) =>
        items.slice(index * size, (index + 1) * size),
    );
}

/**
 * Runs a shell script in the storage root inside the cache container, with `args` as "$@"; a cache
 * that has stored nothing yet has no storage root, and the script does not run.
 */
export function inStorage(
    docker: DockerCli,
    container: string,
    script: string,
    ...args: string[]
): Promise<string> {
    const inRoot = `cd ${registryStorageRoot} 2>/dev/null || exit 0\n${script}`;
    return docker("exec", container, "sh", "-c", inRoot, "sh", ...args);
}

/** Removes `paths` (relative to the storage root) in order. */
export async function removeStoragePaths(
    docker: DockerCli,
    container: string,
    paths: readonly string[],
) {
    for (const batch of batches(paths))
        await inStorage(docker, container, 'rm -rf -- "$@"', ...batch);
}

/** Writes `content` to a file in the cache's volume, replacing it whole. */
export async function writeVolumeFile(
    docker: DockerCli,
    container: string,
    file: string,
    content: string,
) {
    await docker.withInput(
        content,
        ...["exec", "-i", container, "sh", "-c"],
        `mkdir -p "$(dirname ${file})" && cat >${file}.new && mv ${file}.new ${file}`,
    );
}

/** The volume's file system: its device (volumes on one disk share it) and the bytes free. */
export async function volumeSpace(
    docker: DockerCli,
    container: string,
): Promise<{ device: string; freeBytes: number }> {
    const df = await docker("exec", container, "df", "-Pk", registryStoragePath);
    const [device = "", size = "", , available = "0"] = (df.split("\n")[1] ?? "")
        .trim()
        .split(/\s+/);
    return { device: `${device} ${size}`, freeBytes: Number(available) * 1024 };
}
