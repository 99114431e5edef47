import { parse as parseYaml, parseAllDocuments } from "yaml";
import { parse as parseToml } from "smol-toml";
import {
    ConfigError,
    cacheContainer,
    cacheSupervisorScript,
    cidrAddress,
    containerdHosts,
    defaultUpstreams,
    mirrorsByRegistry,
    nearestKey,
    parseSettings,
    planCaches,
    planPrewarm,
    prewarmCommand,
    registryMirrorFlags,
    talosConfigPatch,
    talosMirrorDocuments,
    volumeOptions,
} from "../mirrors";

const identity = { project: "pullthrough", stack: "dev" };

/** Stack config as the Pulumi CLI hands it over: `pullthrough:<key>` → string (JSON for structures). */
function config(values: Record<string, unknown>): Record<string, string> {
    return Object.fromEntries(
        Object.entries(values).map(([key, value]) => [`pullthrough:${key}`, typeof value === "string" ? value : JSON.stringify(value)]),
    );
}

function problemsOf(values: Record<string, string>): string[] {
    try {
        parseSettings(values);
    } catch (error) {
        if (error instanceof ConfigError) return [...error.problems];
        throw error;
    }
    throw new Error("config was accepted");
}

const upstream = (registry: string, port: unknown, extra: Record<string, unknown> = {}) => ({
    registry,
    remote: `https://${registry}`,
    port,
    ...extra,
});

describe("defaults", () => {
    const settings = parseSettings({});

    test("with no config the stack reproduces the Talos guide's six caches", () => {
        expect(settings.upstreams.map((u) => [u.registry, u.port, u.remote])).toEqual([
            ["docker.io", 5000, "https://registry-1.docker.io"],
            ["registry.k8s.io", 5001, "https://registry.k8s.io"],
            ["quay.io", 5002, "https://quay.io"],
            ["gcr.io", 5003, "https://gcr.io"],
            ["ghcr.io", 5004, "https://ghcr.io"],
            ["factory.talos.dev", 5006, "https://factory.talos.dev"],
        ]);
    });

    test("every other key has its documented default", () => {
        const { upstreams, ...rest } = settings;
        expect(upstreams).toHaveLength(defaultUpstreams.length);
        expect(rest).toEqual({
            image: "registry:3",
            bindAddress: "0.0.0.0",
            mirrorHost: "172.17.0.1",
            ttl: "0",
            keepCache: true,
            namePrefix: "registry-",
            credentials: {},
            mode: "auto",
            prewarm: [],
            cluster: {
                enabled: false,
                provisioner: "docker",
                name: "talos-default",
                cidr: "10.5.0.0/24",
                controlplanes: 1,
                workers: 1,
                talosctl: "talosctl",
                extraArgs: [],
            },
        });
    });

    test("mirrorHost follows the provisioner unless set: docker0 for docker, the cluster gateway for qemu", () => {
        expect(parseSettings(config({ cluster: { provisioner: "qemu" } })).mirrorHost).toBe("10.5.0.1");
        expect(parseSettings(config({ cluster: { provisioner: "qemu", cidr: "192.168.77.0/26" } })).mirrorHost).toBe("192.168.77.1");
        expect(parseSettings(config({ cluster: { provisioner: "docker", cidr: "10.9.0.0/24" } })).mirrorHost).toBe("172.17.0.1");
        expect(parseSettings(config({ mirrorHost: "cache.lan", cluster: { provisioner: "qemu" } })).mirrorHost).toBe("cache.lan");
    });

    test("config of other namespaces is none of our business", () => {
        expect(parseSettings({ "docker:host": "unix:///var/run/docker.sock" }).image).toBe("registry:3");
    });

    test("values arrive as the CLI stores them: strings, with JSON for booleans and structures", () => {
        const parsed = parseSettings(config({ keepCache: "false", ttl: "0", upstreams: [upstream("docker.io", 6000)] }));
        expect(parsed.keepCache).toBe(false);
        expect(parsed.ttl).toBe("0");
        expect(parsed.upstreams).toEqual([upstream("docker.io", 6000)]);
    });
});

