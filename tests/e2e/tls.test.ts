/**
 * A team cache people can trust, on the real engine: the front serves HTTPS with the stack's own
 * CA and asks for pull credentials, at a non-loopback address (the gateway of a Docker network
 * this suite makes). Three real clients, each told the CA the way its documentation says:
 * containerd (`ctr` with a hosts dir: `ca` in hosts.toml), dockerd (`certs.d/<host:port>/ca.crt`,
 * written by the `dockerCaInstall` output, and `docker login`) and skopeo (`--cert-dir`,
 * `--creds`). Each refuses a certificate from another CA, gets 401 with no or wrong credentials,
 * and with the right ones pulls the upstream's digest. Coalescing still sends one upstream GET
 * per blob, and the tools keep working.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { Containerd, withClosedFallback, writeHostsDir } from "../../harness/containerd";
import { docker } from "../../harness/docker";
import { image, layer } from "../../harness/oci";
import { TestStack } from "../../harness/stack";
import { stackCertificates } from "../../harness/tls-provider-stand-in";
import { runTool } from "../../harness/tools";
import { FixtureImage, byTag } from "../../harness/upstreams";
import { hostsToml } from "../../core/render";

jest.setTimeout(300_000);

const run = promisify(execFile);
const registry = "docker.io";
const app: FixtureImage = {
    registry,
    repository: "library/team-app",
    tag: "v1",
    artifact: image([1, 2, 3].map((n) => layer(`tls-app-${n}`, 1 << 20))),
};
const user = { username: "team", password: "pull it, 'quoted' & $pecial" };

let stack: TestStack;
let workDir: string;
/** The address the front is published on: the gateway of the suite's own Docker network. */
let lanAddress: string;
let endpointHost: string;
let ca: string;
let otherCa: string;

beforeAll(async () => {
    stack = await TestStack.start("tls", [registry], [app]);
    lanAddress = stack.upstreams.gateway();
    await stack.up({
        bindAddress: lanAddress,
        mirrorHost: lanAddress,
        tls: { enabled: true },
        pullCredentials: [user, { username: "ci", password: "another" }],
        prewarm: [byTag(app)],
    });
    endpointHost = `${lanAddress}:${stack.ports[registry]}`;
    ca = stack.run.outputs.caCertificate as string;
    workDir = mkdtempSync(path.join(tmpdir(), "pt-tls-"));
    // A CA the front's certificate does not come from.
    otherCa = (await stackCertificates([lanAddress])).ca;
});

afterAll(async () => {
    await stack?.remove();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    rmSync(`/etc/docker/certs.d/${endpointHost}`, { recursive: true, force: true });
    // The image dockerd pulled, if it got that far.
    await outcome("docker", [
        "image",
        "rm",
        "--force",
        `${endpointHost}/${app.repository}:${app.tag}`,
    ]);
});

/** A command's outcome: its exit status and everything it said. */
async function outcome(command: string, args: string[], env: NodeJS.ProcessEnv = {}) {
    try {
        const { stdout, stderr } = await run(command, args, {
            env: { ...process.env, ...env },
            timeout: 120_000,
        });
        return { ok: true, output: `${stdout}${stderr}` };
    } catch (error) {
        const failed = error as { stdout?: string; stderr?: string; message: string };
        return { ok: false, output: `${failed.stdout ?? ""}${failed.stderr ?? failed.message}` };
    }
}

test("every endpoint is HTTPS at the network address; the key and passwords are nowhere in docker inspect", () => {
    const mirrors = stack.run.outputs.mirrors as Record<string, { endpoint: string }>;
    expect(mirrors[registry].endpoint).toBe(`https://${endpointHost}`);
    expect(ca).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(String(stack.run.outputs.talosConfigPatch)).toContain(`${endpointHost}:`);
    const inspected = docker("inspect", stack.frontName);
    expect(inspected).not.toContain("PRIVATE KEY");
    expect(inspected).not.toContain(user.password);
});

test("the one port for every registry asks for a credential at its API base too", async () => {
    const caFile = path.join(workDir, "ca.crt");
    writeFileSync(caFile, ca);
    const status = (...args: string[]) =>
        outcome("curl", [
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            caFile,
            ...args,
        ]);
    const url = `https://${lanAddress}:${stack.anyRegistryPort}/v2/`;
    expect((await status(url)).output).toBe("401");
    expect((await status("-u", `${user.username}:${user.password}`, url)).output).toBe("200");
});

