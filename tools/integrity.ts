/**
 * `npm run verify -- --deep [--repair]`: proves a cache's bytes. Every manifest and blob the
 * checked images need is re-hashed where it is stored, inside the cache container with its own
 * `sha256sum` (no bytes cross the API, no upstream is asked), like zot's `scrub`. A blob whose
 * bytes do not match its digest is corrupt: a registry serves it as it is, and a client rejects
 * it (`Digest did not match`) every time, since the proxy never fetches what it holds again.
 *
 * `--repair` removes each corrupt blob, its links, and the front's copy of it, so that the next
 * pull fetches it from the upstream as if it had never been stored. Each check is recorded in the
 * volume for `status`.
 */
import { frontCacheFile } from "../core/front";
import { formatBytes } from "../core/format";
import { CacheCheck, lastCheckFile, storagePaths } from "../core/storage-layout";
import { readCacheHealth } from "./cache-view";
import { DockerCli } from "./docker";
import { frontOf } from "./front";
import { batches, inStorage, readStorage, removeStoragePaths, writeVolumeFile } from "./storage";
import { CacheEndpoint } from "../core/plan";
import { VerifyResult } from "./warm";

/** A corrupt or missing blob, with the images it breaks. */
export interface Finding {
    registry: string;
    digest: string;
    state: "corrupt" | "missing";
    /** What the stored bytes hash to, for a corrupt blob. */
    actual?: string;
    images: string[];
}

export interface DeepCheck {
    /** The verify results, with images whose blobs failed marked as not present. */
    results: VerifyResult[];
    findings: Finding[];
    checks: CacheCheck[];
    seconds: number;
}

/**
 * Hashes each digest's stored data inside `container`: digest → the hash of its bytes, or
 * undefined when there is no data. In batches, so a command line stays inside the kernel's limit.
 */
async function hashStored(
    docker: DockerCli,
    container: string,
    digests: readonly string[],
): Promise<Map<string, string | undefined>> {
    const hashes = new Map<string, string | undefined>(
        digests.map((digest) => [digest, undefined]),
    );
    for (const batch of batches(digests)) {
        const output = await inStorage(
            docker,
            container,
            'sha256sum "$@" 2>/dev/null; true',
            ...batch.map(storagePaths.blobData),
        );
        const digestAt = new Map(batch.map((digest) => [storagePaths.blobData(digest), digest]));
        for (const line of output.split("\n")) {
            // sha256sum prints `<hex>  <path>`.
            const [hex, path] = line.split(/\s+/);
            const digest = digestAt.get(path ?? "");
            if (digest && hex) hashes.set(digest, `sha256:${hex}`);
        }
    }
    return hashes;
}

/**
 * Re-hashes every manifest and blob the present images need, each cache in its own container at
 * once, and records each cache's check in its volume.
 */
export async function deepCheck(
    docker: DockerCli,
    results: readonly VerifyResult[],
    caches: readonly CacheEndpoint[],
): Promise<DeepCheck> {
    const started = Date.now();
    const findings: Finding[] = [];
    const checks = await Promise.all(
        caches.map(async (cache): Promise<CacheCheck> => {
            const ofCache = results.filter((result) => result.registry === cache.registry);
            const users = new Map<string, { size: number; images: string[] }>();
            for (const result of ofCache)
                for (const { digest, size } of result.content ?? []) {
                    const entry = users.get(digest) ?? { size, images: [] };
                    entry.images.push(result.image);
                    users.set(digest, entry);
                }
            const hashes = await hashStored(docker, cache.container, [...users.keys()]);
            const check: CacheCheck = {
                registry: cache.registry,
                checkedAt: new Date().toISOString(),
                blobs: users.size,
                bytes: [...users.values()].reduce((sum, { size }) => sum + size, 0),
                corrupt: [],
                missing: [],
                repaired: [],
            };
            for (const [digest, actual] of hashes) {
                if (actual === digest) continue;
                const state = actual === undefined ? "missing" : "corrupt";
                check[state].push(digest);
                findings.push({
                    registry: cache.registry,
                    digest,
                    state,
                    actual,
                    images: users.get(digest)!.images,
                });
            }
            // A manifest verify could not read because it is corrupt.
            for (const result of ofCache)
                for (const digest of result.corrupt ?? []) {
                    check.corrupt.push(digest);
                    findings.push({
                        registry: cache.registry,
                        digest,
                        state: "corrupt",
                        images: [result.image],
                    });
                }
            return check;
        }),
    );
    const broken = (image: string) => findings.filter((finding) => finding.images.includes(image));
    return {
        results: results.map((result) => {
            const found = broken(result.image);
            if (found.length === 0 || !result.present) return result;
            const [first] = found;
            const more = found.length > 1 ? ` and ${found.length - 1} more` : "";
            return {
                ...result,
                present: false,
                reason: `blob ${first.digest} is ${first.state === "corrupt" ? `corrupt (its bytes hash to ${first.actual})` : "missing from storage"}${more}`,
                corrupt: found
                    .filter((finding) => finding.state === "corrupt")
                    .map((finding) => finding.digest),
            };
        }),
        findings,
        checks,
        seconds: (Date.now() - started) / 1000,
    };
}