describe("validation", () => {
    // Each row: the config, then fragments the single error line must contain: the key, the value, what is valid.
    test.each<[string, Record<string, unknown>, string[]]>([
        ["misspelt top-level key", { upstream: [] }, ["pullthrough:upstream: unknown key", 'did you mean "upstreams"']],
        ["wrong case", { KeepCache: "true" }, ["pullthrough:KeepCache", 'did you mean "keepCache"']],
        ["unknown key far from all", { flavour: "x" }, ["pullthrough:flavour: unknown key; valid keys are upstreams, image"]],
        ["misspelt upstream key", { upstreams: [{ ...upstream("docker.io", 5000), remoteUrl: "x" }] }, ["pullthrough:upstreams[0].remoteUrl", 'did you mean "remote"']],
        ["upstreams not JSON", { upstreams: "docker.io" }, ["pullthrough:upstreams", '"docker.io"', ", which is not JSON", "list of {registry, remote, port, ttl?}"]],
        ["upstreams empty", { upstreams: [] }, ["pullthrough:upstreams: got []", "non-empty list"]],
        ["upstreams an object", { upstreams: { registry: "docker.io" } }, ["pullthrough:upstreams: got {", "non-empty list"]],
        ["missing port", { upstreams: [{ registry: "docker.io", remote: "https://x.io" }] }, ["pullthrough:upstreams[0].port: got nothing", "integer port from 1 to 65535"]],
        ["port too large", { upstreams: [upstream("a.io", 5000), upstream("b.io", 5001), upstream("c.io", 70000)] }, ["pullthrough:upstreams[2].port: got 70000", "1 to 65535"]],
        ["port zero", { upstreams: [upstream("a.io", 0)] }, ["pullthrough:upstreams[0].port: got 0"]],
        ["port fractional", { upstreams: [upstream("a.io", 5000.5)] }, ["pullthrough:upstreams[0].port: got 5000.5"]],
        ["port as string", { upstreams: [upstream("a.io", "5000")] }, ['pullthrough:upstreams[0].port: got "5000"']],
        ["registry with a scheme", { upstreams: [upstream("https://docker.io", 5000, { remote: "https://example.org" })] }, ['pullthrough:upstreams[0].registry: got "https://docker.io"', "registry host name"]],
        ["registry with a path", { upstreams: [upstream("docker.io/library", 5000, { remote: "https://example.org" })] }, ['pullthrough:upstreams[0].registry: got "docker.io/library"']],
        ["registry with a bad port", { upstreams: [upstream("reg.local:99999", 5000, { remote: "https://example.org" })] }, ['pullthrough:upstreams[0].registry: got "reg.local:99999"']],
        ["remote without scheme", { upstreams: [{ ...upstream("docker.io", 5000), remote: "registry-1.docker.io" }] }, ['pullthrough:upstreams[0].remote: got "registry-1.docker.io"', "absolute http(s) URL"]],
        ["remote with a path", { upstreams: [{ ...upstream("docker.io", 5000), remote: "https://registry-1.docker.io/v2" }] }, ["pullthrough:upstreams[0].remote", "no path"]],
        ["remote of another scheme", { upstreams: [{ ...upstream("docker.io", 5000), remote: "ftp://example.org" }] }, ['pullthrough:upstreams[0].remote: got "ftp://example.org"']],
        ["remote with a login", { upstreams: [{ ...upstream("docker.io", 5000), remote: "https://me:pw@example.org" }] }, ["pullthrough:upstreams[0].remote", "credentials"]],
        ["duplicate registry", { upstreams: [upstream("a.io", 5000), upstream("a.io", 5001)] }, ['pullthrough:upstreams[1].registry: got "a.io"', "upstreams[0] has it"]],
        ["duplicate port", { upstreams: [upstream("a.io", 5000), upstream("b.io", 5001), upstream("c.io", 5001)] }, ["pullthrough:upstreams[2].port: got 5001", "upstreams[1] has it"]],
        ["bad per-upstream ttl", { upstreams: [upstream("a.io", 5000, { ttl: "7d" })] }, ['pullthrough:upstreams[0].ttl: got "7d"', "Go duration"]],
        ["bad ttl", { ttl: "1 week" }, ['pullthrough:ttl: got "1 week"', "Go duration"]],
        ["negative ttl", { ttl: "-1h" }, ['pullthrough:ttl: got "-1h"']],
        ["image with spaces", { image: "registry 3" }, ['pullthrough:image: got "registry 3"', "Docker image reference"]],
        ["image in upper case", { image: "Registry:3" }, ['pullthrough:image: got "Registry:3"']],
        ["bindAddress a host name", { bindAddress: "localhost" }, ['pullthrough:bindAddress: got "localhost"', "IPv4 address"]],
        ["bindAddress out of range", { bindAddress: "127.0.0.256" }, ['pullthrough:bindAddress: got "127.0.0.256"']],
        ["mirrorHost with a scheme", { mirrorHost: "http://10.5.0.1" }, ['pullthrough:mirrorHost: got "http://10.5.0.1"', "host name or IPv4"]],
        ["mirrorHost a broken address", { mirrorHost: "10.5.0.300" }, ['pullthrough:mirrorHost: got "10.5.0.300"']],
        ["keepCache a word", { keepCache: "yes" }, ['pullthrough:keepCache: got "yes"', "true or false"]],
        ["keepCache a number", { keepCache: "1" }, ["pullthrough:keepCache: got 1", "true or false"]],
        ["namePrefix with a slash", { namePrefix: "cache/" }, ['pullthrough:namePrefix: got "cache/"']],
        ["credentials for an unconfigured registry", { credentials: { "quay.io": { username: "u", password: "p" } }, upstreams: [upstream("docker.io", 5000)] }, ['pullthrough:credentials["quay.io"]: got [secret]', "credentials only for configured registries (docker.io)"]],
        ["credentials missing a password", { credentials: { "docker.io": { username: "u" } } }, ['pullthrough:credentials["docker.io"].password: got nothing', "non-empty string"]],
        ["cluster not an object", { cluster: "yes" }, ['pullthrough:cluster: got "yes"', "which is not JSON", "cluster settings"]],
        ["misspelt cluster key", { cluster: { enable: true } }, ["pullthrough:cluster.enable: unknown key", 'did you mean "enabled"']],
        ["unknown provisioner", { cluster: { provisioner: "kvm" } }, ['pullthrough:cluster.provisioner: got "kvm"', '"docker" or "qemu"']],
        ["a /33", { cluster: { cidr: "10.5.0.0/33" } }, ['pullthrough:cluster.cidr: got "10.5.0.0/33"', "CIDR"]],
        ["a network too small for the nodes", { cluster: { cidr: "10.5.0.0/30", workers: 2 } }, ['pullthrough:cluster.cidr: got "10.5.0.0/30"', "room for a gateway and 3 nodes (/29 or wider)"]],
        ["zero control planes", { cluster: { controlplanes: 0 } }, ["pullthrough:cluster.controlplanes: got 0", "at least 1"]],
        ["negative workers", { cluster: { workers: -1 } }, ["pullthrough:cluster.workers: got -1"]],
        ["cluster name with capitals", { cluster: { name: "Talos" } }, ['pullthrough:cluster.name: got "Talos"']],
        ["extraArgs a string", { cluster: { extraArgs: "--memory 4096" } }, ['pullthrough:cluster.extraArgs: got "--memory 4096"', "list of strings"]],
        ["unknown mode", { mode: "online" }, ['pullthrough:mode: got "online"', '"auto", "proxy" or "offline"']],
        ["prewarm not a list", { prewarm: "talos" }, ['pullthrough:prewarm: got "talos"', "which is not JSON", 'image references and/or "talos"']],
        ["prewarm a bad reference", { prewarm: ["talos", "Nginx:latest"] }, ['pullthrough:prewarm[1]: got "Nginx:latest"', "an image reference"]],
        ["prewarm an image without a cache", { prewarm: ["quay.io/cilium/cilium:v1.16.0"], upstreams: [upstream("docker.io", 5000)] }, ['pullthrough:prewarm[0]: got "quay.io/cilium/cilium:v1.16.0"', "quay.io has none; caches: docker.io"]],
        ["credentials with a misspelt key", { credentials: { "docker.io": { username: "u", passwd: "p", password: "p" } } }, ['pullthrough:credentials["docker.io"].passwd: unknown key', 'did you mean "password"']],
    ])("%s", (_name, values, fragments) => {
        const problems = problemsOf(config(values));
        expect(problems).toHaveLength(1);
        for (const fragment of fragments) expect(problems[0]).toContain(fragment);
    });

    test("every problem is reported at once", () => {
        const problems = problemsOf(config({ ttl: "forever", bindAddress: "any", upstreams: [upstream("a.io", -1)] }));
        expect(problems.map((problem) => problem.split(":").slice(0, 2).join(":")).sort()).toEqual(
            ["pullthrough:bindAddress", "pullthrough:ttl", "pullthrough:upstreams[0].port"].sort(),
        );
    });

    test("a credential value never appears in an error", () => {
        const problems = problemsOf(config({ credentials: { "docker.io": { username: "alice", password: 12345678 } } }));
        expect(problems).toEqual([expect.stringContaining('pullthrough:credentials["docker.io"].password: got [secret]')]);
        expect(problems.join("\n")).not.toContain("12345678");
        const notJson = problemsOf({ "pullthrough:credentials": "hunter2" });
        expect(notJson.join("\n")).not.toContain("hunter2");
    });

    test("the error message lists every problem under one heading", () => {
        expect(() => parseSettings(config({ ttl: "soon" }))).toThrow(/^Invalid pullthrough config:\n {2}- pullthrough:ttl: got "soon"/);
    });

    test.each([
        ["registry:2"],
        ["registry:3"],
        ["ghcr.io/distribution/distribution:3.0.0"],
        ["localhost:5000/mirror/registry@sha256:" + "a".repeat(64)],
        ["pullthrough-test/registry:2.8-debian"],
    ])("image %s is accepted", (image) => {
        expect(parseSettings(config({ image })).image).toBe(image);
    });

    test.each([
        ["10.5.0.0/24", 1, "10.5.0.1"],
        ["10.5.0.0/24", 2, "10.5.0.2"],
        ["10.5.0.77/24", 1, "10.5.0.1"],
        ["172.20.16.0/20", 1, "172.20.16.1"],
        ["10.255.255.0/23", 257, "10.255.255.1"],
    ])("address %s + %d is %s", (cidr, offset, address) => {
        expect(cidrAddress(cidr, offset)).toBe(address);
    });

    test.each([["0"], ["168h"], ["1h30m"], ["1.5s"], ["500ms"]])("ttl %s is a Go duration", (ttl) => {
        expect(parseSettings(config({ ttl })).ttl).toBe(ttl);
    });

    test.each([["localhost"], ["registry.local:5000"], ["k8s.gcr.io"], ["10.0.0.5:443"]])("registry %s is accepted", (registry) => {
        expect(parseSettings(config({ upstreams: [upstream(registry, 5000)] })).upstreams[0].registry).toBe(registry);
    });

    test("nearestKey suggests only keys within typo distance", () => {
        expect(nearestKey("bindAdress", ["bindAddress", "image"])).toBe("bindAddress");
        expect(nearestKey("colour", ["bindAddress", "image"])).toBeUndefined();
    });
});

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
        expect(anyAddress.endpoint).toBe("http://172.17.0.1:5000");
    });

    test("a per-upstream ttl overrides the stack's; the remote is normalised to its origin", () => {
        expect([dockerHub.ttl, local.ttl]).toEqual(["168h", "24h"]);
        expect(dockerHub.remote).toBe("https://registry-1.docker.io");
    });

    test("the container runs the registry on its own volume, published where the plan says", () => {
        const container = cacheContainer(dockerHub);
        expect(container.secretEnvs).toEqual(["REGISTRY_PROXY_USERNAME=alice", "REGISTRY_PROXY_PASSWORD=s3cret"]);
        expect(container.volumes).toEqual([{ volumeName: "ci-docker.io", containerPath: "/var/lib/registry" }]);
        expect(container.ports).toEqual([{ internal: 5000, external: 6000, ip: "127.0.0.1", protocol: "tcp" }]);
        expect(container.restart).toBe("always");
        expect(container.wait).toBe(true);
        expect(cacheContainer(local).secretEnvs).toEqual([]);
    });

    test("proxy mode runs the image as it ships, with the upstream as its proxy remote", () => {
        const container = cacheContainer({ ...dockerHub, mode: "proxy" });
        expect(container).not.toHaveProperty("entrypoints");
        expect(container.envs).toEqual(["REGISTRY_PROXY_REMOTEURL=https://registry-1.docker.io", "REGISTRY_PROXY_TTL=168h", "REGISTRY_LOG_LEVEL=info"]);
        expect(container.healthcheck.tests).toEqual(["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:5000/v2/"]);
    });

    test.each(["auto", "offline"] as const)("%s mode runs the supervisor, which alone decides whether to proxy", (mode) => {
        const container = cacheContainer(planCaches(parseSettings(config({ mode })), identity)[0]);
        expect(container.entrypoints).toEqual(["/bin/sh", "-c", cacheSupervisorScript]);
        expect(cacheSupervisorScript).toMatch(/^# Pullthrough's cache entry command/);
        expect(container.envs).toEqual([`PULLTHROUGH_MODE=${mode}`, "PULLTHROUGH_REMOTE=https://registry-1.docker.io", "REGISTRY_PROXY_TTL=0", "REGISTRY_LOG_LEVEL=info"]);
        expect(container.healthcheck.tests).toEqual(["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:5000/v2/ && cat /tmp/pullthrough-serving"]);
        expect(container.labels).toContainEqual({ label: "pullthrough.mode", value: mode });
    });

    test("keepCache decides whether destroy keeps the volumes", () => {
        expect(volumeOptions({ keepCache: true })).toEqual({ retainOnDelete: true });
        expect(volumeOptions({ keepCache: false })).toEqual({ retainOnDelete: false });
    });
});

