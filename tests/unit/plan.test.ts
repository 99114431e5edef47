import { healthcheckCommand } from "../../core/container-facts";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { cacheContainer, cacheVolume, planCaches, volumeOptions } from "../../core/plan";
import { parseSettings } from "../../mirrors";
import { config, identity, upstream } from "./settings";

const supervisor = readFileSync(
    path.join(__dirname, "../../container/cache-supervisor.sh"),
    "utf8",
);

describe("plan", () => {
    const custom = parseSettings(
        config({
            upstreams: [
                upstream("docker.io", 6000, { remote: "https://registry-1.docker.io/" }),
                upstream("registry.local:5443", 6001, { ttl: "24h" }),
            ],
            ttl: "168h",
            bindAddress: "127.0.0.1",
            mirrorHost: "10.5.0.1",
            namePrefix: "ci-",
            credentials: { "docker.io": { username: "alice", password: "s3cret" } },
        }),
    );
    const [dockerHub, local] = planCaches(custom, identity);

    test("names come from the prefix and registry; a port becomes a Docker-safe suffix", () => {
        expect([dockerHub.name, local.name]).toEqual(["ci-docker.io", "ci-registry.local_5443"]);
        expect(planCaches(parseSettings({}), identity).map((cache) => cache.name)).toEqual([
            "registry-docker.io",
            "registry-registry.k8s.io",
            "registry-quay.io",
            "registry-gcr.io",
            "registry-ghcr.io",
            "registry-factory.talos.dev",
        ]);
    });

    test("nodes reach a cache at mirrorHost, this host at the bind address", () => {
        expect(dockerHub.endpoint).toBe("http://10.5.0.1:6000");
        expect(dockerHub.hostEndpoint).toBe("http://127.0.0.1:6000");
        const anyAddress = planCaches(parseSettings({}), identity)[0];
        expect(anyAddress.hostEndpoint).toBe("http://127.0.0.1:5000");
        expect(anyAddress.endpoint).toBe("http://10.5.0.1:5000");
    });

    test("a per-upstream ttl overrides the stack's; the remote is normalised to its origin", () => {
        expect([dockerHub.ttl, local.ttl]).toEqual(["168h", "24h"]);
        expect(dockerHub.remote).toBe("https://registry-1.docker.io");
    });

    test("the container runs the registry on its own volume, on the stack network, unpublished", () => {
        const { args: container } = cacheContainer(dockerHub, supervisor);
        expect(container.volumes).toEqual([
            { volumeName: "ci-docker.io", containerPath: "/var/lib/registry" },
        ]);
        expect(container).not.toHaveProperty("ports");
        expect(container.networksAdvanced).toEqual([{ name: "ci-net" }]);
        expect(container.restart).toBe("always");
        expect(container.wait).toBe(true);
    });

    test("a login is a registry config section in an uploaded file, never in the environment", () => {
        const { args, secretUploads } = cacheContainer(dockerHub, supervisor);
        expect(secretUploads).toEqual([
            {
                file: "/etc/pullthrough-credentials.yml",
                content: 'proxy:\n  username: "alice"\n  password: "s3cret"\n',
            },
        ]);
        expect(JSON.stringify(args)).not.toContain("s3cret");
        expect(cacheContainer(local, supervisor).secretUploads).toEqual([]);
        // Proxy mode with a login is supervised too: only the supervisor reads the file.
        const proxy = cacheContainer({ ...dockerHub, mode: "proxy" }, supervisor).args;
        expect(proxy.envs).toContain("PULLTHROUGH_MODE=proxy");
    });

    // Every mode writes or keeps a volume: the supervisor removes what interrupted fetches leave.
    test.each(["auto", "offline", "proxy"] as const)(
        "%s mode runs the supervisor, which alone decides whether to proxy",
        (mode) => {
            const cache = planCaches(parseSettings(config({ mode })), identity)[0];
            const container = cacheContainer(cache, supervisor).args;
            expect(container.entrypoints).toEqual(["/bin/sh", "-c", supervisor]);
            expect(container.envs).toEqual([
                `PULLTHROUGH_MODE=${mode}`,
                "PULLTHROUGH_REMOTE=https://registry-1.docker.io",
                `REGISTRY_PROXY_TTL=${cache.ttl}`,
                "REGISTRY_LOG_LEVEL=info",
                "REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR=none",
            ]);
            // The check the supervisor's files answer (run in tests/unit/container-facts.test.ts).
            expect(container.healthcheck.tests).toEqual(["CMD-SHELL", healthcheckCommand()]);
            expect(container.labels).toContainEqual({ label: "pullthrough.mode", value: mode });
        },
    );

    test("keepCache decides whether destroy keeps the volumes", () => {
        expect(volumeOptions({ keepCache: true }).retainOnDelete).toBe(true);
        expect(volumeOptions({ keepCache: false }).retainOnDelete).toBe(false);
    });

    test("a volume's inputs depend on the cache's identity alone, never on a setting", () => {
        const base = config({ upstreams: [upstream("docker.io", 6000)] });
        const volumeOf = (values: Record<string, unknown>) =>
            cacheVolume(planCaches(parseSettings({ ...base, ...config(values) }), identity)[0]);
        const reference = volumeOf({});
        for (const change of [
            { mode: "offline" },
            { mode: "proxy" },
            { ttl: "1h" },
            { image: "registry:2" },
            { bindAddress: "127.0.0.1" },
            { mirrorHost: "10.5.0.1" },
            { keepCache: false },
            { credentials: { "docker.io": { username: "u", password: "p" } } },
            {
                upstreams: [
                    upstream("docker.io", 7000, {
                        remote: "http://upstream-alias:5000",
                        ttl: "2h",
                    }),
                ],
            },
        ]) {
            expect({ change, volume: volumeOf(change) }).toEqual({ change, volume: reference });
        }
        expect(volumeOf({ namePrefix: "other-" }).name).toBe("other-docker.io");
    });
});
