/**
 * `dockerHost`: the stack on a second Docker host, reached over ssh the way Docker's CLI and the
 * Docker provider reach one. The host is a container on a network the test creates, running
 * Debian's dockerd and sshd (harness/second-docker-host.ts); the fixture upstream is on the same network,
 * and a containerd node on this machine pulls through the caches at the host's address.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { docker, fixtureFrontImage, fixtureRegistryImage } from "../../harness/docker";
import { SecondDockerHost } from "../../harness/second-docker-host";
import { image, layer } from "../../harness/oci";
import { runProgram } from "../../harness/program";
import { TestStack, localStackConfig } from "../../harness/stack";
import { runTool } from "../../harness/tools";
import { FixtureImage, byTag, storedFolders } from "../../harness/upstreams";

jest.setTimeout(300_000);

const registry = "ghcr.io";
const fixture: FixtureImage = {
    registry,
    repository: "pullthrough/remote",
    tag: "v1",
    artifact: image([layer("remote-a", 1 << 20), layer("remote-b", 512 << 10)]),
};
/** Warmed by `npm run prewarm` from this machine, never pulled by a node. */
const prewarmed: FixtureImage = {
    registry,
    repository: "pullthrough/remote-prewarmed",
    tag: "v1",
    artifact: image([layer("remote-prewarmed", 256 << 10)]),
};
let stack: TestStack;
let host: SecondDockerHost;
let workDir: string;
let before: ReturnType<SecondDockerHost["inventory"]>;
/** Stack config for the remote host, as a team would set it. */
let remoteConfig: Record<string, unknown>;
let upstreams: { registry: string; remote: string; port: number }[];

const outputs = () => ({
    mirrors: stack.run.outputs.mirrors,
    prewarmImages: [byTag(fixture), byTag(prewarmed)],
    dockerHost: stack.run.outputs.dockerHost,
});

beforeAll(async () => {
    stack = await TestStack.start("remote", [registry], [fixture, prewarmed]);
    workDir = mkdtempSync(path.join(tmpdir(), "pt-remote-"));
    host = await SecondDockerHost.start(`${stack.id}-host`, stack.upstreams.network);
    host.load([fixtureRegistryImage, fixtureFrontImage]);
    before = host.inventory();
    const network = stack.upstreams.network;
    remoteConfig = {
        dockerHost: host.dockerHost,
        bindAddress: "0.0.0.0",
        mirrorHost: undefined, // the default: the remote host
        // The team network: this machine reaches the host from its address there.
        allowFrom: [
            docker("network", "inspect", network, "--format", "{{(index .IPAM.Config 0).Subnet}}"),
        ],
    };
    // The host's caches resolve no names outside their engine: the upstream by its address.
    const upstream = stack.upstreams.get(registry).container;
    const address = docker(
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        upstream,
    );
    upstreams = [{ registry, remote: `http://${address}:5000`, port: stack.ports[registry] }];
    await stack.up(remoteConfig, upstreams);
});

