import { readFileSync } from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { parse as parseYaml } from "yaml";
import {
    clusterKeys,
    configKeys,
    defaultUpstreams,
    nearestKey,
    parseCachesArgs,
    parseSettings,
    plainStringKeys,
    SettingsInput,
} from "../../mirrors";
import { cidrAddress } from "../../core/network";
import type { CachesArgs } from "../../core/caches-types";
import { ConfigError } from "../../core/config-error";
import { config, upstream } from "./settings";

function problemsOf(values: Record<string, string>): string[] {
    try {
        parseSettings(values);
    } catch (error) {
        if (error instanceof ConfigError) return [...error.problems];
        throw error;
    }
    throw new Error("config was accepted");
}

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
            frontImage: "nginx:1",
            bindAddress: "0.0.0.0",
            mirrorHost: "10.5.0.1",
            anyRegistryPort: 5005,
            ttl: "0",
            keepCache: true,
            namePrefix: "registry-",
            credentials: {},
            mode: "auto",
            prewarm: [],
            allowFrom: [],
            tls: { enabled: false },
            pullCredentials: [],
            allowPlainHttpCredentials: false,
            prefetch: false,
            logs: { maxSize: "10m", maxFiles: 3 },
            cluster: {
                enabled: false,
                provisioner: "docker",
                name: "talos-default",
                cidr: "10.5.0.0/24",
                controlplanes: 1,
                workers: 1,
                talosctl: "talosctl",
                bootAssets: "_out",
                extraArgs: [],
            },
        });
    });

    test("mirrorHost is the cluster network gateway unless set, for either provisioner", () => {
        expect(parseSettings(config({ cluster: { provisioner: "qemu" } })).mirrorHost).toBe(
            "10.5.0.1",
        );
        expect(
            parseSettings(config({ cluster: { provisioner: "qemu", cidr: "192.168.77.0/26" } }))
                .mirrorHost,
        ).toBe("192.168.77.1");
        expect(
            parseSettings(config({ cluster: { provisioner: "docker", cidr: "10.9.0.0/24" } }))
                .mirrorHost,
        ).toBe("10.9.0.1");
        expect(
            parseSettings(config({ mirrorHost: "cache.lan", cluster: { provisioner: "qemu" } }))
                .mirrorHost,
        ).toBe("cache.lan");
    });

    test("config of other namespaces is none of our business", () => {
        expect(parseSettings({ "docker:host": "unix:///var/run/docker.sock" }).image).toBe(
            "registry:3",
        );
    });

    test("values arrive as the CLI stores them: strings, with JSON for booleans and structures", () => {
        const parsed = parseSettings(
            config({ keepCache: "false", ttl: "0", upstreams: [upstream("docker.io", 6000)] }),
        );
        expect(parsed.keepCache).toBe(false);
        expect(parsed.ttl).toBe("0");
        expect(parsed.upstreams).toEqual([upstream("docker.io", 6000)]);
    });
});

