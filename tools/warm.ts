/**
 * Prewarm and verify: pull a list of images through the caches that serve their registries, and
 * check that the caches hold them in full. The CLI (tools/cli.ts) and `pulumi up` drive these.
 */
import { viewClient } from "./cache-view";
import { FrontAccess, frontClient } from "./front";
import { ImageReference, parseImageReference } from "../core/image-reference";
import { refreshHeader } from "../core/front";
import { Platform } from "../core/images";
import {
    DigestMismatch,
    Descriptor,
    ImageContent,
    RegistryClient,
    RegistryError,
    readImage,
} from "./registry-client";
import { CacheEndpoint } from "../core/plan";
import { CacheView, RoutedImage, UsageError } from "./types";

/** Pairs each image with the cache of its registry. */
export function routeImages(
    refs: readonly string[],
    caches: readonly CacheEndpoint[],
): RoutedImage[] {
    return refs.map((ref) => {
        const image = parseImageReference(ref);
        if (!image) throw new UsageError(`${JSON.stringify(ref)} is not an image reference`);
        const cache = caches.find((candidate) => candidate.registry === image.registry);
        if (!cache)
            throw new UsageError(
                `no cache serves ${image.registry} (for ${ref}); caches: ${caches.map((c) => c.registry).join(", ")}`,
            );
        return { image, cache };
    });
}

/** Runs at most `concurrency` tasks at once. */
export type Limiter = <T>(task: () => Promise<T>) => Promise<T>;

export function limiter(concurrency: number): Limiter {
    let running = 0;
    const waiting: (() => void)[] = [];
    return async <T>(task: () => Promise<T>): Promise<T> => {
        if (running >= concurrency) await new Promise<void>((resolve) => waiting.push(resolve));
        running++;
        try {
            return await task();
        } finally {
            running--;
            waiting.shift()?.();
        }
    };
}

export type PrewarmEvent =
    | { kind: "started"; image: string; blobs: number; bytes: number }
    | { kind: "bytes"; image: string; bytes: number }
    | { kind: "finished"; result: PrewarmResult };

export interface PrewarmResult {
    image: string;
    registry: string;
    ok: boolean;
    error?: string;
    blobs: number;
    /** The image's size on the selected platforms (config and layers). */
    bytes: number;
    /** Bytes this run read from the cache for it; a blob shared with another image counts once. */
    transferred: number;
    seconds: number;
}

export interface PrewarmOptions {
    platforms: readonly Platform[];
    concurrency: number;
    /** How the pulls reach the front (its token and CA). */
    front: FrontAccess;
    onEvent?: (event: PrewarmEvent) => void;
    /** Ask past the front's cache, straight to the registries (see core/front.ts). */
    refresh?: boolean;
}

/** Attempts per request: a cache that is switching mode or restarting is back within seconds. */
const attempts = 3;
const retryDelayMs = 1500;

async function withRetries<T>(task: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
        try {
            return await task();
        } catch (error) {
            // A 4xx is an answer (not found, refused), not a hiccup.
            const answered =
                error instanceof RegistryError &&
                !error.unreachable &&
                (error.status === undefined || error.status < 500);
            if (answered || attempt >= attempts) throw error;
            await new Promise((resolve) => setTimeout(resolve, retryDelayMs * attempt));
        }
    }
}

/**
 * Pulls every image through its cache: manifests (index and the platform manifests asked for)
 * and every blob, at most `concurrency` requests at once. A blob shared between images of one
 * repository is fetched once. Failures are reported per image; the run goes on.
 */
export async function prewarm(
    routed: readonly RoutedImage[],
    options: PrewarmOptions,
): Promise<PrewarmResult[]> {
    const run = limiter(options.concurrency);
    const emit = options.onEvent ?? (() => {});
    const fetchBlob = blobFetcher(run, emit);
    return Promise.all(routed.map((image) => prewarmImage(image, options, run, emit, fetchBlob)));
}

type BlobFetcher = ReturnType<typeof blobFetcher>;

/**
 * Fetches blobs through the caches; each fetch resolves to the bytes it read, 0 for a blob an
 * earlier call fetched. A registry links blobs per repository, so each repository fetches its
 * own. One digest is fetched by one repository at a time: a proxy does not store a blob it is
 * already fetching for another request.
 */
