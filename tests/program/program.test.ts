/** The real index.ts under Pulumi mocks: what it declares, with which inputs and options. */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { hostPlatform } from "../../core/images";
import { DeclaredResource, ProgramRun, runProgram } from "../../harness/program";
import { talosctlStandIn } from "../../harness/talosctl";
import { commandType } from "../../harness/command-provider-stand-in";

const volumeType = "docker:index/volume:Volume";
const containerType = "docker:index/container:Container";
const networkType = "docker:index/network:Network";

const cacheSupervisorScript = readFileSync(
    path.join(__dirname, "../../container/cache-supervisor.sh"),
    "utf8",
);

const ofType = (resources: DeclaredResource[], type: string) =>
    resources.filter((resource) => resource.type === type);
const byName = (resources: DeclaredResource[], type: string, name: string) => {
    const found = resources.find((resource) => resource.type === type && resource.name === name);
    if (!found) throw new Error(`no ${type} named ${name}`);
    return found;
};

/** The names of what a resource's `dependsOn` lists, sorted. */
const dependencies = (options: DeclaredResource["options"]) =>
    ([options.dependsOn].flat() as { __name?: string }[]).map((resource) => resource.__name).sort();

describe("with no config", () => {
    let run: Promise<ProgramRun>;
    beforeAll(() => {
        run = runProgram({});
    });

    test("declares one volume and one registry container per default upstream, one front with its ledger's volume and one network", async () => {
        const { resources } = await run;
        const names = [
            "docker.io",
            "registry.k8s.io",
            "quay.io",
            "gcr.io",
            "ghcr.io",
            "factory.talos.dev",
        ].map((r) => `registry-${r}`);
        expect(
            ofType(resources, volumeType)
                .map((r) => r.name)
                .sort(),
        ).toEqual([...names, "registry-ledger"].sort());
        expect(
            ofType(resources, containerType)
                .map((r) => r.name)
                .sort(),
        ).toEqual([...names, "registry-front"].sort());
        expect(ofType(resources, networkType).map((r) => r.name)).toEqual(["registry-net"]);
        expect(
            resources
                .filter((r) => ![volumeType, containerType, networkType].includes(r.type))
                .map((r) => r.type),
        ).toEqual(["pulumi:pulumi:Stack", "pullthrough:index:Caches"]);
    });

    test("every resource is a child of one Caches component, aliased to where it sat before", async () => {
        const { resources } = await run;
        const component = byName(resources, "pullthrough:index:Caches", "pullthrough");
        expect(component.urn).toBe(
            "urn:pulumi:dev::pullthrough::pullthrough:index:Caches::pullthrough",
        );
        expect(component.parent).toBe(
            "urn:pulumi:dev::pullthrough::pulumi:pulumi:Stack::pullthrough-dev",
        );
        for (const resource of resources.filter((r) => r.custom)) {
            expect(resource.parent).toBe(component.urn);
            expect(resource.urn).toBe(
                `urn:pulumi:dev::pullthrough::pullthrough:index:Caches$${resource.type}::${resource.name}`,
            );
            expect(resource.aliases).toEqual([
                `urn:pulumi:dev::pullthrough::${resource.type}::${resource.name}`,
            ]);
        }
    });

    test("the docker.io container has the full cache definition", async () => {
        const { resources, pulumi } = await run;
        const container = byName(resources, containerType, "registry-docker.io");
        expect(pulumi.runtime.isRpcSecret(container.inputs.envs)).toBe(false);
        expect(container.inputs).toEqual({
            name: "registry-docker.io",
            image: "registry:3",
            entrypoints: ["/bin/sh", "-c", cacheSupervisorScript],
            envs: [
                "PULLTHROUGH_MODE=auto",
                "PULLTHROUGH_REMOTE=https://registry-1.docker.io",
                "REGISTRY_PROXY_TTL=0",
                "REGISTRY_LOG_LEVEL=info",
                "REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR=none",
            ],
            volumes: [{ volumeName: "registry-docker.io", containerPath: "/var/lib/registry" }],
            networksAdvanced: [{ name: "registry-net" }],
            restart: "always",
            healthcheck: {
                tests: [
                    "CMD-SHELL",
                    "wget -q -O /dev/null http://127.0.0.1:5000/v2/ && cat /tmp/pullthrough-serving && { [ ! -s /tmp/pullthrough-disk-full ] || { cat /tmp/pullthrough-disk-full; false; }; }",
                ],
                interval: "3s",
                timeout: "3s",
                retries: 3,
                startPeriod: "5s",
            },
            wait: true,
            waitTimeout: 90,
            logDriver: "json-file",
            logOpts: { "max-size": "10m", "max-file": "3" },
            labels: [
                { label: "pullthrough.project", value: "pullthrough" },
                { label: "pullthrough.stack", value: "dev" },
                { label: "pullthrough.registry", value: "docker.io" },
                { label: "pullthrough.remote", value: "https://registry-1.docker.io" },
                { label: "pullthrough.mode", value: "auto" },
            ],
        });
    });

    test("volumes carry only their identity, are kept on destroy, and each container waits for its own volume", async () => {
        const { resources } = await run;
        const volume = byName(resources, volumeType, "registry-ghcr.io");
        expect(volume.inputs).toEqual({
            name: "registry-ghcr.io",
            labels: [
                { label: "pullthrough.project", value: "pullthrough" },
                { label: "pullthrough.stack", value: "dev" },
                { label: "pullthrough.registry", value: "ghcr.io" },
            ],
        });
        expect(volume.options.retainOnDelete).toBe(true);
        expect(volume.options.ignoreChanges).toEqual(["labels"]);
        const container = byName(resources, containerType, "registry-ghcr.io");
        expect(container.options.deleteBeforeReplace).toBe(true);
        // The provider only records a healthcheck change; a replacement applies it.
        expect(container.options.replaceOnChanges).toEqual(["healthcheck"]);
        const dependsOn = [container.options.dependsOn].flat() as { __name?: string }[];
        expect(dependsOn.map((resource) => resource.__name)).toEqual([
            "registry-ghcr.io",
            "registry-net",
        ]);
    });

    test("the front publishes every cache port, keeps its ledger on a volume kept like the caches', waits for every registry, and is replaced, never updated", async () => {
        const { resources } = await run;
        const front = byName(resources, containerType, "registry-front");
        expect(front.inputs.image).toBe("nginx:1");
        expect(front.inputs.ports).toEqual(
            // The caches' ports, then the one port for every registry.
            [5000, 5001, 5002, 5003, 5004, 5006, 5005].map((port) => ({
                internal: port,
                external: port,
                ip: "0.0.0.0",
                protocol: "tcp",
            })),
        );
        expect(front.inputs.networksAdvanced).toEqual([{ name: "registry-net" }]);
        expect(front.inputs.uploads).toEqual([
            {
                file: "/etc/nginx/conf.d/default.conf",
                content: expect.stringContaining("proxy_cache_lock on;"),
            },
            {
                file: "/etc/nginx/pullthrough-ledger.awk",
                content: expect.stringContaining("function flush("),
            },
            { file: "/etc/nginx/pullthrough/api-base.json", content: "{}" },
        ]);
        expect(front.inputs.volumes).toEqual([
            { volumeName: "registry-ledger", containerPath: "/var/lib/pullthrough" },
        ]);
        expect(front.inputs.logOpts).toEqual({ "max-size": "10m", "max-file": "3" });
        const ledger = byName(resources, volumeType, "registry-ledger");
        expect(ledger.options.retainOnDelete).toBe(true);
        expect(front.options).toMatchObject({
            deleteBeforeReplace: true,
            replaceOnChanges: ["healthcheck"],
        });
        const dependsOn = [front.options.dependsOn].flat() as { __name?: string }[];
        expect(dependsOn.map((resource) => resource.__name).sort()).toEqual(
            ofType(resources, volumeType)
                .map((volume) => volume.name)
                .sort(),
        );
        const network = byName(resources, networkType, "registry-net");
        expect(network.options.deleteBeforeReplace).toBe(true);
    });

    test("the one port for every registry, in each client's form", async () => {
        const { outputs } = await run;
        expect(outputs.anyRegistry).toEqual({
            port: 5005,
            endpoint: "http://10.5.0.1:5005",
            hostEndpoint: "http://127.0.0.1:5005",
        });
        expect(outputs.anyRegistryMirrorFlags).toEqual([
            "--registry-mirror",
            "*=http://10.5.0.1:5005",
        ]);
        expect(outputs.containerdDefaultHosts).toBe(
            '[host."http://10.5.0.1:5005"]\n  capabilities = ["pull", "resolve"]\n',
        );
        expect(outputs.talosAnyRegistryPatch).toBe(
            'machine:\n  registries:\n    mirrors:\n      "*":\n        endpoints:\n          - http://10.5.0.1:5005\n',
        );
    });

    test("outputs tell clients where every cache is", async () => {
        const { outputs } = await run;
        expect(Object.keys(outputs).sort()).toEqual([
            "anyRegistry",
            "anyRegistryMirrorFlags",
            "caCertificate",
            "cluster",
            "containerdDefaultHosts",
            "containerdHosts",
            "dockerCaInstall",
            "dockerHost",
            "mirrors",
            "prewarmImages",
            "registryMirrorFlags",
            "talosAnyRegistryDocuments",
            "talosAnyRegistryPatch",
            "talosConfigPatch",
            "talosMirrorDocuments",
            "talosctlCreate",
        ]);
        expect(outputs.cluster).toBeNull();
        expect(outputs.dockerHost).toBeNull();
        expect((outputs.mirrors as any)["quay.io"]).toEqual({
            remote: "https://quay.io",
            port: 5002,
            mode: "auto",
            endpoint: "http://10.5.0.1:5002",
            hostEndpoint: "http://127.0.0.1:5002",
            container: "registry-quay.io",
            volume: "registry-quay.io",
            network: "registry-net",
        });
        expect((outputs.registryMirrorFlags as string[]).slice(0, 4)).toEqual([
            "--registry-mirror",
            "docker.io=http://10.5.0.1:5000",
            "--registry-mirror",
            "registry.k8s.io=http://10.5.0.1:5001",
        ]);
    });
});

