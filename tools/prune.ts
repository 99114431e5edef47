/**
 * `npm run prune`: reads what each cache holds and when its images were pulled (the front's
 * ledger), and removes what core/prune-plan.ts decides.
 *
 * A running registry answers for deleted blobs from its in-memory blob descriptor cache (200 and
 * no bytes); the caches run without that cache (core/plan.ts), so a pruned image is fetched
 * again from its upstream on its next pull.
 */
import { CacheEndpoint } from "../core/plan";
import { emptyLedger, pullActivity } from "../core/ledger";
import { CacheContents, PrunePlan, pulledRecord } from "../core/prune-plan";
import { pulledRecordFile } from "../core/storage-layout";
import { DockerCli } from "./docker";
import { forgetInLedger, readFrontLedger } from "./ledger";
import { readStorage, removeStoragePaths, writeVolumeFile } from "./storage";
import { EnvironmentError } from "./types";

/** Reads every cache's storage and the front's ledger (once: one front serves every cache), for planPrune. */
export async function readCacheContents(
    docker: DockerCli,
    caches: readonly CacheEndpoint[],
): Promise<CacheContents[]> {
    const ledger = (await readFrontLedger(docker, caches)) ?? emptyLedger(0);
    return Promise.all(
        caches.map(async (cache) => {
            const storage = await readStorage(docker, cache.container).catch((error: Error) => {
                throw /No such container/.test(error.message)
                    ? new EnvironmentError(
                          `the cache container ${cache.container} (for ${cache.registry}) does not exist; run npm run up first`,
                      )
                    : error;
            });
            return { cache, storage, activity: pullActivity(ledger, cache.registry) };
        }),
    );
}

/**
 * Removes what the plan says from each cache, then saves when its remaining images were pulled,
 * and has the front's ledger forget what went.
 */
export async function applyPrune(
    docker: DockerCli,
    caches: readonly CacheEndpoint[],
    plan: PrunePlan,
): Promise<void> {
    for (const cache of caches) {
        await removeStoragePaths(docker, cache.container, plan.paths.get(cache.registry) ?? []);
        const record = pulledRecord(plan, cache.registry);
        await writeVolumeFile(docker, cache.container, pulledRecordFile, record);
    }
    await forgetInLedger(docker, caches, plan.forgotten);
}
