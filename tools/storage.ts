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

/** Reads a cache's storage through its running container: the listing, and what each manifest names. */
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
export interface VolumeSpace {
    device: string;
    freeBytes: number;
}

/** Prints `space DEVICE SIZE AVAILABLE` (KiB) for the volume, as parseVolumeSpace reads it. */
export const volumeSpaceScript = `df -Pk ${registryStoragePath} | awk 'NR == 2 { print "space", $1, $2, $4 }'`;

/** Reads volumeSpaceScript's line out of a listing. */
export function parseVolumeSpace(output: string): VolumeSpace {
    const line = output.split("\n").find((candidate) => candidate.startsWith("space ")) ?? "";
    const [, device = "", size = "", available = "0"] = line.trim().split(/\s+/);
    return { device: `${device} ${size}`, freeBytes: Number(available) * 1024 };
}

/** A file under the storage root, with the size the listing gave it. */
export interface SizedFile {
    path: string;
    size: number;
}

/** Where one file's bytes go as they arrive; `end` is called once all of them have. */
export interface FileSink {
    write(chunk: Buffer): void;
    end(): void;
}

/**
 * Streams `files` out of the cache container, in order, in one `docker exec`, handing each one's
 * bytes to the sink `open` gives for it. The bytes pass through the engine's API, so this works
 * wherever `docker` reaches the cache. A file that is gone stops it before a byte is sent.
 * Sinks are synchronous: the bytes are handled as each chunk arrives, with no turn of the loop.
 */
export async function readStoredFiles(
    docker: DockerCli,
    container: string,
    files: readonly SizedFile[],
    open: (file: SizedFile, index: number) => FileSink,
): Promise<void> {
    if (files.length === 0) return;
    const script = `cd ${registryStorageRoot} || exit 1
xargs sh -c 'for f; do [ -f "$f" ] || { echo "$f is gone from the cache" >&2; exit 255; }; done; exec cat -- "$@"' sh`;
    await docker.streaming(["exec", "-i", container, "sh", "-c", script], ({ stdout, stdin }) => {
        stdin.end(files.map((file) => `${file.path}\n`).join(""));
        let index = 0;
        let left = files[0].size;
        let sink = open(files[0], 0);
        /** Ends each file whose bytes are all in, and opens the next. */
        const endFull = () => {
            while (left === 0 && index < files.length) {
                sink.end();
                index += 1;
                if (index < files.length) {
                    left = files[index].size;
                    sink = open(files[index], index);
                }
            }
        };
        return new Promise<void>((resolve, reject) => {
            const take = (chunk: Buffer) => {
                endFull();
                for (let offset = 0; offset < chunk.length;) {
                    if (index >= files.length)
                        throw new Error(
                            `${container} sent more bytes than its listing gave the files`,
                        );
                    const piece = chunk.subarray(offset, offset + left);
                    sink.write(piece);
                    offset += piece.length;
                    left -= piece.length;
                    endFull();
                }
            };
            stdout.on("data", (chunk: Buffer) => {
                try {
                    take(chunk);
                } catch (error) {
                    stdout.destroy();
                    reject(error);
                }
            });
            stdout.once("end", () => {
                try {
                    endFull();
                    if (index < files.length)
                        throw new Error(
                            `${container} sent ${files[index].path} short: ${left} of its ${files[index].size} bytes missing`,
                        );
                    resolve();
                } catch (error) {
                    reject(error);
                }
            });
        });
    });
}
