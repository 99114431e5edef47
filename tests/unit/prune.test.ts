/** The pure parts of `npm run prune`: reading storage and the front's log, and deciding what goes. */
import { createHash } from "node:crypto";
import fc from "fast-check";
import { parseSettings } from "../../mirrors";
import { parseSize } from "../../core/format";
import { parseImageReference } from "../../core/image-reference";
import { emptyLedger, pullActivity } from "../../core/ledger";
import { foldLedger } from "../../harness/ledger";
import {
    CacheContents,
    formatPrune,
    inFlightSeconds,
    parseAge,
    planPrune,
    withinBudget,
} from "../../core/prune-plan";
import {
    Storage,
    StoredImage,
    parseListing,
    parseManifests,
    storagePaths,
    storedImages,
} from "../../core/storage-layout";

const digest = (char: string) => `sha256:${char.repeat(64)}`;
const hexOf = (value: string) => value.slice("sha256:".length);
const now = 1_800_000_000;
const hourAgo = now - 3600;

/** One listing line per stored blob, as the listing script prints them. */
const blobLine = (value: string, size: number, modified = hourAgo) =>
    `blob ${size} ${modified} blobs/sha256/${hexOf(value).slice(0, 2)}/${hexOf(value)}/data`;

interface FakeImage {
    repository: string;
    tag?: string;
    manifest: string;
    blobs: string[];
    children?: string[];
}

/** A storage listing and manifests for `images`; every blob `size` bytes. */
function storageOf(images: FakeImage[], size = 1000, extraBlobs: string[] = []) {
    const blobs = new Set([
        ...images.flatMap((image) => [image.manifest, ...image.blobs]),
        ...extraBlobs,
    ]);
    const listing = [
        ...[...blobs].map((blob) => blobLine(blob, size)),
        ...images.flatMap((image) => {
            const base = `repositories/${image.repository}`;
            return [
                `link ${hourAgo} ${base}/_manifests/revisions/sha256/${hexOf(image.manifest)}/link`,
                ...image.blobs.map(
                    (blob) => `link ${hourAgo} ${base}/_layers/sha256/${hexOf(blob)}/link`,
                ),
                ...(image.tag
                    ? [
                          `link ${hourAgo} ${base}/_manifests/tags/${image.tag}/current/link`,
                          `tag ${base}/_manifests/tags/${image.tag}/current/link ${image.manifest}`,
                      ]
                    : []),
            ];
        }),
    ].join("\n");
    const manifests = images
        .map((image) => {
            const body = image.children
                ? { manifests: image.children.map((child) => ({ digest: child })) }
                : {
                      config: { digest: image.blobs[0] },
                      layers: image.blobs.slice(1).map((blob) => ({ digest: blob })),
                  };
            return `manifest blobs/sha256/${hexOf(image.manifest).slice(0, 2)}/${hexOf(image.manifest)}/data ${JSON.stringify(body)}`;
        })
        .join("\n");
    return { ...parseListing(listing), manifests: parseManifests(manifests) };
}

/** A pull as the front writes it to the ledger: `request` is `METHOD PATH`, answered 200. */
const logLine = (time: number, request: string, registry = "ghcr.io") => {
    const [method, uri] = request.split(" ");
    return { time, registry, method, status: 200, bytes: 10, frontCache: "", uri };
};

/** One cache's contents, with what the real ledger program makes of `log`. */
function contents(
    images: FakeImage[],
    log: ReturnType<typeof logLine>[] = [],
    extraBlobs: string[] = [],
) {
    const ledger = log.length > 0 ? foldLedger(log) : emptyLedger(0);
    return [
        {
            cache: { registry: "ghcr.io", container: "registry-ghcr.io" },
            storage: storageOf(images, 1000, extraBlobs),
            activity: pullActivity(ledger, "ghcr.io"),
        },
    ] satisfies CacheContents[];
}