describe("with a custom config", () => {
    const upstreams = Array.from({ length: 7 }, (_, index) => ({
        registry: `registry${index}.example.org`,
        remote: `https://upstream${index}.example.org`,
        port: 7000 + index * 2,
    }));
    let run: Promise<ProgramRun>;
    beforeAll(() => {
        run = runProgram(
            {
                "pullthrough:upstreams": JSON.stringify(upstreams),
                "pullthrough:image": "registry:2",
                "pullthrough:bindAddress": "127.0.0.1",
                "pullthrough:mirrorHost": "10.5.0.1",
                "pullthrough:ttl": "72h",
                "pullthrough:keepCache": "false",
                "pullthrough:namePrefix": "ci-",
                "pullthrough:credentials": JSON.stringify({
                    "registry3.example.org": { username: "alice", password: "s3cret-pw" },
                }),
            },
            { secretKeys: ["pullthrough:credentials"] },
        );
    });

    test("seven upstreams, seven volumes, seven registries, the front on the configured ports", async () => {
        const { resources } = await run;
        const registries = ofType(resources, containerType).filter((c) => c.name !== "ci-front");
        expect(ofType(resources, volumeType)).toHaveLength(8);
        expect(registries.map((c) => [c.name, c.inputs.image]).sort()).toEqual(
            upstreams.map((u) => [`ci-${u.registry}`, "registry:2"]).sort(),
        );
        expect(byName(resources, containerType, "ci-front").inputs.ports).toEqual(
            [...upstreams.map((u) => u.port), 5005].map((port) => ({
                internal: port,
                external: port,
                ip: "127.0.0.1",
                protocol: "tcp",
            })),
        );
    });

    test("keepCache false lets destroy remove the volumes", async () => {
        const { resources } = await run;
        expect(
            ofType(resources, volumeType).map((volume) => volume.options.retainOnDelete),
        ).toEqual(Array(8).fill(false));
    });

    test("credentials reach only their own container, only as a secret, and never its environment", async () => {
        const { resources, pulumi } = await run;
        for (const container of ofType(resources, containerType)) {
            expect(JSON.stringify(container.inputs.envs ?? [])).not.toMatch(/alice|s3cret-pw/);
            if (container.name === "ci-front") continue;
            if (container.name === "ci-registry3.example.org") {
                expect(pulumi.runtime.isRpcSecret(container.inputs.uploads)).toBe(true);
                expect(pulumi.runtime.unwrapRpcSecret(container.inputs.uploads)).toEqual([
                    {
                        file: "/etc/pullthrough-credentials.yml",
                        content: 'proxy:\n  username: "alice"\n  password: "s3cret-pw"\n',
                    },
                ]);
            } else {
                expect(container.inputs.uploads).toBeUndefined();
            }
        }
    });

    test("no output is secret or holds a credential, so CI can read them all", async () => {
        const { outputs, exports, pulumi } = await run;
        // The exports as the program made them: Outputs, which would carry a secret mark.
        for (const value of Object.values(exports))
            expect(await pulumi.isSecret(pulumi.output(value))).toBe(false);
        expect(JSON.stringify(outputs)).not.toMatch(/alice|s3cret-pw/);
        expect((outputs.mirrors as any)["registry3.example.org"].endpoint).toBe(
            "http://10.5.0.1:7006",
        );
        expect((outputs.mirrors as any)["registry3.example.org"].hostEndpoint).toBe(
            "http://127.0.0.1:7006",
        );
    });
});

