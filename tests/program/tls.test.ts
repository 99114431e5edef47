/**
 * HTTPS and pull credentials in the program, under mocks (TLS resources made by the provider
 * stand-in, real keys): what it declares, what stays secret, the outputs clients take, and, with
 * the engine stand-in, which later `up`s touch what: nothing when nothing changed, the server
 * certificate and the front when it is due for renewal.
 */
import { X509Certificate } from "node:crypto";
import { parse as parseYaml } from "yaml";
import { CommandProviderStandIn } from "../../harness/command-provider-stand-in";
import { containerType } from "../../harness/docker-provider-stand-in";
import { InMemoryDocker } from "../../harness/in-memory-providers";
import { DeclaredResource, ProgramRun, runProgram } from "../../harness/program";
import { PulumiEngineStandIn } from "../../harness/pulumi-engine";
import { TlsProviderStandIn } from "../../harness/tls-provider-stand-in";
import { encodeConfig } from "../../mirrors";

const upstreams = [{ registry: "docker.io", remote: "http://upstream:5000", port: 6000 }];
const team = { username: "team", password: "s3cret-pw" };
const settings = {
    upstreams,
    mirrorHost: "10.5.0.1",
    tls: { enabled: true },
    pullCredentials: [team],
};
const secretKeys = ["pullthrough:pullCredentials", "pullthrough:tls"];

const named = (resources: DeclaredResource[], name: string) =>
    resources.find((resource) => resource.name === name)!;

describe("with tls.enabled and pull credentials", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram(encodeConfig(settings), { secretKeys });
    });

    test("the stack makes its CA and a server certificate, under the component", () => {
        const tls = run.resources.filter((resource) => resource.type.startsWith("tls:"));
        expect(tls.map((resource) => `${resource.type} ${resource.name}`).sort()).toEqual([
            "tls:index/certRequest:CertRequest registry-server-request",
            "tls:index/locallySignedCert:LocallySignedCert registry-server-certificate",
            "tls:index/privateKey:PrivateKey registry-ca-key",
            "tls:index/privateKey:PrivateKey registry-server-key",
            "tls:index/selfSignedCert:SelfSignedCert registry-ca",
        ]);
        for (const resource of tls) expect(resource.parent).toMatch(/Caches::pullthrough$/);
        expect(named(run.resources, "registry-server-request").inputs).toMatchObject({
            dnsNames: ["localhost"],
            ipAddresses: ["10.5.0.1", "127.0.0.1"],
        });
    });

    test("the server certificate names mirrorHost and comes from caCertificate", () => {
        const front = named(run.resources, "registry-front");
        const uploads = run.pulumi.runtime.unwrapRpcSecret(front.inputs.uploads) as {
            file: string;
            content: string;
        }[];
        const file = (name: string) => uploads.find((upload) => upload.file.endsWith(name))!;
        const certificate = new X509Certificate(file("server.crt").content);
        const ca = new X509Certificate(run.outputs.caCertificate as string);
        expect(certificate.checkIP("10.5.0.1")).toBe("10.5.0.1");
        expect(certificate.verify(ca.publicKey)).toBe(true);
        expect(file("ca.crt").content).toBe(run.outputs.caCertificate);
        expect(file("server.key").content).toMatch(/PRIVATE KEY/);
        expect(file("users").content).toMatch(/^team:\$2b\$05\$/);
    });

    test("the key and passwords reach the front only as a secret, never its environment", () => {
        const front = named(run.resources, "registry-front");
        expect(run.pulumi.runtime.isRpcSecret(front.inputs.uploads)).toBe(true);
        for (const container of run.resources.filter((r) => r.type === containerType))
            expect(JSON.stringify(container.inputs.envs)).not.toMatch(/PRIVATE|s3cret-pw/);
    });

    test("outputs: https endpoints; those carrying the credential are secret, the rest are not", async () => {
        const { outputs, exports, pulumi } = run;
        const secret: string[] = [];
        for (const [name, value] of Object.entries(exports))
            if (await pulumi.isSecret(pulumi.output(value))) secret.push(name);
        expect(secret.sort()).toEqual([
            "talosAnyRegistryDocuments",
            "talosAnyRegistryPatch",
            "talosConfigPatch",
            "talosMirrorDocuments",
            "talosctlCreate",
        ]);
        const plain = Object.entries(outputs).filter(([name]) => !secret.includes(name));
        expect(JSON.stringify(plain)).not.toContain("s3cret-pw");
        expect((outputs.mirrors as any)["docker.io"].endpoint).toBe("https://10.5.0.1:6000");
        expect(outputs.registryMirrorFlags).toEqual([
            "--registry-mirror",
            "docker.io=https://10.5.0.1:6000",
        ]);
        expect(parseYaml(outputs.talosConfigPatch as string).machine.registries.config).toEqual({
            "10.5.0.1:6000": {
                tls: { ca: Buffer.from(outputs.caCertificate as string).toString("base64") },
                auth: team,
            },
        });
        expect(outputs.dockerCaInstall).toContain("for endpoint in 10.5.0.1:6000 10.5.0.1:5005");
    });

    test("talosctl has no CA flag: the create command carries a config patch with the CA and credential", () => {
        const create = run.outputs.talosctlCreate as string;
        expect(create).toContain("--config-patch");
        expect(create).toContain("RegistryTLSConfig");
        expect(create).toContain("RegistryAuthConfig");
    });
});

