/** The pure parts of `npm run status`: reading the front's log, the registry's metrics and storage. */
import { formatAccessLogLine } from "../../core/access-log";
import {
    CacheReadings,
    CacheStatus,
    bar,
    cacheStatus,
    countImages,
    counter,
    formatStatus,
    readFrontLog,
} from "../../core/status-report";

const digest = `sha256:${"a".repeat(64)}`;
const line = (request: string, status: number, bytes: number, port: number) =>
    formatAccessLogLine({
        client: "172.18.0.1",
        time: 1_800_000_000,
        request: `${request} HTTP/1.1`,
        status,
        bytes,
        userAgent: "containerd/1.7",
        port,
        cache: "-",
    });

test("the front's log: content requests of one port that succeeded, and their bytes", () => {
    const log = [
        line(`GET /v2/library/nginx/blobs/${digest}`, 200, 1000, 5000),
        line(`HEAD /v2/library/nginx/manifests/1.27`, 200, 0, 5000),
        line(`GET /v2/library/nginx/manifests/${digest}`, 200, 500, 5000),
        line("GET /v2/", 200, 2, 5000), // a ping, not content
        line(`GET /v2/library/nginx/blobs/${digest}`, 404, 100, 5000), // not served
        line(`GET /v2/library/nginx/blobs/${digest}`, 200, 7000, 5001), // another cache
    ].join("\n");
    expect(readFrontLog(log, 5000)).toEqual({ requests: 3, bytes: 1500 });
});

test("a Prometheus counter is summed over its label sets", () => {
    const metrics = [
        "# HELP registry_proxy_misses_total The number of total proxy request misses",
        'registry_proxy_misses_total{type="blob"} 15',
        'registry_proxy_misses_total{type="manifest"} 14',
        'registry_proxy_pulled_bytes_total{type="blob"} 5.6708655e+07',
    ].join("\n");
    expect(counter(metrics, "registry_proxy_misses_total")).toBe(29);
    expect(counter(metrics, "registry_proxy_pulled_bytes_total")).toBe(56_708_655);
    expect(counter("", "registry_proxy_misses_total")).toBe(0);
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
        since: { front: "2026-11-29T16:00:00Z", registry: "2026-11-29T16:00:00Z" },
        requests: 10,
        hits: 6,
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
            "    hits   ██████░░░░ 60% (6 of 10 requests; 4 fetched upstream)",
            "    bytes  1.6 MB served, 800.0 kB from upstream, 800.0 kB saved",
            "    check  2026-11-30 10:00:00 UTC: 12 blobs (3.4 MB) re-hashed, 1 corrupt, 0 missing, 1 removed by --repair",
            "",
            "Counters since the containers started (front: 2026-11-29T16:00:00Z).",
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
        served: { requests: 10, bytes: 5000 },
        metrics:
            'registry_proxy_misses_total{type="blob"} 4\nregistry_proxy_pulled_bytes_total 2000',
        since: { front: "a", registry: "b" },
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
            misses: 4,
            hitRatio: 0.6,
            savedBytes: 3000,
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
