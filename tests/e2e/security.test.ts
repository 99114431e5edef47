/**
 * Who may pull, and who can read a login, on the real engine. The stranger is a container at an
 * address of the test's choosing on a Docker network the test creates, joined to the front after
 * it started: it reaches the front directly, with its own source address, as a laptop on the
 * same Wi-Fi would (a client through a published port comes from the front network's gateway
 * instead, which the front allows). The upstream demands a login (htpasswd) and serves the
 * fixture registry's storage.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { countLogLines, docker, fixtureRegistry2Image } from "../../harness/docker";
import { TestStack } from "../../harness/stack";
import { FixtureImage, byTag } from "../../harness/upstreams";
import { image, layer } from "../../harness/oci";

jest.setTimeout(240_000);

const registry = "ghcr.io";
const pulled: FixtureImage = {
    registry,
    repository: "pullthrough/secure",
    tag: "v1",
    artifact: image([layer("secure-a", 64 << 10)], { oci: true }),
};
// Quotes, a colon and a hash: YAML would misread any of them unquoted.
const login = { username: "alice", password: `s3cr"et: 'pw' #1` };
const strangers = {
    network: `pt-strangers-${process.pid}`,
    subnet: `10.219.${process.pid % 250}.0/24`,
    client: `10.219.${process.pid % 250}.50`,
};
let stack: TestStack;
let authUpstream: string;
let htpasswdDir: string;

/**
 * The HTTP status a stranger gets for the cache's /v2/. The front is joined to the strangers'
 * network after it started, so that network is not one of its own.
 */
function statusForStranger(): string {
    docker("network", "connect", strangers.network, stack.frontName);
    const front = docker(
        ...[
            "inspect",
            "--format",
            `{{(index .NetworkSettings.Networks "${strangers.network}").IPAddress}}`,
        ],
        stack.frontName,
    );
    const url = `http://${front}:${stack.ports[registry]}/v2/`;
    // busybox wget: silent on 200, "server returned error: HTTP/1.1 403 Forbidden" otherwise.
    const said = docker(
        ...["run", "--rm", "--network", strangers.network, "--ip", strangers.client],
        ...[
            "--entrypoint",
            "sh",
            fixtureRegistry2Image,
            "-c",
            `wget -q -O /dev/null ${url} 2>&1 || true`,
        ],
    );
    return /HTTP\/1\.1 (\d{3})/.exec(said)?.[1] ?? "200";
}

function up(extra: Record<string, unknown> = {}) {
    return stack.up({ credentials: { [registry]: login }, ...extra }, [
        { registry, remote: `http://${authUpstream}:5000`, port: stack.ports[registry] },
    ]);
}

beforeAll(async () => {
    stack = await TestStack.start("security", [registry], [pulled]);
    htpasswdDir = mkdtempSync(path.join(tmpdir(), "pt-htpasswd-"));
    const entry = execFileSync("htpasswd", ["-Bbn", login.username, login.password], {
        encoding: "utf8",
    });
    writeFileSync(path.join(htpasswdDir, "htpasswd"), entry);
    // The fixture upstream's storage, behind a login.
    authUpstream = `${stack.id}-auth`;
    docker(
        ...["run", "-d", "--name", authUpstream, "--network", stack.id],
        ...["--volumes-from", stack.upstreams.get(registry).container],
        ...["-v", `${htpasswdDir}:/auth:ro`],
        ...["-e", "REGISTRY_AUTH=htpasswd", "-e", "REGISTRY_AUTH_HTPASSWD_REALM=pullthrough-test"],
        ...["-e", "REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd"],
        fixtureRegistry2Image,
    );
    docker("network", "create", "--subnet", strangers.subnet, strangers.network);
    await up();
});

afterAll(async () => {
    if (authUpstream) docker("rm", "--force", "--volumes", authUpstream);
    await stack?.remove();
    docker("network", "rm", strangers.network);
    if (htpasswdDir) rmSync(htpasswdDir, { recursive: true, force: true });
});

test("the login reaches the upstream, but never the container's config or environment", async () => {
    const [digest] = await stack.pullOnNewNode([byTag(pulled)]);
    expect(digest).toBe(pulled.artifact.manifest.digest);
    // The upstream answers 401 without a login: its 200s for the blobs went to the cache's.
    const served = /"GET \/v2\/pullthrough\/secure\/blobs\/sha256:[0-9a-f]{64} HTTP\/1\.1" 200/;
    expect(countLogLines(authUpstream, served)).toBeGreaterThan(0);
    expect((await fetch(`http://127.0.0.1:${stack.ports[registry]}/v2/`)).status).toBe(200);
    const cache = stack.cacheName(registry);
    expect(docker("inspect", cache)).not.toContain(login.password);
    const environments = docker("exec", cache, "sh", "-c", "cat /proc/[0-9]*/environ");
    expect(environments).not.toContain(login.password);
    expect(environments).toContain("PULLTHROUGH_MODE=auto");
});

test("a host outside the allowed networks gets 403; allowFrom lets it in", async () => {
    expect(statusForStranger()).toBe("403");
    // This host's own clients (through loopback) still pull.
    expect((await fetch(`http://127.0.0.1:${stack.ports[registry]}/v2/`)).status).toBe(200);
    await up({ allowFrom: [strangers.subnet] });
    expect(statusForStranger()).toBe("200");
});