describe("with invalid config", () => {
    test("the program stops with the key, value and what is valid, and declares nothing", async () => {
        const declared: string[] = [];
        const run = runProgram(
            {
                "pullthrough:upstreams": JSON.stringify([
                    { registry: "docker.io", remote: "https://registry-1.docker.io", port: 99999 },
                ]),
            },
            {
                createResource: async (args) => {
                    declared.push(args.type);
                    return { id: "x", state: args.inputs };
                },
            },
        );
        await expect(run).rejects.toThrow(
            /pullthrough:upstreams\[0\]\.port: got 99999; expected an integer port from 1 to 65535/,
        );
        expect(declared.filter((type) => type !== "pulumi:pulumi:Stack")).toEqual([]);
    });
});

describe("host checks, before anything is declared", () => {
    const declaring = () => {
        const declared: string[] = [];
        const createResource = async (args: { type: string; inputs: any }) => {
            declared.push(args.type);
            return { id: "x", state: args.inputs };
        };
        return { declared, createResource };
    };
    const ownResources = (declared: string[]) =>
        declared.filter((type) => type !== "pulumi:pulumi:Stack");

    test("a bindAddress this host does not have", async () => {
        const { declared, createResource } = declaring();
        const run = runProgram({ "pullthrough:bindAddress": "10.99.99.99" }, { createResource });
        await expect(run).rejects.toThrow(
            /pullthrough:bindAddress: got "10\.99\.99\.99"; expected an address of this host \("0\.0\.0\.0" for all of them, or one of 127\.0\.0\.1/,
        );
        expect(ownResources(declared)).toEqual([]);
    });

    test("a cache port another process holds names the port's key and the holder", async () => {
        const holder = createServer();
        await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
        const port = (holder.address() as AddressInfo).port;
        try {
            const { declared, createResource } = declaring();
            const upstreams = [
                { registry: "docker.io", remote: "https://registry-1.docker.io", port: 5000 },
                { registry: "ghcr.io", remote: "https://ghcr.io", port },
            ];
            const run = runProgram(
                {
                    "pullthrough:bindAddress": "127.0.0.1",
                    "pullthrough:upstreams": JSON.stringify(upstreams),
                },
                { createResource },
            );
            await expect(run).rejects.toThrow(
                `pullthrough:upstreams[1].port: got ${port}; expected a port free on 127.0.0.1 (node (pid ${process.pid}) holds it)`,
            );
            expect(ownResources(declared)).toEqual([]);
        } finally {
            holder.close();
        }
    });
});

describe("with the cluster enabled", () => {
    const talosctl = talosctlStandIn("v1.12.1");
    let run: Promise<ProgramRun>;
    beforeAll(() => {
        run = runProgram({
            "pullthrough:cluster": JSON.stringify({
                enabled: true,
                provisioner: "qemu",
                name: "lab",
                state: "/srv/talos",
                talosctl,
                workers: 2,
            }),
        });
    });

    test("one Command creates the cluster with every cache as a mirror, after the front", async () => {
        const { resources } = await run;
        const [command] = ofType(resources, commandType);
        expect(ofType(resources, commandType)).toHaveLength(1);
        const mirrors = [
            "docker.io",
            "registry.k8s.io",
            "quay.io",
            "gcr.io",
            "ghcr.io",
            "factory.talos.dev",
        ].map(
            (registry, i) =>
                `--registry-mirror ${registry}=http://10.5.0.1:${[5000, 5001, 5002, 5003, 5004, 5006][i]}`,
        );
        expect(command.inputs.create).toBe(
            `${talosctl} cluster create qemu --name lab --state /srv/talos --cidr 10.5.0.0/24 --controlplanes 1 --workers 2 ${mirrors.join(" ")}`,
        );
        expect(command.inputs.delete).toBe(
            `${talosctl} cluster destroy --name lab --state /srv/talos`,
        );
        expect(command.inputs.triggers).toEqual([command.inputs.create]);
        expect(command.inputs.logging).toBe("stdoutAndStderr");
        expect(command.options.deleteBeforeReplace).toBe(true);
        const dependsOn = [command.options.dependsOn].flat() as {
            __name?: string;
            __pulumiType?: string;
        }[];
        expect(
            dependsOn.map((resource) => [resource.__pulumiType, resource.__name]).sort(),
        ).toEqual([[containerType, "registry-front"]]);
    });

    test("the cluster and the caches agree on host and ports; outputs describe the cluster", async () => {
        const { outputs } = await run;
        const mirrors = outputs.mirrors as Record<string, { endpoint: string }>;
        for (const [registry, { endpoint }] of Object.entries(mirrors)) {
            expect(outputs.talosctlCreate as string).toContain(
                `--registry-mirror ${registry}=${endpoint}`,
            );
            expect(endpoint).toMatch(/^http:\/\/10\.5\.0\.1:/);
        }
        expect(outputs.cluster).toEqual({
            name: "lab",
            provisioner: "qemu",
            talosctlVersion: "v1.12.1",
            endpointHost: "10.5.0.2",
            mirrorConfig: "talosMirrorDocuments",
        });
    });
});

describe("cluster settings the detected talosctl lacks", () => {
    test("stop the program before anything is declared", async () => {
        const talosctl = talosctlStandIn("v1.12.0");
        const run = runProgram({
            "pullthrough:cluster": JSON.stringify({ enabled: true, controlplanes: 3, talosctl }),
        });
        await expect(run).rejects.toThrow(
            /pullthrough:cluster\.controlplanes: got 3; expected 1: talosctl v1\.12\.0 "cluster create docker" always makes one control plane/,
        );
    });

    test("a missing talosctl is a clear error", async () => {
        const run = runProgram({
            "pullthrough:cluster": JSON.stringify({
                enabled: true,
                talosctl: "/nonexistent/talosctl",
            }),
        });
        await expect(run).rejects.toThrow(
            "pullthrough:cluster.talosctl: talosctl (/nonexistent/talosctl) not found: install talosctl, or set cluster.talosctl to its path",
        );
    });
});

describe("QEMU on talosctl 1.7–1.11, which boots from a kernel and initramfs on this host", () => {
    const talosctl = talosctlStandIn("v1.11.0");
    const arch = hostPlatform().architecture;
    const config = (bootAssets?: string) => ({
        "pullthrough:cluster": JSON.stringify({
            enabled: true,
            provisioner: "qemu",
            talosVersion: "v1.11.2",
            talosctl,
            bootAssets,
        }),
    });

    test("missing boot assets stop the program before anything is declared, naming files and downloads", async () => {
        const declared: string[] = [];
        const run = runProgram(config(), {
            createResource: async (args) => {
                declared.push(args.type);
                return { id: "x", state: args.inputs };
            },
        });
        const projectDir = path.resolve(__dirname, "../..");
        for (const file of [`vmlinuz-${arch}`, `initramfs-${arch}.xz`]) {
            await expect(run).rejects.toThrow(
                `pullthrough:cluster.bootAssets: ${projectDir}/_out/${file} does not exist; talosctl 1.7–1.11 boots QEMU nodes from it`,
            );
            await expect(run).rejects.toThrow(
                `Download https://github.com/siderolabs/talos/releases/download/v1.11.2/${file} into that folder`,
            );
        }
        expect(declared.filter((type) => type !== "pulumi:pulumi:Stack")).toEqual([]);
    });

    test("with the assets in cluster.bootAssets, the create names them and talosctl boots from any folder", async () => {
        const assets = mkdtempSync(path.join(tmpdir(), "pt-boot-assets-"));
        const state = mkdtempSync(path.join(tmpdir(), "pt-talos-state-"));
        try {
            for (const file of [`vmlinuz-${arch}`, `initramfs-${arch}.xz`])
                writeFileSync(path.join(assets, file), "");
            const { resources } = await runProgram(config(assets));
            const [command] = ofType(resources, "command:local:Command");
            expect(command.inputs.create).toContain(
                `--vmlinuz-path ${assets}/vmlinuz-${arch} --initrd-path ${assets}/initramfs-${arch}.xz`,
            );
            // The stand-in, like talosctl 1.11, opens the files; run it away from the project.
            const create = `${command.inputs.create} --state ${state}`;
            expect(() => execFileSync("/bin/sh", ["-c", create], { cwd: state })).not.toThrow();
        } finally {
            rmSync(assets, { recursive: true, force: true });
            rmSync(state, { recursive: true, force: true });
        }
    });
});

test("up runs talosctl once for its version and once for its image list, however many use them", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "pt-talosctl-calls-"));
    const calls = path.join(dir, "calls");
    const talosctl = path.join(dir, "talosctl");
    const standIn = talosctlStandIn("v1.12.1", { images: ["registry.k8s.io/pause:3.10"] });
    writeFileSync(talosctl, `#!/bin/sh\necho "$*" >> '${calls}'\nexec '${standIn}' "$@"\n`);
    chmodSync(talosctl, 0o755);
    try {
        await runProgram({
            "pullthrough:prewarm": JSON.stringify(["talos"]),
            "pullthrough:cluster": JSON.stringify({ enabled: true, talosctl }),
        });
        expect(readFileSync(calls, "utf8").trim().split("\n")).toEqual([
            "version --client --short",
            "image default",
        ]);
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
});

