import { parse as parseToml } from "smol-toml";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { planCaches } from "../../core/plan";
import {
    containerdHosts,
    mirrorsByRegistry,
    registryMirrorFlags,
    talosConfigPatch,
    talosMirrorDocuments,
} from "../../core/render";
import { parseSettings } from "../../mirrors";
import { config, identity, upstream } from "./settings";

describe("renderings", () => {
    const caches = planCaches(
        parseSettings(
            config({
                upstreams: [
                    upstream("docker.io", 5000, { remote: "https://registry-1.docker.io" }),
                    upstream("registry.local:5443", 5010),
                ],
            }),
        ),
        identity,
    );

    test("mirrors lists every cache by registry", () => {
        expect(mirrorsByRegistry(caches)["registry.local:5443"]).toEqual({
            remote: "https://registry.local:5443",
            port: 5010,
            endpoint: "http://10.5.0.1:5010",
            hostEndpoint: "http://127.0.0.1:5010",
            mode: "auto",
            container: "registry-registry.local_5443",
            volume: "registry-registry.local_5443",
            network: "registry-net",
        });
    });

    test("talosctl flags: one --registry-mirror item per registry, never comma-joined", () => {
        expect(registryMirrorFlags(caches)).toEqual([
            "--registry-mirror",
            "docker.io=http://10.5.0.1:5000",
            "--registry-mirror",
            "registry.local:5443=http://10.5.0.1:5010",
        ]);
    });

    test("the machine-config patch parses to machine.registries.mirrors", () => {
        expect(parseYaml(talosConfigPatch(caches))).toEqual({
            machine: {
                registries: {
                    mirrors: {
                        "docker.io": { endpoints: ["http://10.5.0.1:5000"] },
                        "registry.local:5443": { endpoints: ["http://10.5.0.1:5010"] },
                    },
                },
            },
        });
    });

    test("Talos 1.12+ gets one RegistryMirrorConfig document per registry", () => {
        const documents = parseAllDocuments(talosMirrorDocuments(caches)).map((document) =>
            document.toJSON(),
        );
        expect(documents).toEqual([
            {
                apiVersion: "v1alpha1",
                kind: "RegistryMirrorConfig",
                name: "docker.io",
                endpoints: [{ url: "http://10.5.0.1:5000" }],
            },
            {
                apiVersion: "v1alpha1",
                kind: "RegistryMirrorConfig",
                name: "registry.local:5443",
                endpoints: [{ url: "http://10.5.0.1:5010" }],
            },
        ]);
    });

    test("containerd hosts.toml: the cache for pull and resolve, the real registry as fallback", () => {
        const hosts = containerdHosts(caches);
        expect(Object.keys(hosts)).toEqual(["docker.io", "registry.local:5443"]);
        expect(parseToml(hosts["docker.io"])).toEqual({
            server: "https://registry-1.docker.io",
            host: { "http://10.5.0.1:5000": { capabilities: ["pull", "resolve"] } },
        });
    });
});