describe("renderings", () => {
    const caches = planCaches(
        parseSettings(config({ upstreams: [upstream("docker.io", 5000, { remote: "https://registry-1.docker.io" }), upstream("registry.local:5443", 5010)] })),
        identity,
    );

    test("mirrors lists every cache by registry", () => {
        expect(mirrorsByRegistry(caches)["registry.local:5443"]).toEqual({
            remote: "https://registry.local:5443",
            port: 5010,
            endpoint: "http://172.17.0.1:5010",
            hostEndpoint: "http://127.0.0.1:5010",
            mode: "auto",
            container: "registry-registry.local_5443",
            volume: "registry-registry.local_5443",
        });
    });

    test("talosctl flags: one --registry-mirror item per registry, never comma-joined", () => {
        expect(registryMirrorFlags(caches)).toEqual([
            "--registry-mirror",
            "docker.io=http://172.17.0.1:5000",
            "--registry-mirror",
            "registry.local:5443=http://172.17.0.1:5010",
        ]);
    });

    test("the machine-config patch parses to machine.registries.mirrors", () => {
        expect(parseYaml(talosConfigPatch(caches))).toEqual({
            machine: {
                registries: {
                    mirrors: {
                        "docker.io": { endpoints: ["http://172.17.0.1:5000"] },
                        "registry.local:5443": { endpoints: ["http://172.17.0.1:5010"] },
                    },
                },
            },
        });
    });

    test("Talos 1.12+ gets one RegistryMirrorConfig document per registry", () => {
        const documents = parseAllDocuments(talosMirrorDocuments(caches)).map((document) => document.toJSON());
        expect(documents).toEqual([
            { apiVersion: "v1alpha1", kind: "RegistryMirrorConfig", name: "docker.io", endpoints: [{ url: "http://172.17.0.1:5000" }] },
            { apiVersion: "v1alpha1", kind: "RegistryMirrorConfig", name: "registry.local:5443", endpoints: [{ url: "http://172.17.0.1:5010" }] },
        ]);
    });

    test("containerd hosts.toml: the cache for pull and resolve, the real registry as fallback", () => {
        const hosts = containerdHosts(caches);
        expect(Object.keys(hosts)).toEqual(["docker.io", "registry.local:5443"]);
        expect(parseToml(hosts["docker.io"])).toEqual({
            server: "https://registry-1.docker.io",
            host: { "http://172.17.0.1:5000": { capabilities: ["pull", "resolve"] } },
        });
    });
});

