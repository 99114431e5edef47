/** The pure parts of `npm run status`: the upstream figures, storage, the screen. */
import {
    CacheReadings,
    CacheStatus,
    bar,
    cacheStatus,
    countImages,
    formatStatus,
    parseUpstreamFigures,
    unservedRegistries,
} from "../../core/status-report";
import { emptyLedger } from "../../core/ledger";

test("the supervisor's upstream figures, and nothing from anything else", () => {
    expect(parseUpstreamFigures("upstream 1796635840 29 56708655\n")).toEqual({
        since: 1_796_635_840,
        misses: 29,
        bytes: 56_708_655,
    });
    expect(parseUpstreamFigures("")).toBeUndefined();
    expect(parseUpstreamFigures("sh: nc: not found")).toBeUndefined();
});

test("images are tags, repositories the paths above their _manifests", () => {
    const root = "/var/lib/registry/docker/registry/v2/repositories";
    const links = [
        `${root}/library/nginx/_manifests/tags/1.27/current/link`,
        `${root}/library/nginx/_manifests/tags/1.26/current/link`,
        `${root}/siderolabs/kubelet/_manifests/tags/v1.34.0/current/link`,
    ].join("\n");
    expect(countImages(links)).toEqual({ repositories: 2, images: 3 });
    expect(countImages("")).toEqual({ repositories: 0, images: 0 });
});

test("bars fill in tenths, within bounds", () => {
    expect(bar(0)).toBe("░░░░░░░░░░");
    expect(bar(0.6)).toBe("██████░░░░");
    expect(bar(1.7)).toBe("██████████");
});

test("the screen marks a cache that needs attention and says so", () => {
    const status: CacheStatus = {
        registry: "docker.io",
        port: 5000,
        mode: "auto",
        serving: "offline",
        health: "healthy",
        frontAnswer: "200 OK",
        degraded: true,
        disk: { usedBytes: 2_000_000_000, freeBytes: 8_000_000_000 },
        partialUploads: { count: 2, bytes: 40_000_000 },
        repositories: 3,
        images: 4,
        since: { requests: "2026-11-29T16:00:00.000Z", upstream: "2026-11-29T16:00:00.000Z" },
        requests: 10,
        hits: 6,
        frontHits: 2,
        misses: 4,
        servedBytes: 1_600_000,
        upstreamBytes: 800_000,
        hitRatio: 0.6,
        savedBytes: 800_000,
        lastCheck: {
            registry: "docker.io",
            checkedAt: "2026-11-30T10:00:00.000Z",
            blobs: 12,
            bytes: 3_400_000,
            corrupt: [`sha256:${"a".repeat(64)}`],
            missing: [],
            repaired: [`sha256:${"a".repeat(64)}`],
        },
    };
    expect(formatStatus([status], true)).toBe(
        [
            "! docker.io  :5000  mode auto, serving offline, healthy",
            "    disk   ██░░░░░░░░ 2.0 GB held (40.0 MB of it in 2 partial uploads), 8.0 GB free; 3 repositories, 4 images",
            "    hits   ██████░░░░ 60% (6 of 10 requests; 4 fetched upstream; 2 from the front's cache)",
            "    bytes  1.6 MB served, 800.0 kB from upstream, 800.0 kB saved",
            "    check  2026-11-30 10:00:00 UTC: 12 blobs (3.4 MB) re-hashed, 1 corrupt, 0 missing, 1 removed by --repair",
            "",
            "Counting since 2026-11-29 16:00:00 UTC, across restarts and log rotation.",
            "1 of 1 caches need attention (marked !).",
        ].join("\n"),
    );
});

describe("a cache's status from what was read", () => {
    const cache = {
        registry: "docker.io",
        remote: "https://registry-1.docker.io",
        port: 5000,
        mode: "auto",
        endpoint: "http://10.5.0.1:5000",
        hostEndpoint: "http://127.0.0.1:5000",
        container: "registry-docker.io",
        volume: "registry-docker.io",
        network: "registry-net",
    };
    const readings: CacheReadings = {
        health: { status: "healthy", serving: "proxy" },
        front: { ok: true, answer: "200 OK" },
        disk: { usedBytes: 4096, freeBytes: 8192 },
        uploads: [{ size: 100 }, { size: 50 }],
        tagLinks: [
            "/r/library/nginx/_manifests/tags/1.27/current/link",
            "/r/library/nginx/_manifests/tags/1.28/current/link",
        ].join("\n"),
        served: { requests: 10, bytes: 5000, frontHits: 3 },
        servedSince: 1_796_000_000,
        upstream: { since: 1_796_000_100, misses: 4, bytes: 2000 },
        lastCheck: null,
    };

    test("a well cache: its figures, nothing to attend to", () => {
        expect(cacheStatus(cache, readings)).toMatchObject({
            degraded: false,
            partialUploads: { count: 2, bytes: 150 },
            repositories: 1,
            images: 2,
            requests: 10,
            hits: 6,
            frontHits: 3,
            misses: 4,
            hitRatio: 0.6,
            savedBytes: 3000,
            since: {
                requests: new Date(1_796_000_000_000).toISOString(),
                upstream: new Date(1_796_000_100_000).toISOString(),
            },
        });
    });

    test("a registry that keeps no upstream figures (registry 2): every request a hit, since unknown", () => {
        expect(cacheStatus(cache, { ...readings, upstream: undefined })).toMatchObject({
            hits: 10,
            misses: 0,
            upstreamBytes: 0,
            since: { upstream: "" },
        });
    });

    test("a front that cannot reach it is the problem clients see", () => {
        const status = cacheStatus(cache, {
            ...readings,
            front: { ok: false, answer: "502 Bad Gateway" },
        });
        expect(status.degraded).toBe(true);
        expect(status.problem).toBe("clients get 502 Bad Gateway at http://127.0.0.1:5000/v2/");
    });

    test("an auto cache serving offline needs attention; its healthcheck's problem comes first", () => {
        const offline = { ...readings.health, serving: "offline" };
        expect(cacheStatus(cache, { ...readings, health: offline }).degraded).toBe(true);
        const full = { status: "unhealthy", serving: "proxy", problem: "disk is full" };
        const status = cacheStatus(cache, {
            ...readings,
            health: full,
            front: { ok: false, answer: "502" },
        });
        expect(status.problem).toBe("disk is full");
    });
});

test("registries asked of the one port with no cache are named, most asked first, with what to do", () => {
    const ledger = emptyLedger(0);
    ledger.unrouted.set("nvcr.io", { requests: 3, last: 1_800_000_000 });
    ledger.unrouted.set("quay.io", { requests: 12, last: 1_800_000_100 });
    ledger.unrouted.set("(none)", { requests: 1, last: 1_800_000_000 });
    const unserved = unservedRegistries(ledger);
    expect(unserved.map(({ registry, requests }) => [registry, requests])).toEqual([
        ["quay.io", 12],
        ["nvcr.io", 3],
        ["(none)", 1],
    ]);
    expect(unserved[0].lastRequest).toBe("2027-01-15T08:01:40.000Z");
    const screen = formatStatus([], false, unserved);
    expect(screen).toContain(
        "Asked of the one port, with no cache:\n  quay.io: 12 requests, no cache (nodes fetched it directly): add an upstream\n  nvcr.io: 3 requests, no cache (nodes fetched it directly): add an upstream\n  no ns: 1 request from clients that do not name their registry: give them a cache's own port",
    );
    expect(formatStatus([], false, [])).not.toContain("no cache");
    expect(unservedRegistries(undefined)).toEqual([]);
});