afterAll(async () => {
    // The caches on the second host while it answers, then the host, which is on the stack's
    // network here, and last that network and the upstreams.
    await stack?.docker.removeEverything();
    await host?.remove();
    await stack?.remove();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test("the caches run on the other engine, and every endpoint points at it", () => {
    const endpoint = `http://${host.address}:${stack.ports[registry]}`;
    const mirror = (stack.run.outputs.mirrors as Record<string, Record<string, string>>)[registry];
    expect(mirror.endpoint).toBe(endpoint);
    expect(mirror.hostEndpoint).toBe(endpoint);
    expect(stack.run.outputs.registryMirrorFlags).toEqual([
        "--registry-mirror",
        `${registry}=${endpoint}`,
    ]);
    expect(stack.run.outputs.dockerHost).toBe(host.dockerHost);
    const remote = host.docker("ps", "--format", "{{.Names}}").split("\n");
    expect(remote).toEqual(expect.arrayContaining([stack.cacheName(registry), stack.frontName]));
    expect(docker("ps", "-a", "--format", "{{.Names}}").split("\n")).not.toContain(stack.frontName);
});

test("a node on this machine pulls through the remote caches; a warm pull asks the upstream nothing", async () => {
    expect(await stack.pullOnNewNode([byTag(fixture)])).toEqual([fixture.artifact.manifest.digest]);
    const blobsAfterCold = stack.upstreams.blobRequests(registry);
    expect(blobsAfterCold).toBeGreaterThan(0);
    expect(await stack.pullOnNewNode([byTag(fixture)])).toEqual([fixture.artifact.manifest.digest]);
    expect(stack.upstreams.blobRequests(registry)).toBe(blobsAfterCold);
});

test("prewarm, verify, status and prune work on the remote caches with no extra flags", async () => {
    const prewarm = await runTool("prewarm", outputs(), workDir);
    expect(prewarm.stderr).toBe("");
    expect(prewarm.stdout).toContain("Warmed 2 of 2 images");
    expect(prewarm.code).toBe(0);

    const verify = await runTool("verify", outputs(), workDir);
    expect(verify.stderr).toBe("");
    expect(verify.stdout).toContain("All 2 images are in the caches.");
    expect(verify.code).toBe(0);

    const status = await runTool("status", outputs(), workDir, "--json");
    expect(status.code).toBe(0);
    const [cache] = JSON.parse(status.stdout).caches;
    expect(cache).toMatchObject({ health: "healthy", repositories: 2, images: 2, degraded: false });
    expect(cache.requests).toBeGreaterThan(0);
    expect(cache.upstreamBytes).toBeGreaterThan(0);

    const prune = await runTool("prune", outputs(), workDir, "--dry-run", "--to", "1TB", "--json");
    expect(prune.code).toBe(0);
    expect(JSON.parse(prune.stdout).heldBytes).toBeGreaterThan(1 << 20);
});

test("export and import move bytes through the remote engine's API: a bundle out, then back into a cache that lost the image", async () => {
    const bundle = path.join(workDir, "remote.tar");
    const exported = await runTool(
        "export",
        outputs(),
        workDir,
        bundle,
        "--images",
        byTag(prewarmed),
    );
    expect(exported.stderr).toBe("");
    expect(exported.code).toBe(0);
    // The remote cache loses the image: its repository and its blobs.
    host.docker(...["exec", stack.cacheName(registry), "rm", "-rf"], ...storedFolders(prewarmed));
    const lost = await runTool("verify", outputs(), workDir, "--images", byTag(prewarmed));
    expect(lost.code).toBe(1);
    const imported = await runTool("import", outputs(), workDir, bundle);
    expect(imported.stderr).toBe("");
    expect(imported.stdout).toContain(`imported  ${byTag(prewarmed)}`);
    expect(
        JSON.parse((await runTool("import", outputs(), workDir, bundle, "--json")).stdout),
    ).toMatchObject({ sentBytes: 0 });
    const verify = await runTool(
        "verify",
        outputs(),
        workDir,
        "--images",
        byTag(prewarmed),
        "--deep",
    );
    expect(verify.code).toBe(0);
});

test("destroy leaves the remote engine as it found it, the cache and ledger volumes kept (keepCache)", async () => {
    await stack.destroy();
    const after = host.inventory();
    expect(after.containers).toEqual(before.containers);
    expect(after.networks).toEqual(before.networks);
    expect(after.volumes).toEqual(
        [...before.volumes, stack.cacheName(registry), `${stack.id}-ledger`].sort(),
    );
});

test("an engine that does not answer, or refuses the login, stops up before anything is created", async () => {
    const attempt = (dockerHost: string) =>
        runProgram(
            localStackConfig(`${stack.id}-x-`, [], {
                ...remoteConfig,
                dockerHost,
                upstreams: undefined,
            }),
        );
    await expect(attempt(`ssh://root@${host.address}:1`)).rejects.toThrow(
        new RegExp(
            `pullthrough:dockerHost: no Docker engine answers at ssh://root@${host.address}:1: .*Connection refused`,
        ),
    );
    await expect(attempt(`ssh://nobody@${host.address}`)).rejects.toThrow(
        `pullthrough:dockerHost: ssh refused the login to nobody@${host.address}`,
    );
});

test("over tcp:// with TLS client certificates: the kept volume serves at once; without keepCache destroy takes it", async () => {
    const certPathBefore = process.env.DOCKER_CERT_PATH;
    process.env.DOCKER_CERT_PATH = host.certPath;
    try {
        const blobsBefore = stack.upstreams.blobRequests(registry);
        const tlsConfig = { ...remoteConfig, dockerHost: host.tlsDockerHost, keepCache: false };
        await stack.up(tlsConfig, upstreams);
        expect(stack.run.outputs.registryMirrorFlags).toEqual([
            "--registry-mirror",
            `${registry}=http://${host.address}:${stack.ports[registry]}`,
        ]);
        expect(await stack.pullOnNewNode([byTag(fixture)])).toEqual([
            fixture.artifact.manifest.digest,
        ]);
        expect(stack.upstreams.blobRequests(registry)).toBe(blobsBefore);
        const status = await runTool("status", outputs(), workDir, "--json");
        expect(status.stderr).toBe("");
        expect(status.code).toBe(0);

        await stack.destroy();
        // keepCache false: the volume went too, and the engine is exactly as it was found.
        expect(host.inventory()).toEqual(before);

        // Without the client certificate nothing is attempted.
        process.env.DOCKER_CERT_PATH = path.join(workDir, "no-certificates");
        await expect(
            runProgram(localStackConfig(`${stack.id}-y-`, upstreams, tlsConfig)),
        ).rejects.toThrow(
            `pullthrough:dockerHost: ${host.tlsDockerHost} is TLS, and ca.pem, cert.pem, key.pem are not in ${process.env.DOCKER_CERT_PATH}`,
        );
    } finally {
        if (certPathBefore === undefined) delete process.env.DOCKER_CERT_PATH;
        else process.env.DOCKER_CERT_PATH = certPathBefore;
    }
});