describe("prewarm", () => {
    const talosSet = { images: ["registry.k8s.io/pause:3.10", "ghcr.io/siderolabs/kubelet:v1.34.0"], source: "a test list" };
    const plan = (values: Record<string, unknown>, talos = talosSet) => {
        const settings = parseSettings(config(values));
        return planPrewarm(settings, planCaches(settings, identity), () => talos);
    };

    test("images are fully qualified, in config order, each once; talos expands to its image set", () => {
        expect(plan({ prewarm: ["nginx:1.27", "talos", "docker.io/library/nginx:1.27", "registry.k8s.io/pause:3.10"] })).toEqual([
            "docker.io/library/nginx:1.27",
            "registry.k8s.io/pause:3.10",
            "ghcr.io/siderolabs/kubelet:v1.34.0",
        ]);
    });

    test("the Talos image set is read only when talos is listed", () => {
        const settings = parseSettings(config({ prewarm: ["nginx"] }));
        expect(planPrewarm(settings, planCaches(settings, identity), () => { throw new Error("read"); })).toEqual(["docker.io/library/nginx:latest"]);
    });

    test("a Talos image from a registry without a cache is a config error naming it", () => {
        const values = { prewarm: ["talos"], upstreams: [upstream("registry.k8s.io", 5001)] };
        expect(() => plan(values)).toThrow(ConfigError);
        expect(() => plan(values)).toThrow(/pullthrough:prewarm\[0\]: got "talos", whose ghcr.io\/siderolabs\/kubelet:v1.34.0 needs a cache for ghcr.io/);
    });

    test("pulumi up runs npm run prewarm with the stack outputs on stdin", () => {
        const caches = planCaches(parseSettings({}), identity);
        const command = prewarmCommand(["docker.io/library/nginx:1.27"], caches, "/project");
        expect(command.create).toBe("npm run --silent prewarm -- --outputs -");
        expect(command.dir).toBe("/project");
        expect(JSON.parse(command.stdin)).toEqual({ mirrors: mirrorsByRegistry(caches), prewarmImages: ["docker.io/library/nginx:1.27"] });
        expect(command.triggers).toEqual([command.stdin]);
    });
});