describe("validation", () => {
    // Each row: the config, then fragments the single error line must contain: the key, the value, what is valid.
    test.each<[string, Record<string, unknown>, string[]]>([
        [
            "misspelt top-level key",
            { upstream: [] },
            ["pullthrough:upstream: unknown key", 'did you mean "upstreams"'],
        ],
        [
            "wrong case",
            { KeepCache: "true" },
            ["pullthrough:KeepCache", 'did you mean "keepCache"'],
        ],
        [
            "a log size Docker's json-file cannot take",
            { logs: { maxSize: "10MB" } },
            ["pullthrough:logs.maxSize", '"10MB"', 'e.g. "10m"'],
        ],
        [
            "no log file at all",
            { logs: { maxFiles: 0 } },
            ["pullthrough:logs.maxFiles", "0", "an integer from 1 to 100"],
        ],
        [
            "misspelt logs key",
            { logs: { maxsize: "10m" } },
            ["pullthrough:logs.maxsize", 'did you mean "maxSize"'],
        ],
        [
            "unknown key far from all",
            { flavour: "x" },
            ["pullthrough:flavour: unknown key; valid keys are upstreams, image"],
        ],
        [
            "misspelt upstream key",
            { upstreams: [{ ...upstream("docker.io", 5000), remoteUrl: "x" }] },
            ["pullthrough:upstreams[0].remoteUrl", 'did you mean "remote"'],
        ],
        [
            "upstreams not JSON",
            { upstreams: "docker.io" },
            [
                "pullthrough:upstreams",
                '"docker.io"',
                ", which is not JSON",
                "list of {registry, remote, port, ttl?}",
            ],
        ],
        ["upstreams empty", { upstreams: [] }, ["pullthrough:upstreams: got []", "non-empty list"]],
        [
            "a shell command in kubernetesVersion, with prewarm talos",
            { prewarm: ["talos"], cluster: { kubernetesVersion: "1.34.0; rm -rf /" } },
            [
                'pullthrough:cluster.kubernetesVersion: got "1.34.0; rm -rf /"',
                'a Kubernetes release such as "1.34.0"',
            ],
        ],
        [
            "talosVersion that is no version",
            { cluster: { talosVersion: "latest" } },
            ['pullthrough:cluster.talosVersion: got "latest"', 'a Talos release such as "v1.11.0"'],
        ],
        [
            "a registry in capitals, which would be a second cache for docker.io",
            { upstreams: [upstream("docker.io", 5000), upstream("DOCKER.IO", 5001)] },
            ['pullthrough:upstreams[1].registry: got "DOCKER.IO"', "a lower-case registry host"],
        ],
        [
            "a remote on loopback, which in the cache's container is the cache itself",
            { upstreams: [upstream("docker.io", 5000, { remote: "http://127.0.0.1:5000" })] },
            [
                'pullthrough:upstreams[0].remote: got "http://127.0.0.1:5000"',
                "not on loopback",
                "http://172.17.0.1:5000",
            ],
        ],
        [
            "a remote on localhost",
            { upstreams: [upstream("docker.io", 5000, { remote: "http://localhost:5000" })] },
            ['pullthrough:upstreams[0].remote: got "http://localhost:5000"', "not on loopback"],
        ],
        [
            "a remote on IPv6 loopback",
            { upstreams: [upstream("docker.io", 5000, { remote: "http://[::1]:5000" })] },
            ['pullthrough:upstreams[0].remote: got "http://[::1]:5000"', "not on loopback"],
        ],
        [
            "a namePrefix longer than a volume name may be",
            { namePrefix: "p".repeat(250) },
            ["pullthrough:namePrefix: got", "up to 64 letters"],
        ],
        [
            "a cluster network of everything",
            { cluster: { cidr: "0.0.0.0/0" } },
            ['pullthrough:cluster.cidr: got "0.0.0.0/0"', "/8 or narrower"],
        ],
        [
            "__proto__ under credentials, which JSON keeps and object copies drop",
            { credentials: JSON.parse('{"__proto__": {"username": "me", "password": "x"}}') },
            ["pullthrough:credentials.__proto__: not a key this config takes"],
        ],
        [
            "a per-upstream ttl number other than 0",
            { upstreams: [upstream("docker.io", 5000, { ttl: 168 })] },
            ["pullthrough:upstreams[0].ttl: got 168", 'a Go duration such as "168h"'],
        ],
        [
            "upstreams an object",
            { upstreams: { registry: "docker.io" } },
            ["pullthrough:upstreams: got {", "non-empty list"],
        ],
        [
            "missing port",
            { upstreams: [{ registry: "docker.io", remote: "https://x.io" }] },
            ["pullthrough:upstreams[0].port: got nothing", "integer port from 1 to 65535"],
        ],
        [
            "port too large",
            {
                upstreams: [
                    upstream("a.io", 5000),
                    upstream("b.io", 5001),
                    upstream("c.io", 70000),
                ],
            },
            ["pullthrough:upstreams[2].port: got 70000", "1 to 65535"],
        ],
        [
            "port zero",
            { upstreams: [upstream("a.io", 0)] },
            ["pullthrough:upstreams[0].port: got 0"],
        ],
        [
            "port fractional",
            { upstreams: [upstream("a.io", 5000.5)] },
            ["pullthrough:upstreams[0].port: got 5000.5"],
        ],
        [
            "port as string",
            { upstreams: [upstream("a.io", "5000")] },
            ['pullthrough:upstreams[0].port: got "5000"'],
        ],
        [
            "registry with a scheme",
            { upstreams: [upstream("https://docker.io", 5000, { remote: "https://example.org" })] },
            ['pullthrough:upstreams[0].registry: got "https://docker.io"', "registry host name"],
        ],
        [
            "registry with a path",
            { upstreams: [upstream("docker.io/library", 5000, { remote: "https://example.org" })] },
            ['pullthrough:upstreams[0].registry: got "docker.io/library"'],
        ],
        [
            "registry with a bad port",
            { upstreams: [upstream("reg.local:99999", 5000, { remote: "https://example.org" })] },
            ['pullthrough:upstreams[0].registry: got "reg.local:99999"'],
        ],
        [
            "remote without scheme",
            { upstreams: [{ ...upstream("docker.io", 5000), remote: "registry-1.docker.io" }] },
            ['pullthrough:upstreams[0].remote: got "registry-1.docker.io"', "absolute http(s) URL"],
        ],
        [
            "remote with a path",
            {
                upstreams: [
                    { ...upstream("docker.io", 5000), remote: "https://registry-1.docker.io/v2" },
                ],
            },
            ["pullthrough:upstreams[0].remote", "no path"],
        ],
        [
            "remote of another scheme",
            { upstreams: [{ ...upstream("docker.io", 5000), remote: "ftp://example.org" }] },
            ['pullthrough:upstreams[0].remote: got "ftp://example.org"'],
        ],
        [
            "remote with a login",
            {
                upstreams: [
                    { ...upstream("docker.io", 5000), remote: "https://me:pw@example.org" },
                ],
            },
            ["pullthrough:upstreams[0].remote", "credentials"],
        ],
        [
            "duplicate registry",
            { upstreams: [upstream("a.io", 5000), upstream("a.io", 5001)] },
            ['pullthrough:upstreams[1].registry: got "a.io"', "upstreams[0] has it"],
        ],
        [
            "duplicate port",
            { upstreams: [upstream("a.io", 5000), upstream("b.io", 5001), upstream("c.io", 5001)] },
            ["pullthrough:upstreams[2].port: got 5001", "upstreams[1] has it"],
        ],
        [
            "bad per-upstream ttl",
            { upstreams: [upstream("a.io", 5000, { ttl: "7d" })] },
            ['pullthrough:upstreams[0].ttl: got "7d"', "Go duration"],
        ],
        ["bad ttl", { ttl: "1 week" }, ['pullthrough:ttl: got "1 week"', "Go duration"]],
        ["negative ttl", { ttl: "-1h" }, ['pullthrough:ttl: got "-1h"']],
        [
            "image with spaces",
            { image: "registry 3" },
            ['pullthrough:image: got "registry 3"', "Docker image reference"],
        ],
        ["image in upper case", { image: "Registry:3" }, ['pullthrough:image: got "Registry:3"']],
        [
            "image with an upper-case namespace (the tools could not parse it)",
            { image: "MyOrg/registry:3" },
            ['pullthrough:image: got "MyOrg/registry:3"', "Docker image reference"],
        ],
        [
            "bindAddress a host name",
            { bindAddress: "localhost" },
            ['pullthrough:bindAddress: got "localhost"', "IPv4 address"],
        ],
        [
            "bindAddress out of range",
            { bindAddress: "127.0.0.256" },
            ['pullthrough:bindAddress: got "127.0.0.256"'],
        ],
        [
            "mirrorHost with a scheme",
            { mirrorHost: "http://10.5.0.1" },
            ['pullthrough:mirrorHost: got "http://10.5.0.1"', "host name or IPv4"],
        ],
        [
            "mirrorHost a broken address",
            { mirrorHost: "10.5.0.300" },
            ['pullthrough:mirrorHost: got "10.5.0.300"'],
        ],
        [
            "keepCache a word",
            { keepCache: "yes" },
            ['pullthrough:keepCache: got "yes"', "true or false"],
        ],
        [
            "keepCache a number",
            { keepCache: "1" },
            ["pullthrough:keepCache: got 1", "true or false"],
        ],
        [
            "namePrefix with a slash",
            { namePrefix: "cache/" },
            ['pullthrough:namePrefix: got "cache/"'],
        ],
        [
            "credentials for an unconfigured registry",
            {
                credentials: { "quay.io": { username: "u", password: "p" } },
                upstreams: [upstream("docker.io", 5000)],
            },
            [
                'pullthrough:credentials["quay.io"]: got [secret]',
                "credentials only for configured registries (docker.io)",
            ],
        ],
        [
            "credentials missing a password",
            { credentials: { "docker.io": { username: "u" } } },
            ['pullthrough:credentials["docker.io"].password: got nothing', "non-empty string"],
        ],
        [
            "cluster not an object",
            { cluster: "yes" },
            ['pullthrough:cluster: got "yes"', "which is not JSON", "cluster settings"],
        ],
        [
            "misspelt cluster key",
            { cluster: { enable: true } },
            ["pullthrough:cluster.enable: unknown key", 'did you mean "enabled"'],
        ],
        [
            "unknown provisioner",
            { cluster: { provisioner: "kvm" } },
            ['pullthrough:cluster.provisioner: got "kvm"', '"docker" or "qemu"'],
        ],
        [
            "a /33",
            { cluster: { cidr: "10.5.0.0/33" } },
            ['pullthrough:cluster.cidr: got "10.5.0.0/33"', "CIDR"],
        ],
        [
            "a network too small for the nodes",
            { cluster: { cidr: "10.5.0.0/30", workers: 2 } },
            [
                'pullthrough:cluster.cidr: got "10.5.0.0/30"',
                "room for a gateway and 3 nodes (/29 or wider)",
            ],
        ],
        [
            "zero control planes",
            { cluster: { controlplanes: 0 } },
            ["pullthrough:cluster.controlplanes: got 0", "at least 1"],
        ],
        ["negative workers", { cluster: { workers: -1 } }, ["pullthrough:cluster.workers: got -1"]],
        [
            "cluster name with capitals",
            { cluster: { name: "Talos" } },
            ['pullthrough:cluster.name: got "Talos"'],
        ],
        [
            "extraArgs a string",
            { cluster: { extraArgs: "--memory 4096" } },
            ['pullthrough:cluster.extraArgs: got "--memory 4096"', "list of strings"],
        ],
        [
            "unknown mode",
            { mode: "online" },
            ['pullthrough:mode: got "online"', '"auto", "proxy" or "offline"'],
        ],
        [
            "prewarm not a list",
            { prewarm: "talos" },
            [
                'pullthrough:prewarm: got "talos"',
                "which is not JSON",
                'image references and/or "talos"',
            ],
        ],
        [
            "prewarm a bad reference",
            { prewarm: ["talos", "Nginx:latest"] },
            ['pullthrough:prewarm[1]: got "Nginx:latest"', "an image reference"],
        ],
        [
            "prewarm an image without a cache",
            {
                prewarm: ["quay.io/cilium/cilium:v1.16.0"],
                upstreams: [upstream("docker.io", 5000)],
            },
            [
                'pullthrough:prewarm[0]: got "quay.io/cilium/cilium:v1.16.0"',
                "quay.io has none; caches: docker.io",
            ],
        ],
        [
            "credentials with a misspelt key",
            { credentials: { "docker.io": { username: "u", passwd: "p", password: "p" } } },
            ['pullthrough:credentials["docker.io"].passwd: unknown key', 'did you mean "password"'],
        ],
    ])("%s", (_name, values, fragments) => {
        const problems = problemsOf(config(values));
        expect(problems).toHaveLength(1);
        for (const fragment of fragments) expect(problems[0]).toContain(fragment);
    });

    test("every problem is reported at once", () => {
        const problems = problemsOf(
            config({ ttl: "forever", bindAddress: "any", upstreams: [upstream("a.io", -1)] }),
        );
        expect(problems.map((problem) => problem.split(":").slice(0, 2).join(":")).sort()).toEqual(
            ["pullthrough:bindAddress", "pullthrough:ttl", "pullthrough:upstreams[0].port"].sort(),
        );
    });

    test("a credential value never appears in an error", () => {
        const problems = problemsOf(
            config({ credentials: { "docker.io": { username: "alice", password: 12345678 } } }),
        );
        expect(problems).toEqual([
            expect.stringContaining('pullthrough:credentials["docker.io"].password: got [secret]'),
        ]);
        expect(problems.join("\n")).not.toContain("12345678");
        const notJson = problemsOf({ "pullthrough:credentials": "hunter2" });
        expect(notJson.join("\n")).not.toContain("hunter2");
    });

    test("the error message lists every problem under one heading", () => {
        expect(() => parseSettings(config({ ttl: "soon" }))).toThrow(
            /^Invalid pullthrough config:\n {2}- pullthrough:ttl: got "soon"/,
        );
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

    test('an unquoted per-upstream ttl: 0 means never, as "0" does', () => {
        const [first] = parseSettings(
            config({ upstreams: [upstream("docker.io", 5000, { ttl: 0 })] }),
        ).upstreams;
        expect(first.ttl).toBe("0");
    });

    test.each([["0"], ["168h"], ["1h30m"], ["1.5s"], ["500ms"]])(
        "ttl %s is a Go duration",
        (ttl) => {
            expect(parseSettings(config({ ttl })).ttl).toBe(ttl);
        },
    );

    test.each([["localhost"], ["registry.local:5000"], ["k8s.gcr.io"], ["10.0.0.5:443"]])(
        "registry %s is accepted",
        (registry) => {
            expect(
                parseSettings(
                    config({
                        upstreams: [upstream(registry, 5000, { remote: "https://mirror.example" })],
                    }),
                ).upstreams[0].registry,
            ).toBe(registry);
        },
    );

    test("nearestKey suggests only keys within typo distance", () => {
        expect(nearestKey("bindAdress", ["bindAddress", "image"])).toBe("bindAddress");
        expect(nearestKey("colour", ["bindAddress", "image"])).toBeUndefined();
    });
});

describe("Pulumi.yaml", () => {
    const declared = (
        parseYaml(readFileSync(path.join(__dirname, "../../Pulumi.yaml"), "utf8")) as {
            config: Record<string, { type: string; secret?: boolean; description?: string }>;
        }
    ).config;

    test("declares exactly the keys the schema takes, in the same order", () => {
        expect(Object.keys(declared)).toEqual(configKeys);
    });

    test("describes cluster with exactly the schema's keys", () => {
        const listed = /\{([^}]*)\}/.exec(declared.cluster.description!)![1];
        expect(listed.split(", ")).toEqual(clusterKeys);
    });

    test("declares a plain string type exactly where the program reads a plain string", () => {
        const strings = Object.keys(declared).filter((key) => declared[key].type === "string");
        expect(strings).toEqual(configKeys.filter((key) => plainStringKeys.has(key)));
    });
});

describe("the cluster network's arithmetic, for any IPv4 network", () => {
    const toNumber = (address: string) =>
        address.split(".").reduce((value, octet) => value * 256 + Number(octet), 0);
    const network = fc
        .tuple(fc.ipV4(), fc.integer({ min: 8, max: 30 }))
        .map(([address, prefix]) => ({ address, prefix, size: 2 ** (32 - prefix) }));

    test("the address at an offset lies in the network, that far from its start", () => {
        fc.assert(
            fc.property(
                network.chain((net) =>
                    fc.record({ net: fc.constant(net), offset: fc.nat(net.size - 1) }),
                ),
                ({ net, offset }) => {
                    const start = toNumber(net.address) - (toNumber(net.address) % net.size);
                    const address = cidrAddress(`${net.address}/${net.prefix}`, offset);
                    expect(address).toMatch(/^(\d{1,3}\.){3}\d{1,3}$/);
                    expect(toNumber(address) - start).toBe(offset);
                },
            ),
        );
    });

    test("a network takes as many nodes as leave room for its gateway and broadcast address", () => {
        fc.assert(
            fc.property(
                fc.integer({ min: 24, max: 30 }),
                fc.integer({ min: 1, max: 5 }),
                fc.integer({ min: 0, max: 80 }),
                (prefix, controlplanes, workers) => {
                    const values = {
                        cluster: { cidr: `10.7.0.0/${prefix}`, controlplanes, workers },
                    };
                    const fits = controlplanes + workers + 3 <= 2 ** (32 - prefix);
                    if (fits) expect(() => parseSettings(config(values))).not.toThrow();
                    else
                        expect(() => parseSettings(config(values))).toThrow(
                            "pullthrough:cluster.cidr",
                        );
                },
            ),
        );
    });
});

describe("the Caches component's arguments", () => {
    /** True only when each type is assignable to the other. */
    type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

    test("its published type is the schema's input, key for key", () => {
        const same: Same<CachesArgs, SettingsInput> = true;
        expect(same).toBe(true);
    });

    test("a bad argument is named by its path into the arguments", () => {
        expect(() =>
            parseCachesArgs({
                upstreams: [
                    { registry: "docker.io", remote: "https://registry-1.docker.io", port: 99999 },
                ],
                logs: { maxsize: "1m" } as never,
            }),
        ).toThrow(
            [
                "Invalid Caches arguments:",
                "  - args.upstreams[0].port: got 99999; expected an integer port from 1 to 65535",
                '  - args.logs.maxsize: unknown key; did you mean "maxSize"? valid keys are maxSize, maxFiles',
            ].join("\n"),
        );
    });

    test("settings already parsed parse again to the same", () => {
        const settings = parseSettings(
            config({
                upstreams: [upstream("ghcr.io", 5004)],
                prewarm: ["ghcr.io/a/b:1"],
                maxSize: "1GiB",
            }),
        );
        expect(parseCachesArgs(settings)).toEqual(settings);
    });
});