describe("containerd (ctr, hosts dir with the CA)", () => {
    /** A hosts dir whose only host is the cache, also as `server`: no fallback hides a refusal. */
    const onlyTheCache = (trusted: string) => {
        const endpoint = `https://${endpointHost}`;
        return writeHostsDir(
            mkdtempSync(path.join(workDir, "hosts-")),
            { [registry]: hostsToml(endpoint, endpoint, { ca: trusted }) },
            trusted,
        );
    };

    const pull = async (hostsDir: string, login?: string) => {
        const containerd = await Containerd.start();
        try {
            return await containerd
                .pull("default", byTag(app), hostsDir, login)
                .then((pulled) => ({ ok: true, output: pulled.digest }))
                .catch((error: Error) => ({ ok: false, output: error.message }));
        } finally {
            await containerd.stop();
        }
    };

    test("refuses the front's certificate against another CA", async () => {
        const result = await pull(onlyTheCache(otherCa), `${user.username}:${user.password}`);
        expect(result.ok).toBe(false);
        expect(result.output).toMatch(/x509: certificate signed by unknown authority/);
        console.log(`ctr, another CA: ${lastLine(result.output)}`);
    });

    test.each([
        ["no credentials", undefined],
        ["wrong credentials", `${user.username}:wrong`],
    ])("gets 401 with %s", async (_what, login) => {
        const result = await pull(onlyTheCache(ca), login);
        expect(result.ok).toBe(false);
        expect(result.output).toMatch(/401 Unauthorized/);
        console.log(`ctr, ${_what}: ${lastLine(result.output)}`);
    });

    test("pulls the upstream's digest with the outputs' hosts.toml, CA and credential", async () => {
        const result = await pull(stack.hostsDir, `${user.username}:${user.password}`);
        expect(result).toEqual({ ok: true, output: app.artifact.manifest.digest });
        const hosts = stack.run.outputs.containerdHosts as Record<string, string>;
        console.log(`ctr, the outputs' ${registry}/hosts.toml:\n${hosts[registry]}`);
    });
});

describe("dockerd (certs.d, docker login)", () => {
    const certsDir = () => `/etc/docker/certs.d/${endpointHost}`;
    const dockerConfig = () => mkdtempSync(path.join(workDir, "docker-config-"));
    const ref = () => `${endpointHost}/${app.repository}:${app.tag}`;
    const login = (config: string, password: string) =>
        outcome("docker", ["login", endpointHost, "-u", user.username, "-p", password], {
            DOCKER_CONFIG: config,
        });

    test("refuses the front's certificate against another CA", async () => {
        mkdirSync(certsDir(), { recursive: true });
        writeFileSync(path.join(certsDir(), "ca.crt"), otherCa);
        const result = await login(dockerConfig(), user.password);
        expect(result.ok).toBe(false);
        expect(result.output).toMatch(/x509: certificate signed by unknown authority/);
        console.log(`docker, another CA: ${lastLine(result.output)}`);
    });

    test("with the CA the dockerCaInstall output installs: 401 without or with wrong credentials, the digest with the right ones", async () => {
        const script = path.join(workDir, "docker-ca-install.sh");
        writeFileSync(script, stack.run.outputs.dockerCaInstall as string);
        const installed = await outcome("sh", [script]);
        expect(installed.output).toContain(`trusted for ${endpointHost}`);

        const anonymous = await outcome("docker", ["pull", ref()], {
            DOCKER_CONFIG: dockerConfig(),
        });
        expect(anonymous.ok).toBe(false);
        expect(anonymous.output).toMatch(/no basic auth credentials|unauthorized/);
        const wrong = await login(dockerConfig(), "wrong");
        expect(wrong.ok).toBe(false);
        expect(wrong.output).toMatch(/401 Unauthorized/);

        const config = dockerConfig();
        expect((await login(config, user.password)).output).toContain("Login Succeeded");
        const pulled = await outcome("docker", ["pull", ref()], { DOCKER_CONFIG: config });
        expect(pulled.output).toContain(`Digest: ${app.artifact.manifest.digest}`);
        console.log(`docker, no credentials: ${lastLine(anonymous.output)}`);
        console.log(`docker, wrong credentials: ${lastLine(wrong.output)}`);
        console.log(`docker pull ${ref()}:\n${pulled.output.trim()}`);
    });
});

