/**
 * Who may pull, and who can read a login, on the real engine. A "LAN host" is a network
 * namespace joined to this host by a veth pair, with an address of the test's choosing: its
 * connections reach the front with their own source address, as a laptop's on the same Wi-Fi
 * would (a container on a Docker network comes through docker-proxy instead, from the front
 * network's gateway). The upstream demands a login (htpasswd) and serves the fixture registry's
 * storage.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { countLogLines, docker, fixtureRegistry2Image } from "../../harness/engine";
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
const subnet = 200 + (process.pid % 50);
const lan = {
    namespace: `pt-lan-${process.pid}`,
    host: `198.18.${subnet}.1`,
    client: `198.18.${subnet}.2`,
};
let stack: TestStack;
let authUpstream: string;
let htpasswdDir: string;

const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "pipe" });
/** The HTTP status a LAN host gets for the cache's /v2/. */
function fetchStatusFromLan(): string {
    return execFileSync(
        "ip",
        [
            ...["netns", "exec", lan.namespace],
            ...["curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}"],
            `http://${lan.host}:${stack.ports[registry]}/v2/`,
        ],
        { encoding: "utf8" },
    );
}

function up(extra: Record<string, unknown> = {}) {
    return stack.up({ bindAddress: "0.0.0.0", credentials: { [registry]: login }, ...extra }, [
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
    ip("netns", "add", lan.namespace);
    ip("link", "add", `${lan.namespace}-h`, "type", "veth", "peer", "name", `${lan.namespace}-c`);
    ip("link", "set", `${lan.namespace}-c`, "netns", lan.namespace);
    ip("addr", "add", `${lan.host}/24`, "dev", `${lan.namespace}-h`);
    ip("link", "set", `${lan.namespace}-h`, "up");
    ip(
        "netns",
        "exec",
        lan.namespace,
        "ip",
        "addr",
        "add",
        `${lan.client}/24`,
        "dev",
        `${lan.namespace}-c`,
    );
    ip("netns", "exec", lan.namespace, "ip", "link", "set", `${lan.namespace}-c`, "up");
    await up();
});

afterAll(async () => {
    if (lan.namespace) execFileSync("ip", ["netns", "del", lan.namespace], { stdio: "ignore" });
    if (authUpstream) docker("rm", "--force", "--volumes", authUpstream);
    await stack?.remove();
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
    expect(fetchStatusFromLan()).toBe("403");
    // This host's own clients (through loopback) still pull.
    expect((await fetch(`http://127.0.0.1:${stack.ports[registry]}/v2/`)).status).toBe(200);
    await up({ allowFrom: [`198.18.${subnet}.0/24`] });
    expect(fetchStatusFromLan()).toBe("200");
});