const shared = digest("5");
const imageA: FakeImage = {
    repository: "team/a",
    tag: "v1",
    manifest: digest("a"),
    blobs: [digest("1"), shared],
};
const imageB: FakeImage = {
    repository: "team/b",
    tag: "v1",
    manifest: digest("b"),
    blobs: [digest("2"), shared],
};
/** A whole pull of `image` at `epoch`: its manifest by tag, then every blob. */
const pulledAt = (image: FakeImage, epoch: number) => [
    logLine(epoch, `GET /v2/${image.repository}/manifests/${image.tag}`),
    ...image.blobs.map((blob) => logLine(epoch, `GET /v2/${image.repository}/blobs/${blob}`)),
];

test("the ledger: manifest requests by tag and digest; blobs by GET only; one cache's alone", () => {
    const [{ activity }] = contents(
        [],
        [
            logLine(now - 5, "HEAD /v2/team/a/manifests/v1"),
            logLine(now - 4, `GET /v2/team/a/manifests/${digest("a")}`),
            logLine(now - 3, `GET /v2/team/a/blobs/${digest("1")}`),
            logLine(now - 2, `HEAD /v2/team/a/blobs/${digest("5")}`),
            logLine(now - 1, `GET /v2/team/a/blobs/${digest("9")}`, "quay.io"),
        ],
    );
    expect([...activity.manifests]).toEqual([
        ["team/a:v1", now - 5],
        [`team/a@${digest("a")}`, now - 4],
    ]);
    expect([...activity.blobs]).toEqual([[digest("1"), now - 3]]);
});

test("an index and its stored platform manifest are one image, with every blob either needs", () => {
    const child: FakeImage = {
        repository: "team/multi",
        manifest: digest("c"),
        blobs: [digest("3"), digest("4")],
    };
    const index: FakeImage = {
        repository: "team/multi",
        tag: "v2",
        manifest: digest("d"),
        blobs: [],
        children: [digest("c"), digest("e")], // e: a platform never pulled
    };
    const [image] = storedImages(storageOf([child, index]));
    expect(image).toMatchObject({
        repository: "team/multi",
        digest: digest("d"),
        tags: ["v2"],
        manifests: [digest("d"), digest("c")],
    });
    expect(image.blobs.sort()).toEqual([digest("3"), digest("4"), digest("c"), digest("d")].sort());
});

test("to a budget: least recently pulled first, and a layer shared with a kept image stays", () => {
    const plan = planPrune(
        contents([imageA, imageB], [...pulledAt(imageA, now - 100), ...pulledAt(imageB, now - 50)]),
        {
            targetBytes: 4000,
            keep: [],
            now,
        },
    );
    expect(plan.removed.map((image) => image.image)).toEqual(["ghcr.io/team/a:v1"]);
    // Its manifest and own config; the shared layer is B's too.
    expect(plan.freedBytes).toBe(2000);
    expect(plan.paths.get("ghcr.io")).toEqual([
        "repositories/team/a/_manifests/tags/v1",
        `repositories/team/a/_manifests/revisions/sha256/${hexOf(digest("a"))}`,
        `repositories/team/a/_layers/sha256/${hexOf(digest("1"))}`,
        // A's link to the shared layer goes; the layer itself is B's too.
        `repositories/team/a/_layers/sha256/${hexOf(shared)}`,
        `blobs/sha256/aa/${hexOf(digest("a"))}`,
        `blobs/sha256/11/${hexOf(digest("1"))}`,
    ]);
    expect(plan.records.get("ghcr.io")).toEqual(new Map([[`team/b@${digest("b")}`, now - 50]]));
    // The ledger forgets A's tag, its manifest and the blobs that went, not the shared layer.
    const forgotten = plan.forgotten.get("ghcr.io")!;
    expect(forgotten.manifests).toEqual(["team/a:v1", `team/a@${digest("a")}`]);
    expect([...forgotten.blobs].sort()).toEqual([digest("1"), digest("a")].sort());
});