describe("with prewarm and the cluster enabled", () => {
    const talosImages = [
        "registry.k8s.io/kube-apiserver:v1.34.1",
        "ghcr.io/siderolabs/kubelet:v1.34.1",
    ];
    const talosctl = talosctlStandIn("v1.12.1", { images: talosImages });
    let run: Promise<ProgramRun>;
    beforeAll(() => {
        run = runProgram({
            "pullthrough:prewarm": JSON.stringify(["nginx:1.27", "talos"]),
            "pullthrough:cluster": JSON.stringify({
                enabled: true,
                talosctl,
                kubernetesVersion: "1.34.2",
            }),
        });
    });

    test("the Talos set comes from `talosctl image default`, retagged for the configured Kubernetes version, with the docker node image", async () => {
        const { outputs } = await run;
        expect(outputs.prewarmImages).toEqual([
            "docker.io/library/nginx:1.27",
            "registry.k8s.io/kube-apiserver:v1.34.2",
            "ghcr.io/siderolabs/kubelet:v1.34.2",
            "ghcr.io/siderolabs/talos:v1.12.1",
        ]);
    });

    test("caches, then prewarm, then the cluster: the prewarm Command waits for every container, the cluster for the prewarm", async () => {
        const { resources } = await run;
        const prewarm = byName(resources, commandType, "prewarm-caches");
        const cluster = byName(resources, commandType, "talos-cluster");
        expect(dependencies(prewarm.options)).toEqual(["registry-front"]);
        expect(dependencies(cluster.options)).toEqual(["prewarm-caches", "registry-front"]);
        expect(prewarm.inputs.create).toBe("npm run --silent prewarm -- --outputs -");
        expect(JSON.parse(prewarm.inputs.stdin).prewarmImages).toEqual(
            (await run).outputs.prewarmImages,
        );
    });
});

