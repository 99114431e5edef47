/**
 * HTTPS and pull credentials, pure: the settings' checks of a given certificate (with keys and
 * certificates made by the TLS provider stand-in), the htpasswd file, the front's config, and
 * every rendering of the CA and the credential, Talos's against its own schemas.
 */
import Ajv2020 from "ajv/dist/2020";
import bcrypt from "bcryptjs";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { frontConfig, frontAccessUploads } from "../../core/front";
import { htpasswdFile } from "../../core/pull-auth";
import { planAnyRegistry, planCaches } from "../../core/plan";
import {
    containerdDefaultHosts,
    containerdHosts,
    dockerCaInstall,
    talosAccessPatch,
    talosAnyRegistryPatch,
    talosConfigPatch,
    talosMirrorDocuments,
} from "../../core/render";
import { certificateStatus, formatStatus } from "../../core/status-report";
import { ConfigError } from "../../core/config-error";
import { TalosSchemaVersion, talosSchema } from "../../harness/talos-schemas";
import { stackCertificates } from "../../harness/tls-provider-stand-in";
import { parseSettings } from "../../mirrors";
import { config, identity, upstream } from "./settings";

const certificates = (hosts: string[], from?: Date, hours?: number) =>
    stackCertificates(hosts, { from, hours });

/** The config error `values` give, as the stack config's user reads it. */
function configError(values: Record<string, unknown>): string {
    try {
        parseSettings(config(values));
    } catch (error) {
        if (error instanceof ConfigError) return error.message;
        throw error;
    }
    throw new Error("no config error");
}

const credential = { username: "team", password: "s3cret-pw" };

describe("a certificate the user gives", () => {
    let given: Awaited<ReturnType<typeof certificates>>;
    beforeAll(async () => {
        given = await certificates(["cache.team.lan", "10.5.0.1"]);
    });

    test("is taken when it matches its key, is valid and names mirrorHost", () => {
        const settings = parseSettings(
            config({ mirrorHost: "cache.team.lan", tls: { enabled: true, ...given } }),
        );
        expect(settings.tls.certificate).toBe(given.certificate);
    });

    test("with another key: an error naming tls.key, and never the key itself", async () => {
        const other = await certificates(["cache.team.lan"]);
        const message = configError({
            mirrorHost: "cache.team.lan",
            tls: { enabled: true, certificate: given.certificate, key: other.key },
        });
        expect(message).toContain(
            "pullthrough:tls.key: got [secret]; expected the private key of tls.certificate (this key does not match it)",
        );
        expect(message).not.toContain("PRIVATE KEY");
    });

    test("expired: an error naming tls.certificate and when it expired", async () => {
        const old = await certificates(["cache.team.lan"], new Date("2025-01-01T00:00:00Z"), 24);
        expect(
            configError({ mirrorHost: "cache.team.lan", tls: { enabled: true, ...old } }),
        ).toContain(
            "pullthrough:tls.certificate: got [secret]; expected a certificate valid now (this one expired on 2025-01-02T00:00:00.000Z)",
        );
    });

    test("not naming mirrorHost: an error saying what it names", () => {
        expect(configError({ mirrorHost: "10.9.9.9", tls: { enabled: true, ...given } })).toMatch(
            /pullthrough:tls\.certificate: got \[secret\]; expected a certificate that names mirrorHost 10\.9\.9\.9, which nodes connect to \(it names DNS:cache\.team\.lan, DNS:localhost, IP Address:10\.5\.0\.1, IP Address:127\.0\.0\.1\)/,
        );
    });

    test("with a CA that did not issue it: an error naming tls.ca", async () => {
        const other = await certificates(["cache.team.lan"]);
        expect(
            configError({
                mirrorHost: "cache.team.lan",
                tls: { enabled: true, ...given, ca: other.ca },
            }),
        ).toContain(
            "pullthrough:tls.ca: got [secret]; expected the CA that issued tls.certificate",
        );
    });

    test("without its key, or given while TLS is off: errors naming what is missing", () => {
        expect(configError({ tls: { enabled: true, certificate: given.certificate } })).toContain(
            "pullthrough:tls.key: got nothing; expected the private key of tls.certificate, set with --secret",
        );
        expect(configError({ tls: { enabled: false, ...given } })).toContain(
            "pullthrough:tls.enabled: got false; expected true, to serve tls.certificate",
        );
    });
});