/** Records each cache's check where `status` reads it. */
export async function recordChecks(
    docker: DockerCli,
    checks: readonly CacheCheck[],
    caches: readonly CacheEndpoint[],
) {
    await Promise.all(
        checks.map((check) =>
            writeVolumeFile(
                docker,
                caches.find((cache) => cache.registry === check.registry)!.container,
                lastCheckFile,
                `${JSON.stringify(check)}\n`,
            ),
        ),
    );
}

/** What `--repair` did in one cache. */
export interface Repair {
    registry: string;
    remote: string;
    removed: string[];
    images: string[];
    /** Whether the cache serves offline now: the images stay unservable until the upstream answers. */
    offline: boolean;
}

/**
 * Removes each corrupt blob from its cache: the data, every repository's link to it (as a layer
 * or a manifest revision) and the front's copies, so the next pull fetches it anew.
 */
export async function repair(
    docker: DockerCli,
    findings: readonly Finding[],
    caches: readonly CacheEndpoint[],
): Promise<Repair[]> {
    const repairs: Repair[] = [];
    for (const cache of caches) {
        const corrupt = findings.filter(
            (finding) => finding.registry === cache.registry && finding.state === "corrupt",
        );
        if (corrupt.length === 0) continue;
        const digests = [...new Set(corrupt.map((finding) => finding.digest))];
        const storage = await readStorage(docker, cache.container);
        const links: string[] = [];
        const frontCopies: string[] = [];
        for (const [name, repository] of storage.repositories)
            for (const digest of digests) {
                if (repository.layers.has(digest)) links.push(storagePaths.layerLink(name, digest));
                if (repository.revisions.has(digest))
                    links.push(storagePaths.revisionLink(name, digest));
                for (const kind of ["blobs", "manifests"])
                    frontCopies.push(frontCacheFile(cache.port, `/v2/${name}/${kind}/${digest}`));
            }
        const blobs = digests.map(storagePaths.blob);
        await removeStoragePaths(docker, cache.container, [...links, ...blobs]);
        const front = await frontOf(docker, cache.port);
        if (front) await docker("exec", front, "rm", "-f", "--", ...frontCopies);
        const health = await readCacheHealth(docker, cache.container);
        repairs.push({
            registry: cache.registry,
            remote: cache.remote,
            removed: digests,
            images: [...new Set(corrupt.flatMap((finding) => finding.images))],
            offline: cache.mode === "offline" || health?.serving === "offline",
        });
    }
    return repairs;
}

/** The deep check's report: the cause first (each bad blob and what it breaks), then the figures. */
export function formatFindings(deep: DeepCheck): string {
    const lines = deep.findings.map(
        (finding) =>
            `${finding.state.toUpperCase()}  ${finding.digest}  in the ${finding.registry} cache; breaks ${finding.images.join(", ")}`,
    );
    return lines.join("\n");
}

export function formatDeepSummary(deep: DeepCheck): string {
    const blobs = deep.checks.reduce((sum, check) => sum + check.blobs, 0);
    const bytes = deep.checks.reduce((sum, check) => sum + check.bytes, 0);
    const count = (state: Finding["state"]) =>
        deep.findings.filter((finding) => finding.state === state).length;
    const found = [
        count("corrupt") > 0 ? `${count("corrupt")} corrupt` : "",
        count("missing") > 0 ? `${count("missing")} missing` : "",
    ].filter(Boolean);
    return `Re-hashed ${blobs} stored blobs (${formatBytes(bytes)}) in ${deep.seconds.toFixed(1)} s: ${found.length === 0 ? "all intact" : found.join(", ")}.`;
}

export function formatRepairs(repairs: readonly Repair[]): string {
    return repairs
        .map((repair) => {
            const what = `Removed ${repair.removed.length} corrupt blob${repair.removed.length === 1 ? "" : "s"} from the ${repair.registry} cache`;
            return repair.offline
                ? `${what}. It serves offline: ${repair.images.join(", ")} cannot be served until ${repair.remote} answers.`
                : `${what}; ${repair.images.join(", ")} will be fetched again from ${repair.remote} on the next pull.`;
        })
        .join("\n");
}