test("maxSize: a prune Command to the budget runs after prewarm, and the cluster waits for it", async () => {
    const { resources } = await runProgram({
        "pullthrough:prewarm": JSON.stringify(["nginx:1.27"]),
        "pullthrough:maxSize": "20GiB",
        "pullthrough:cluster": JSON.stringify({
            enabled: true,
            talosctl: talosctlStandIn("v1.12.1"),
        }),
    });
    const prune = byName(resources, commandType, "prune-caches");
    const cluster = byName(resources, commandType, "talos-cluster");
    expect(dependencies(prune.options)).toEqual(["prewarm-caches", "registry-front"]);
    expect(dependencies(cluster.options)).toEqual([
        "prewarm-caches",
        "prune-caches",
        "registry-front",
    ]);
    expect(prune.inputs.create).toBe("npm run --silent prune -- --outputs - --to 20GiB");
    expect(JSON.parse(prune.inputs.stdin).prewarmImages).toEqual(["docker.io/library/nginx:1.27"]);
});

test("without maxSize, nothing is pruned", async () => {
    const { resources } = await runProgram({});
    expect(resources.filter((resource) => resource.name === "prune-caches")).toEqual([]);
});

test("without prewarm, no prewarm Command is declared", async () => {
    const { resources, outputs } = await runProgram({});
    expect(resources.filter((resource) => resource.name === "prewarm-caches")).toEqual([]);
    expect(outputs.prewarmImages).toEqual([]);
});