describe("pull credentials", () => {
    test("off loopback they need TLS, unless plain HTTP is allowed in so many words", () => {
        expect(configError({ pullCredentials: [credential] })).toContain(
            "pullthrough:pullCredentials: got [secret]; expected credentials sent over HTTPS: with bindAddress 0.0.0.0 and tls.enabled false they would cross the network in clear",
        );
        for (const allowed of [
            { tls: { enabled: true } },
            { bindAddress: "127.0.0.1" },
            { allowPlainHttpCredentials: true },
        ])
            expect(
                parseSettings(config({ pullCredentials: [credential], ...allowed }))
                    .pullCredentials,
            ).toEqual([credential]);
    });

    test("a user name with a colon, or twice, is refused", () => {
        const message = configError({
            tls: { enabled: true },
            pullCredentials: [{ username: "a:b", password: "x" }, credential, credential],
        });
        expect(message).toContain(
            'pullthrough:pullCredentials[0].username: got [secret]; expected a non-empty user name without ":" or spaces',
        );
        expect(message).toContain(
            "pullthrough:pullCredentials[2].username: got [secret]; expected a user name no other entry has",
        );
    });

    test("the htpasswd file holds bcrypt hashes that check the password, the same on every up", () => {
        const file = htpasswdFile([credential], identity);
        const [user, hash] = file.trim().split(":");
        expect(user).toBe("team");
        expect(hash).toMatch(/^\$2b\$05\$/);
        expect(bcrypt.compareSync("s3cret-pw", hash)).toBe(true);
        expect(bcrypt.compareSync("wrong", hash)).toBe(false);
        expect(htpasswdFile([credential], identity)).toBe(file);
        expect(htpasswdFile([credential], { ...identity, stack: "other" })).not.toBe(file);
    });
});

describe("the front", () => {
    const settings = parseSettings(
        config({ tls: { enabled: true }, pullCredentials: [credential] }),
    );
    const caches = planCaches(settings, identity);
    const front = {
        allowed: ["127.0.0.0/8"],
        anyRegistryPort: 5005,
        tls: true,
        pullAuth: true,
        prefetch: false,
    };
    const rendered = frontConfig(caches, front);

    test("every client port speaks TLS, and asks for a credential unless the tools' token comes", () => {
        for (const port of [...caches.map((cache) => cache.port), 5005])
            expect(rendered).toContain(`listen ${port} ssl;`);
        expect(rendered).toContain("ssl_certificate /etc/nginx/pullthrough/server.crt;");
        expect(rendered).toContain("ssl_protocols TLSv1.2 TLSv1.3;");
        expect(rendered).toContain("include /etc/nginx/pullthrough-tools.conf;");
        expect(rendered.split("auth_basic $pullthrough_realm;")).toHaveLength(caches.length + 2);
        expect(rendered).toContain("auth_basic_user_file /etc/nginx/pullthrough/users;");
        // The health endpoint stays plain and open.
        expect(rendered).toContain("listen 127.0.0.1:8079;");
    });

    test("the one port's API base is a file, answered only after the allow-list and credentials", () => {
        expect(rendered).toContain(
            "location = /v2/ {\n        rewrite ^ /pullthrough-api-base last;\n    }",
        );
        expect(rendered).toContain(
            "location = /pullthrough-api-base {\n        internal;\n        alias /etc/nginx/pullthrough/api-base.json;\n    }",
        );
        expect(rendered).not.toContain("return 200 '{}'");
    });

    test("plain HTTP with no credentials renders none of it", () => {
        const plain = frontConfig(caches, { ...front, tls: false, pullAuth: false });
        expect(plain).not.toMatch(/ssl|auth_basic|pullthrough-tools/);
    });

    test("the key, certificate, CA and users go in as uploads of their own", () => {
        expect(
            frontAccessUploads({ certificate: "C", key: "K", users: "U" }).map((u) => u.file),
        ).toEqual([
            "/etc/nginx/pullthrough/server.crt",
            "/etc/nginx/pullthrough/server.key",
            "/etc/nginx/pullthrough/users",
        ]);
    });
});