describe("skopeo (--cert-dir, --creds)", () => {
    const certDir = (trusted: string) => {
        const dir = mkdtempSync(path.join(workDir, "certs-"));
        writeFileSync(path.join(dir, "ca.crt"), trusted);
        return dir;
    };
    const inspect = (trusted: string, ...credentials: string[]) =>
        outcome("skopeo", [
            "inspect",
            "--cert-dir",
            certDir(trusted),
            ...credentials,
            `docker://${endpointHost}/${app.repository}:${app.tag}`,
        ]);

    test("refuses the front's certificate against another CA", async () => {
        const result = await inspect(otherCa, "--creds", `${user.username}:${user.password}`);
        expect(result.ok).toBe(false);
        expect(result.output).toMatch(/x509: certificate signed by unknown authority/);
        console.log(`skopeo, another CA: ${lastLine(result.output)}`);
    });

    test.each([
        ["no credentials", ["--no-creds"]],
        ["wrong credentials", ["--creds", `${user.username}:wrong`]],
    ])("gets 401 with %s", async (what, credentials) => {
        const result = await inspect(ca, ...credentials);
        expect(result.ok).toBe(false);
        expect(result.output).toMatch(/401|unauthorized|authentication required/i);
        console.log(`skopeo, ${what}: ${lastLine(result.output)}`);
    });

    test("reads the upstream's digest with the CA and the right credentials", async () => {
        const result = await inspect(ca, "--creds", `${user.username}:${user.password}`);
        expect(result.ok).toBe(true);
        expect(JSON.parse(result.output).Digest).toBe(app.artifact.manifest.digest);
        console.log(`skopeo inspect: Digest ${JSON.parse(result.output).Digest}`);
    });
});

test("three nodes at once over HTTPS: every blob leaves the upstream once", async () => {
    const before = stack.upstreams.timesServed(registry);
    const fresh: FixtureImage = {
        ...app,
        repository: "library/team-fresh",
        artifact: image([1, 2].map((n) => layer(`tls-fresh-${n}`, 2 << 20))),
    };
    await stack.upstreams.seed([fresh]);
    const hostsDir = writeHostsDir(
        mkdtempSync(path.join(workDir, "nodes-")),
        withClosedFallback(stack.run.outputs.containerdHosts as Record<string, string>),
        ca,
    );
    const nodes = await Promise.all(
        [1, 2, 3].map(async () => {
            const containerd = await Containerd.start();
            try {
                return (await containerd.pull("default", byTag(fresh), hostsDir, `ci:another`))
                    .digest;
            } finally {
                await containerd.stop();
            }
        }),
    );
    expect(nodes).toEqual([1, 2, 3].map(() => fresh.artifact.manifest.digest));
    const sent = stack.upstreams.timesServed(registry);
    for (const blob of fresh.artifact.blobs)
        expect([blob.digest, sent.get(blob.digest) ?? 0]).toEqual([blob.digest, 1]);
    expect(before.size).toBeGreaterThan(0);
});

test("the tools keep working: status shows the certificate's expiry; verify, export and import pass", async () => {
    const status = await runTool("status", stack.run.outputs, workDir, "--json");
    const report = JSON.parse(status.stdout);
    expect(report.certificate.daysLeft).toBeGreaterThanOrEqual(364);
    const screen = await runTool("status", stack.run.outputs, workDir);
    expect(screen.stdout).toMatch(
        / {2}HTTPS certificate valid until \d{4}-\d\d-\d\d .*, 36\d days left/,
    );
    const verify = await runTool("verify", stack.run.outputs, workDir);
    expect([verify.code, verify.stderr]).toEqual([0, ""]);
    const bundle = path.join(workDir, "team.tar");
    const exported = await runTool("export", stack.run.outputs, workDir, bundle);
    expect([exported.code, exported.stderr]).toEqual([0, ""]);
    const imported = await runTool("import", stack.run.outputs, workDir, bundle, "--json");
    expect([imported.code, JSON.parse(imported.stdout).ok]).toEqual([0, true]);
    const prewarm = await runTool("prewarm", stack.run.outputs, workDir);
    expect([prewarm.code, prewarm.stderr]).toEqual([0, ""]);
    console.log(screen.stdout.split("\n").find((line) => line.includes("HTTPS")));
});

const lastLine = (text: string) => text.trim().split("\n").at(-1);