test("the last image using a layer takes it along; under budget nothing goes", () => {
    const both = contents(
        [imageA, imageB],
        [...pulledAt(imageA, now - 100), ...pulledAt(imageB, now - 50)],
    );
    expect(planPrune(both, { targetBytes: 0, keep: [], now }).freedBytes).toBe(5000);
    const under = planPrune(both, { targetBytes: 5000, keep: [], now });
    expect(under).toMatchObject({ removed: [], freedBytes: 0 });
    expect(under.paths.get("ghcr.io")).toEqual([]);
});

test("a prewarm image is never removed, even when the oldest", () => {
    const plan = planPrune(
        contents([imageA, imageB], [...pulledAt(imageA, now - 100), ...pulledAt(imageB, now - 50)]),
        {
            targetBytes: 0,
            keep: [parseImageReference("ghcr.io/team/a:v1")!],
            now,
        },
    );
    expect(plan.removed.map((image) => image.image)).toEqual(["ghcr.io/team/b:v1"]);
    expect(plan.protected).toEqual([
        expect.objectContaining({ image: "ghcr.io/team/a:v1", kept: "prewarm" }),
    ]);
});

test("--older-than removes what was not pulled for that long, whatever the size", () => {
    const plan = planPrune(
        contents(
            [imageA, imageB],
            [...pulledAt(imageA, now - 7200), ...pulledAt(imageB, now - 60)],
        ),
        { olderThanSeconds: 1800, keep: [], now },
    );
    expect(plan.removed.map((image) => image.image)).toEqual(["ghcr.io/team/a:v1"]);
});

test("in flight: manifest fetched within the window, a layer not yet sent since", () => {
    const manifestAt = now - 30;
    const fetchingA = pulledAt(imageA, manifestAt).slice(0, 2);
    const during = planPrune(contents([imageA], fetchingA), { targetBytes: 0, keep: [], now });
    expect(during.removed).toEqual([]);
    expect(during.protected).toEqual([expect.objectContaining({ kept: "in flight" })]);

    const done = [...fetchingA, logLine(now - 20, `GET /v2/team/a/blobs/${shared}`)];
    expect(
        planPrune(contents([imageA], done), { targetBytes: 0, keep: [], now }).removed,
    ).toHaveLength(1);
    // A pull that never finished stops counting once the window has passed.
    const later = now + inFlightSeconds;
    expect(
        planPrune(contents([imageA], fetchingA), { targetBytes: 0, keep: [], now: later }).removed,
    ).toHaveLength(1);
});

test("blobs no manifest lists go only once older than the in-flight window", () => {
    const stray = digest("f");
    const plan = planPrune(contents([imageA], [], [stray]), { targetBytes: 1e9, keep: [], now });
    expect(plan.strayBytes).toBe(1000);
    expect(plan.paths.get("ghcr.io")).toEqual([`blobs/sha256/ff/${hexOf(stray)}`]);
    const fresh = contents([imageA], [], []);
    fresh[0].storage.blobs.set(stray, { size: 1000, modified: now - 10 });
    expect(planPrune(fresh, { targetBytes: 1e9, keep: [], now }).strayBytes).toBe(0);
});

test("partial uploads count toward the budget; a stale one goes, one being written stays", () => {
    const [cache] = contents([imageA]);
    const { uploads } = parseListing(
        [
            `upload 4000 ${hourAgo} stale repositories/team/a/_uploads/dead`,
            `upload 3000 ${now - 2} writing repositories/team/a/_uploads/live`,
            "upload 12 junk",
        ].join("\n"),
    );
    cache.storage.uploads = uploads;
    // Image A is 3000 bytes and within budget once the stale upload is gone.
    const plan = planPrune([cache], { targetBytes: 6000, keep: [], now });
    expect(plan).toMatchObject({ heldBytes: 10_000, staleUploadBytes: 4000, freedBytes: 4000 });
    expect(plan.removed).toEqual([]);
    expect(plan.paths.get("ghcr.io")).toEqual(["repositories/team/a/_uploads/dead"]);
    expect(formatPrune(plan, false)).toContain(
        "Freed 4.0 kB, 4.0 kB in partial uploads of cut fetches: 6.0 kB left.",
    );
    // The one being written is held: over a tighter budget the image goes, the upload stays.
    const tight = planPrune([cache], { targetBytes: 3000, keep: [], now });
    expect(tight.removed.map((image) => image.image)).toEqual(["ghcr.io/team/a:v1"]);
    expect(tight.paths.get("ghcr.io")).not.toContain("repositories/team/a/_uploads/live");
    expect(withinBudget(tight)).toBe(true);
});