describe("the CA and credential in every client's form", () => {
    const settings = parseSettings(
        config({
            upstreams: [upstream("docker.io", 5000), upstream("registry.local:5443", 5010)],
            tls: { enabled: true },
            pullCredentials: [credential],
        }),
    );
    const caches = planCaches(settings, identity);
    const anyRegistry = planAnyRegistry(settings);
    const ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const access = { ca, credential };
    const schemas = new Map<TalosSchemaVersion, object>();
    beforeAll(() => {
        for (const version of ["v1.11.0", "v1.13.9"] as const)
            schemas.set(version, talosSchema(version) as object);
    });
    const validatorFor = (version: TalosSchemaVersion, definition: string) => {
        const ajv = new Ajv2020({ strict: false, allErrors: true });
        ajv.addSchema(schemas.get(version)!, "talos");
        return ajv.getSchema(`talos#/$defs/${definition}`)!;
    };

    test("Talos v1alpha1: machine.registries.config per endpoint, CA in base64, valid for 1.11", () => {
        const patch = parseYaml(talosConfigPatch(caches, access));
        expect(patch.machine.registries.config).toEqual({
            "10.5.0.1:5000": {
                tls: { ca: Buffer.from(ca).toString("base64") },
                auth: credential,
            },
            "10.5.0.1:5010": {
                tls: { ca: Buffer.from(ca).toString("base64") },
                auth: credential,
            },
        });
        expect(patch.machine.registries.mirrors["docker.io"].endpoints).toEqual([
            "https://10.5.0.1:5000",
        ]);
        const valid = validatorFor("v1.11.0", "v1alpha1.RegistriesConfig");
        expect([valid(patch.machine.registries), valid.errors]).toEqual([true, null]);
        const any = parseYaml(talosAnyRegistryPatch(anyRegistry, access));
        expect(Object.keys(any.machine.registries.config)).toEqual(["10.5.0.1:5005"]);
    });

    test("Talos 1.12+: RegistryTLSConfig (PEM) and RegistryAuthConfig per endpoint, valid for 1.13", () => {
        const documents = parseAllDocuments(talosMirrorDocuments(caches, access)).map((d) =>
            d.toJSON(),
        );
        const kinds = documents.map((document) => `${document.kind} ${document.name}`);
        expect(kinds).toEqual([
            "RegistryMirrorConfig docker.io",
            "RegistryMirrorConfig registry.local:5443",
            "RegistryTLSConfig 10.5.0.1:5000",
            "RegistryAuthConfig 10.5.0.1:5000",
            "RegistryTLSConfig 10.5.0.1:5010",
            "RegistryAuthConfig 10.5.0.1:5010",
        ]);
        expect(documents[2].ca).toBe(ca);
        for (const document of documents) {
            const valid = validatorFor("v1.13.9", `cri.${document.kind}V1Alpha1`);
            expect([document.kind, valid(document), valid.errors]).toEqual([
                document.kind,
                true,
                null,
            ]);
        }
    });

    test("the cluster's own patch carries only the CA and credential, in its release's form", () => {
        const endpoints = caches.map((cache) => cache.endpoint);
        expect(parseYaml(talosAccessPatch(endpoints, access, "talosConfigPatch"))).toEqual({
            machine: {
                registries: {
                    config: parseYaml(talosConfigPatch(caches, access)).machine.registries.config,
                },
            },
        });
        expect(talosAccessPatch(endpoints, {}, "talosConfigPatch")).toBe("");
        expect(talosAccessPatch(endpoints, access, "talosMirrorDocuments")).toContain(
            "kind: RegistryTLSConfig",
        );
    });

    test("containerd: the host entry trusts ca.crt next to hosts.toml", () => {
        expect(containerdHosts(caches, access)["docker.io"]).toBe(
            'server = "https://docker.io"\n\n[host."https://10.5.0.1:5000"]\n  capabilities = ["pull", "resolve"]\n  ca = "ca.crt"\n',
        );
        expect(containerdDefaultHosts(anyRegistry, access)).toContain('ca = "ca.crt"');
    });

    test("Docker: a script writing ca.crt into certs.d/<host:port> for every port", () => {
        const script = dockerCaInstall(
            [...caches.map((cache) => cache.endpoint), anyRegistry.endpoint],
            ca,
        )!;
        expect(script).toContain("for endpoint in 10.5.0.1:5000 10.5.0.1:5010 10.5.0.1:5005; do");
        expect(script).toContain('certs="${DOCKER_CERTS_D:-/etc/docker/certs.d}"');
        expect(dockerCaInstall([], undefined)).toBeNull();
    });
});

test("status shows the certificate's end, and warns in its last 30 days and once expired", async () => {
    const { certificate } = await certificates(["127.0.0.1"], new Date("2026-01-01T00:00:00Z"));
    const at = (date: string) => certificateStatus(certificate, new Date(date))!;
    const line = (date: string) => formatStatus([], false, [], at(date)).split("\n")[1];
    expect(at("2026-06-01T00:00:00Z").daysLeft).toBe(214);
    expect(line("2026-06-01T00:00:00Z")).toBe(
        "  HTTPS certificate valid until 2027-01-01 06:00:00 UTC, 214 days left",
    );
    expect(line("2026-12-20T00:00:00Z")).toMatch(
        /^! HTTPS certificate .*, 12 days left: npm run up renews the stack's own$/,
    );
    expect(line("2027-02-01T00:00:00Z")).toMatch(/^! HTTPS certificate expired/);
});