function blobFetcher(run: ReturnType<typeof limiter>, emit: (event: PrewarmEvent) => void) {
    const fetches = new Map<string, Promise<number>>();
    const digestQueues = new Map<string, Promise<number>>();
    return (client: RegistryClient, image: ImageReference, blob: Descriptor): Promise<number> => {
        const key = `${image.registry}/${image.repository}@${blob.digest}`;
        const earlier = fetches.get(key);
        if (earlier) return earlier.then(() => 0);
        const onBytes = (bytes: number) => emit({ kind: "bytes", image: image.canonical, bytes });
        const digestKey = `${image.registry}@${blob.digest}`;
        const fetched = (digestQueues.get(digestKey) ?? Promise.resolve())
            .catch(() => 0)
            .then(() =>
                run(() =>
                    withRetries(() => client.fetchBlob(image.repository, blob.digest, onBytes)),
                ),
            );
        digestQueues.set(digestKey, fetched);
        fetches.set(key, fetched);
        return fetched;
    };
}

/** Pulls one image through its cache: its manifests, then its blobs. */
async function prewarmImage(
    { image, cache }: RoutedImage,
    options: PrewarmOptions,
    run: ReturnType<typeof limiter>,
    emit: (event: PrewarmEvent) => void,
    fetchBlob: BlobFetcher,
): Promise<PrewarmResult> {
    const started = Date.now();
    const headers: Record<string, string> = options.refresh ? { [refreshHeader]: "1" } : {};
    const client = frontClient(options.front, cache.hostEndpoint, cache.registry, headers);
    const result = {
        image: image.canonical,
        registry: image.registry,
        blobs: 0,
        bytes: 0,
        transferred: 0,
    };
    const finish = (outcome: { ok: true; transferred: number } | { ok: false; error: string }) => {
        const done = { ...result, ...outcome, seconds: (Date.now() - started) / 1000 };
        emit({ kind: "finished", result: done });
        return done;
    };
    try {
        const content = await run(() =>
            withRetries(() => readImage(client, image, options.platforms)),
        );
        result.blobs = content.blobs.length;
        result.bytes = content.blobs.reduce((sum, blob) => sum + blob.size, 0);
        emit({ kind: "started", image: image.canonical, blobs: result.blobs, bytes: result.bytes });
        const transferred = await Promise.all(
            content.blobs.map((blob) => fetchBlob(client, image, blob)),
        );
        return finish({ ok: true, transferred: transferred.reduce((a, b) => a + b, 0) });
    } catch (error) {
        return finish({ ok: false, error: (error as Error).message });
    }
}

export interface VerifyResult {
    image: string;
    registry: string;
    present: boolean;
    /** Why the image is not fully present. */
    reason?: string;
    blobs: number;
    bytes: number;
    /** Manifests and blobs the image needs, when all are present: what a deep check re-hashes. */
    content?: Pick<Descriptor, "digest" | "size">[];
    /** Digests whose stored bytes do not match: a corrupt manifest here, blobs after a deep check. */
    corrupt?: string[];
}

/**
 * Checks each image against a registry that serves only what the cache's storage holds (see
 * cache-view.ts): a proxy would answer for missing content by asking its upstream.
 *
 * @param views the read-only endpoint of each cache, by registry
 */
export async function verify(
    routed: readonly RoutedImage[],
    views: ReadonlyMap<string, CacheView>,
    platforms: readonly Platform[],
    concurrency: number,
): Promise<VerifyResult[]> {
    const run = limiter(concurrency);
    return Promise.all(
        routed.map(async ({ image }): Promise<VerifyResult> => {
            const view = views.get(image.registry)!;
            const client = viewClient(view, image.registry);
            const base = { image: image.canonical, registry: image.registry };
            let content: ImageContent;
            try {
                content = await run(() => readImage(client, image, platforms));
            } catch (error) {
                if (!(error instanceof RegistryError) || error.unreachable) throw error;
                const absent = { ...base, present: false, blobs: 0, bytes: 0 };
                if (error instanceof DigestMismatch)
                    return {
                        ...absent,
                        reason: `manifest ${error.expected} is corrupt in the cache (its bytes hash to ${error.actual})`,
                        corrupt: [error.expected],
                    };
                return {
                    ...absent,
                    reason: error.message.replace(/: not found$/, ": not in the cache"),
                };
            }
            const { blobs } = content;
            const held = await Promise.all(
                blobs.map((blob) => run(() => client.hasBlob(image.repository, blob.digest))),
            );
            const missing = blobs.filter((_, index) => !held[index]);
            const bytes = blobs.reduce((sum, blob) => sum + blob.size, 0);
            if (missing.length === 0)
                return {
                    ...base,
                    present: true,
                    blobs: blobs.length,
                    bytes,
                    content: [...content.manifests, ...blobs].map(({ digest, size }) => ({
                        digest,
                        size,
                    })),
                };
            const first = missing[0].digest.slice(0, 19);
            return {
                ...base,
                present: false,
                reason: `${missing.length} of ${blobs.length} blobs not in the cache (${first}…)`,
                blobs: blobs.length,
                bytes,
            };
        }),
    );
}