test("last pulled falls back to prune's own record and to the tag's link", () => {
    const [cache] = contents([imageA, imageB]);
    cache.storage.pulled.set(`team/b@${digest("b")}`, now - 10);
    cache.storage.repositories.get("team/a")!.tags.get("v1")!.modified = now - 20;
    const plan = planPrune([cache], { targetBytes: 0, keep: [], now });
    expect(plan.removed.map((image) => [image.image, image.lastPulled])).toEqual([
        ["ghcr.io/team/a:v1", now - 20],
        ["ghcr.io/team/b:v1", now - 10],
    ]);
});

test.each([
    ["20GiB", 20 * 2 ** 30],
    ["500MB", 500e6],
    ["1.5TB", 1.5e12],
    ["123B", 123],
    ["20 GiB", undefined],
    ["20", undefined],
    ["20XB", undefined],
])("size %s", (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
});

test.each([
    ["7d", 7 * 86_400],
    ["36h", 36 * 3600],
    ["90m", 5400],
    ["1.5h", 5400],
    ["week", undefined],
])("age %s", (text, seconds) => {
    expect(parseAge(text)).toBe(seconds);
});

test("maxSize: a size is accepted; anything else names the key and what would do", () => {
    expect(parseSettings({ "pullthrough:maxSize": "20GiB" }).maxSize).toBe("20GiB");
    expect(parseSettings({}).maxSize).toBeUndefined();
    expect(() => parseSettings({ "pullthrough:maxSize": "lots" })).toThrow(
        /pullthrough:maxSize: got "lots"; expected a size in bytes with a unit/,
    );
});