describe("with dockerHost, another machine's engine", () => {
    const dockerHost = "ssh://builder@cache.team.lan";
    const config = {
        "pullthrough:dockerHost": dockerHost,
        "pullthrough:allowFrom": JSON.stringify(["192.168.1.0/24"]),
    };
    let bin: string;
    let pathBefore: string;
    /**
     * A docker CLI answering as an engine of API `version` with nothing running. What a real one
     * over ssh does is tests/e2e/docker-host.test.ts's; here only what the program declares counts.
     */
    const engineAnswers = (version: string) => {
        writeFileSync(
            path.join(bin, "docker"),
            `#!/bin/sh\n[ "$1" = version ] && echo ${version}\nexit 0\n`,
            { mode: 0o755 },
        );
    };

    beforeAll(() => {
        bin = mkdtempSync(path.join(tmpdir(), "pt-docker-cli-"));
        pathBefore = process.env.PATH ?? "";
        process.env.PATH = `${bin}:${pathBefore}`;
    });

    afterAll(() => {
        process.env.PATH = pathBefore;
        rmSync(bin, { recursive: true, force: true });
    });

    test("every Docker resource goes through one explicit provider for that engine", async () => {
        engineAnswers("1.41");
        const { resources, outputs } = await runProgram(config);
        const [provider] = ofType(resources, "pulumi:providers:docker");
        expect(provider.inputs).toMatchObject({ host: dockerHost });
        const onEngine = resources.filter((resource) =>
            [volumeType, containerType, networkType].includes(resource.type),
        );
        expect(onEngine).toHaveLength(6 + 6 + 3);
        for (const resource of onEngine)
            expect((resource.options.provider as { __name?: string })?.__name).toBe("docker-host");
        expect(outputs.dockerHost).toBe(dockerHost);
        // Nodes and this machine's tools both reach the caches at the engine's host.
        expect((outputs.mirrors as any)["docker.io"]).toMatchObject({
            endpoint: "http://cache.team.lan:5000",
            hostEndpoint: "http://cache.team.lan:5000",
        });
    });

    test("the cluster stays on this machine, its nodes pointed at the other host's caches", async () => {
        engineAnswers("1.41");
        const { resources } = await runProgram({
            ...config,
            "pullthrough:cluster": JSON.stringify({
                enabled: true,
                talosctl: talosctlStandIn("v1.12.1"),
            }),
        });
        const cluster = byName(resources, commandType, "talos-cluster");
        // A local Command: it runs here, whatever engine the caches are on.
        expect(cluster.options.provider).toBeUndefined();
        expect(cluster.inputs.create).toContain(
            "--registry-mirror docker.io=http://cache.team.lan:5000",
        );
    });

    test("an engine older than the caches need stops up before anything is declared", async () => {
        engineAnswers("1.24");
        await expect(runProgram(config)).rejects.toThrow(
            `pullthrough:dockerHost: the engine at ${dockerHost} speaks Docker API 1.24; the caches need 1.39 or newer (Docker 18.09+)`,
        );
    });
});