/** Pull rounds before prewarm gives up on an image the cache serves but does not store. */
export const storeRounds = 5;
/** How long a round waits for the caches to commit what they served. */
const storeWaitMs = 5_000;

/**
 * Prewarm that counts an image as warm only once the cache's storage holds it (checked through
 * `views`, as verify does). A distribution 2.x proxy stores a blob with a second upstream fetch
 * that runs in the background (registry/proxy/proxyblobstore.go), so a blob it has served may not
 * be stored yet, or at all if that fetch fails; version 3 stores what it serves (PR #3569). Images
 * still missing after a short wait are pulled again, up to `storeRounds` times.
 */
export async function prewarmUntilStored(
    routed: readonly RoutedImage[],
    options: PrewarmOptions & {
        onRetry?: (images: number, round: number) => void;
        /** Why a cache cannot store anything now (a full disk), if so: its images stop there. */
        troubleOf?: (registry: string) => Promise<string | undefined>;
    },
    views: ReadonlyMap<string, CacheView>,
): Promise<PrewarmResult[]> {
    const results = new Map<string, PrewarmResult>();
    let pending = [...routed];
    for (let round = 1; pending.length > 0; round++) {
        // Again means past the front: its copy of a blob the registry did not store would answer.
        const pulled = await prewarm(
            pending,
            round === 1 ? options : { ...options, onEvent: undefined, refresh: true },
        );
        for (const result of pulled) {
            const earlier = results.get(result.image);
            results.set(
                result.image,
                earlier
                    ? {
                          ...result,
                          transferred: earlier.transferred + result.transferred,
                          seconds: earlier.seconds + result.seconds,
                      }
                    : result,
            );
        }
        const served = pending.filter((_, index) => pulled[index].ok);
        const unstored = await waitUntilStored(served, views, options);
        pending = served.filter(({ image }) => unstored.has(image.canonical));
        // A cache's supervisor checks its volume every second: give it that second.
        if (options.troubleOf && pulled.some((result) => !result.ok))
            await new Promise((resolve) => setTimeout(resolve, 2000));
        const troubles = await troublesOf(
            routed.filter(
                ({ image }) => !results.get(image.canonical)!.ok || unstored.has(image.canonical),
            ),
            options.troubleOf,
        );
        for (const { image } of routed) {
            const trouble = troubles.get(image.registry);
            const result = results.get(image.canonical)!;
            if (!trouble || (result.ok && !unstored.has(image.canonical))) continue;
            if (result.error?.startsWith(trouble)) continue; // said in an earlier round
            // The cause first: a summary line may be cut.
            const what = result.ok ? `not stored: ${unstored.get(image.canonical)}` : result.error;
            results.set(image.canonical, { ...result, ok: false, error: `${trouble} (${what})` });
        }
        pending = pending.filter(({ image }) => !troubles.has(image.registry));
        if (pending.length > 0 && round === storeRounds) {
            for (const { image } of pending) {
                results.set(image.canonical, {
                    ...results.get(image.canonical)!,
                    ok: false,
                    error: `served but not stored after ${storeRounds} pulls: ${unstored.get(image.canonical)}`,
                });
            }
            break;
        }
        if (pending.length > 0) options.onRetry?.(pending.length, round + 1);
    }
    return routed.map(({ image }) => results.get(image.canonical)!);
}

/** What is wrong with the caches of these images, by registry, for those where something is. */
async function troublesOf(
    routed: readonly RoutedImage[],
    troubleOf: ((registry: string) => Promise<string | undefined>) | undefined,
): Promise<Map<string, string>> {
    const registries = [...new Set(routed.map(({ image }) => image.registry))];
    const troubles = new Map<string, string>();
    if (!troubleOf) return troubles;
    for (const registry of registries) {
        const trouble = await troubleOf(registry);
        if (trouble) troubles.set(registry, trouble);
    }
    return troubles;
}

/** Images not (yet) fully in storage after up to `storeWaitMs`, with the reason. */
async function waitUntilStored(
    routed: readonly RoutedImage[],
    views: ReadonlyMap<string, CacheView>,
    options: PrewarmOptions,
): Promise<Map<string, string>> {
    const deadline = Date.now() + storeWaitMs;
    for (;;) {
        const absent = (await verify(routed, views, options.platforms, options.concurrency)).filter(
            (result) => !result.present,
        );
        if (absent.length === 0 || Date.now() > deadline)
            return new Map(absent.map((result) => [result.image, result.reason ?? ""]));
        await new Promise((resolve) => setTimeout(resolve, 250));
    }
}