describe("planPrune, for any caches", () => {
    const sha = (label: string) => `sha256:${createHash("sha256").update(label).digest("hex")}`;
    const repositories = ["team/a", "team/b", "team/c"];

    interface Arbitrary {
        layerSizes: number[];
        images: { repository: number; layers: number[]; pulledAgo: number }[];
        keep: boolean[];
        targetBytes: number;
    }

    /** One cache's storage holding `images`: each an image manifest and its layers. */
    function storageOf({ layerSizes, images }: Arbitrary): Storage {
        const storage: Storage = {
            blobs: new Map(),
            uploads: [],
            repositories: new Map(),
            manifests: new Map(),
            pulled: new Map(),
        };
        layerSizes.forEach((size, index) =>
            storage.blobs.set(sha(`layer ${index}`), { size, modified: hourAgo }),
        );
        images.forEach((image, index) => {
            const name = repositories[image.repository];
            const manifest = sha(`manifest ${index}`);
            const layers = [...new Set(image.layers)].map((layer) => sha(`layer ${layer}`));
            storage.blobs.set(manifest, { size: 500, modified: hourAgo });
            storage.manifests.set(manifest, { children: [], blobs: layers });
            const repository = storage.repositories.get(name) ?? {
                revisions: new Map(),
                tags: new Map(),
                layers: new Set<string>(),
            };
            repository.revisions.set(manifest, hourAgo);
            repository.tags.set(`v${index}`, { digest: manifest, modified: hourAgo });
            layers.forEach((layer) => repository.layers.add(layer));
            storage.repositories.set(name, repository);
            storage.pulled.set(`${name}@${manifest}`, now - image.pulledAgo);
        });
        return storage;
    }

    const caches = fc
        .record({
            layerSizes: fc.array(fc.integer({ min: 1, max: 10_000 }), {
                minLength: 1,
                maxLength: 8,
            }),
            images: fc.array(
                fc.record({
                    repository: fc.nat(repositories.length - 1),
                    layers: fc.array(fc.nat(7), { minLength: 1, maxLength: 4 }),
                    pulledAgo: fc.integer({ min: 3600, max: 864_000 }),
                }),
                { minLength: 1, maxLength: 6 },
            ),
            keep: fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }),
            targetBytes: fc.nat(60_000),
        })
        .map((value) => ({
            ...value,
            images: value.images.map((image) => ({
                ...image,
                layers: image.layers.map((layer) => layer % value.layerSizes.length),
            })),
        }));

    const planFor = (arbitrary: Arbitrary) => {
        const storage = storageOf(arbitrary);
        const kept = arbitrary.images.flatMap((image, index) =>
            arbitrary.keep[index] ? [{ ...image, index }] : [],
        );
        const keep = kept.map(({ repository, index }) =>
            parseImageReference(`ghcr.io/${repositories[repository]}:v${index}`)!,
        );
        const cache = {
            cache: { registry: "ghcr.io", container: "registry-ghcr.io" },
            storage,
            activity: pullActivity(emptyLedger(0), "ghcr.io"),
        };
        const plan = planPrune([cache], { targetBytes: arbitrary.targetBytes, keep, now });
        return { storage, kept, plan, paths: plan.paths.get("ghcr.io") ?? [] };
    };

    /** Every path whose removal would take something an image needs. */
    const neededPaths = (storage: Storage, image: StoredImage) => [
        ...image.tags.map((tag) => `repositories/${image.repository}/_manifests/tags/${tag}`),
        ...image.manifests.map((digest) => storagePaths.revisionLink(image.repository, digest)),
        ...image.blobs
            .filter((blob) => storage.repositories.get(image.repository)!.layers.has(blob))
            .map((blob) => storagePaths.layerLink(image.repository, blob)),
        ...image.blobs.map(storagePaths.blob),
    ];

    test("a prewarm image is never removed, nor anything it needs", () => {
        fc.assert(
            fc.property(caches, (arbitrary) => {
                const { storage, kept, plan, paths } = planFor(arbitrary);
                const keptNames = kept.map(
                    ({ repository, index }) => `ghcr.io/${repositories[repository]}:v${index}`,
                );
                expect(plan.removed.filter(({ image }) => keptNames.includes(image))).toEqual([]);
                for (const image of storedImages(storage))
                    if (
                        image.tags.some((tag) =>
                            keptNames.includes(`ghcr.io/${image.repository}:${tag}`),
                        )
                    )
                        expect(
                            paths.filter((p) => neededPaths(storage, image).includes(p)),
                        ).toEqual([]);
            }),
        );
    });

    test("no image that stays loses anything it needs", () => {
        fc.assert(
            fc.property(caches, (arbitrary) => {
                const { storage, plan, paths } = planFor(arbitrary);
                const removed = new Set(plan.removed.map(({ image }) => image));
                for (const image of storedImages(storage))
                    if (!removed.has(`ghcr.io/${image.repository}:${image.tags[0]}`))
                        expect(
                            paths.filter((p) => neededPaths(storage, image).includes(p)),
                        ).toEqual([]);
            }),
        );
    });

    test("the caches end under budget whenever the prewarm images alone fit in it", () => {
        fc.assert(
            fc.property(caches, (arbitrary) => {
                const { storage, kept, plan } = planFor(arbitrary);
                const keptBlobs = new Set(
                    kept.flatMap(({ index }) => [
                        sha(`manifest ${index}`),
                        ...storage.manifests.get(sha(`manifest ${index}`))!.blobs,
                    ]),
                );
                const floor = [...keptBlobs].reduce(
                    (sum, blob) => sum + storage.blobs.get(blob)!.size,
                    0,
                );
                expect(plan.heldBytes - plan.freedBytes).toBeGreaterThanOrEqual(floor);
                if (floor <= arbitrary.targetBytes) expect(withinBudget(plan)).toBe(true);
            }),
        );
    });
});