describe("importFrom", () => {
    let bundleDir: string;
    beforeAll(() => {
        bundleDir = mkdtempSync(path.join(tmpdir(), "pt-import-"));
        writeFileSync(path.join(bundleDir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
        writeFileSync(path.join(bundleDir, "index.json"), '{"schemaVersion":2,"manifests":[]}');
    });
    afterAll(() => rmSync(bundleDir, { recursive: true, force: true }));

    test("imports once the caches are healthy, before prewarm, prune and the cluster; again only when the bundle changes", async () => {
        const config = {
            "pullthrough:importFrom": bundleDir,
            "pullthrough:prewarm": JSON.stringify(["nginx:1.27"]),
            "pullthrough:maxSize": "20GiB",
            "pullthrough:cluster": JSON.stringify({
                enabled: true,
                talosctl: talosctlStandIn("v1.12.1"),
            }),
        };
        const { resources } = await runProgram(config);
        const imported = byName(resources, commandType, "import-bundle");
        expect(dependencies(imported.options)).toEqual(["registry-front"]);
        expect(imported.inputs.create).toBe(`npm run --silent import -- --outputs - ${bundleDir}`);
        expect(Object.keys(JSON.parse(imported.inputs.stdin).mirrors)).toHaveLength(6);
        for (const later of ["prewarm-caches", "prune-caches", "talos-cluster"])
            expect(dependencies(byName(resources, commandType, later).options)).toContain(
                "import-bundle",
            );

        // The same bundle, and another prewarm list: the import's triggers stay as they were.
        const again = await runProgram({
            ...config,
            "pullthrough:prewarm": JSON.stringify(["nginx:1.28"]),
        });
        const triggers = byName(again.resources, commandType, "import-bundle").inputs.triggers;
        expect(triggers).toEqual(imported.inputs.triggers);
        writeFileSync(
            path.join(bundleDir, "index.json"),
            '{"schemaVersion":2,"manifests":[],"annotations":{"changed":"yes"}}',
        );
        const changed = await runProgram(config);
        expect(byName(changed.resources, commandType, "import-bundle").inputs.triggers).not.toEqual(
            triggers,
        );
    });

    test("a bundle that cannot be read stops the program before any resource, naming the key", async () => {
        const missing = path.join(bundleDir, "gone.tar");
        const run = runProgram({ "pullthrough:importFrom": missing });
        await expect(run).rejects.toThrow(
            `pullthrough:importFrom: ${missing}: no such file or directory; expected a bundle made by npm run export`,
        );
    });
});