test("a certificate the user gives is served as given, with no TLS resources, its CA as caCertificate", async () => {
    const tls = new TlsProviderStandIn();
    const key = await tls.create("tls:index/privateKey:PrivateKey", { algorithm: "RSA" });
    const self = await tls.create("tls:index/selfSignedCert:SelfSignedCert", {
        privateKeyPem: key.state.privateKeyPem,
        isCaCertificate: true,
        subject: { commonName: "10.5.0.1" },
        validityPeriodHours: 24,
    });
    // A self-signed certificate naming mirrorHost in its subject only fails the name check.
    const given = { certificate: self.state.certPem, key: key.state.privateKeyPem };
    await expect(
        runProgram(encodeConfig({ ...settings, tls: { enabled: true, ...given } }), {
            secretKeys,
        }),
    ).rejects.toThrow(
        /pullthrough:tls.certificate: got \[secret\]; expected a certificate that names mirrorHost 10\.5\.0\.1/,
    );
    const request = await tls.create("tls:index/certRequest:CertRequest", {
        privateKeyPem: key.state.privateKeyPem,
        subject: { commonName: "10.5.0.1" },
        ipAddresses: ["10.5.0.1"],
    });
    const ca = await tls.create("tls:index/selfSignedCert:SelfSignedCert", {
        privateKeyPem: key.state.privateKeyPem,
        isCaCertificate: true,
        subject: { commonName: "team CA" },
        validityPeriodHours: 24,
    });
    const signed = await tls.create("tls:index/locallySignedCert:LocallySignedCert", {
        certRequestPem: request.state.certRequestPem,
        caCertPem: ca.state.certPem,
        caPrivateKeyPem: key.state.privateKeyPem,
        validityPeriodHours: 24,
        allowedUses: ["server_auth"],
    });
    const run = await runProgram(
        encodeConfig({
            ...settings,
            tls: {
                enabled: true,
                certificate: signed.state.certPem,
                key: key.state.privateKeyPem,
                ca: ca.state.certPem,
            },
        }),
        { secretKeys },
    );
    expect(run.resources.filter((resource) => resource.type.startsWith("tls:"))).toEqual([]);
    expect(run.outputs.caCertificate).toBe(ca.state.certPem);
    const uploads = run.pulumi.runtime.unwrapRpcSecret(
        named(run.resources, "registry-front").inputs.uploads,
    ) as { file: string; content: string }[];
    expect(uploads.find((upload) => upload.file.endsWith("server.crt"))!.content).toBe(
        signed.state.certPem,
    );
});

describe("later ups", () => {
    let tls: TlsProviderStandIn;
    let engine: PulumiEngineStandIn;
    const up = async () => {
        await engine.up(encodeConfig(settings), { secretKeys });
        return engine.changes().map((step) => `${step.op} ${step.name} ${step.changed}`);
    };

    beforeEach(async () => {
        tls = new TlsProviderStandIn();
        engine = new PulumiEngineStandIn([new InMemoryDocker(), new CommandProviderStandIn(), tls]);
        await up();
    });

    test("with nothing changed touch nothing: the bcrypt file and certificates are the same", async () => {
        expect(await up()).toEqual([]);
    });

    test("in the server certificate's last 30 days renew it, and restart only the front", async () => {
        const issued = new Date(
            engine.recordedState(
                "tls:index/locallySignedCert:LocallySignedCert",
                "registry-server-certificate",
            ).validityEndTime,
        );
        tls.now = () => new Date(issued.getTime() - 29 * 86_400_000);
        expect(await up()).toEqual([
            "replace registry-server-certificate readyForRenewal",
            "replace registry-front uploads",
        ]);
        tls.now = () => new Date(issued.getTime() - 31 * 86_400_000);
        expect(await up()).toEqual([]);
    });
});
