/** `dockerHost`: which addresses are taken, where the caches are then reached, and the errors. */
import { planCaches } from "../../core/plan";
import {
    describeDockerHostFailure,
    dockerProviderArgs,
    dockerHostEnv,
    parsePublishedPorts,
} from "../../host/docker-host";
import { parseSettings } from "../../mirrors";
import { parseDockerHost } from "../../core/docker-host-url";

const identity = { project: "pullthrough", stack: "dev" };

test.each([
    ["ssh://builder@cache.team.lan", "ssh", "cache.team.lan"],
    ["ssh://builder@cache.team.lan:2222", "ssh", "cache.team.lan"],
    ["ssh://10.0.0.7", "ssh", "10.0.0.7"],
    ["tcp://cache.team.lan:2376", "tcp", "cache.team.lan"],
    ["unix:///var/run/docker.sock", "unix", undefined],
])("%s is a Docker host", (value, scheme, address) => {
    expect(parseDockerHost(value)).toEqual({ url: value, scheme, address });
});

test.each([
    ["cache.team.lan"], // no scheme
    ["ssh://builder:secret@cache.team.lan"], // Docker refuses a password in the URL
    ["ssh://cache.team.lan?x=1"],
    ["tcp://cache.team.lan"], // no port
    ["http://cache.team.lan:2376"],
    ["unix://"],
])("%s is not", (value) => {
    expect(parseDockerHost(value)).toBeUndefined();
    expect(() =>
        parseSettings({
            "pullthrough:dockerHost": value,
            "pullthrough:allowFrom": '["10.0.0.0/8"]',
        }),
    ).toThrow(
        /pullthrough:dockerHost: got .*; expected a Docker engine address as DOCKER_HOST takes it/,
    );
});

test("on another machine the caches are reached at its host, by nodes and by this machine", () => {
    const settings = parseSettings({
        "pullthrough:dockerHost": "ssh://builder@cache.team.lan",
        "pullthrough:allowFrom": '["192.168.10.0/24"]',
    });
    expect(settings.mirrorHost).toBe("cache.team.lan");
    const [cache] = planCaches(settings, identity);
    expect(cache.endpoint).toBe("http://cache.team.lan:5000");
    expect(cache.hostEndpoint).toBe("http://cache.team.lan:5000");
    // A local socket is this machine: nothing moves.
    const local = parseSettings({ "pullthrough:dockerHost": "unix:///run/user/1000/docker.sock" });
    expect(planCaches(local, identity)[0].hostEndpoint).toBe("http://127.0.0.1:5000");
});

test("a remote engine with no allowFrom is an error: every pull would get 403", () => {
    expect(() =>
        parseSettings({ "pullthrough:dockerHost": "ssh://builder@cache.team.lan" }),
    ).toThrow(
        /pullthrough:allowFrom: got \[\]; expected who may pull from cache.team.lan, this machine at least/,
    );
});

test("tcp:// is TLS: the provider's certPath and the CLI's DOCKER_TLS_VERIFY name the same folder", () => {
    const before = process.env.DOCKER_CERT_PATH;
    process.env.DOCKER_CERT_PATH = "/home/me/.docker-team";
    try {
        expect(dockerProviderArgs("tcp://cache.team.lan:2376")).toEqual({
            host: "tcp://cache.team.lan:2376",
            certPath: "/home/me/.docker-team",
        });
        expect(dockerHostEnv("tcp://cache.team.lan:2376")).toEqual({
            DOCKER_HOST: "tcp://cache.team.lan:2376",
            DOCKER_TLS_VERIFY: "1",
            DOCKER_CERT_PATH: "/home/me/.docker-team",
        });
        expect(dockerProviderArgs("ssh://me@box")).toEqual({ host: "ssh://me@box" });
        expect(dockerHostEnv("ssh://me@box")).toEqual({ DOCKER_HOST: "ssh://me@box" });
    } finally {
        if (before === undefined) delete process.env.DOCKER_CERT_PATH;
        else process.env.DOCKER_CERT_PATH = before;
    }
});

test("what the docker CLI printed becomes a reason a user can act on", () => {
    const cli = (ssh: string) =>
        `error during connect: Get "http://docker.example.com/v1.24/version": command [ssh -o ConnectTimeout=30 -T -l nobody -- box docker system dial-stdio] has exited with exit status 255, please make sure the URL is valid, and Docker 18.09 or later is installed on the remote host: stderr=${ssh}`;
    expect(
        describeDockerHostFailure(
            "ssh://nobody@box",
            cli("nobody@box: Permission denied (publickey)."),
        ),
    ).toBe(
        'ssh refused the login to nobody@box (Permission denied (publickey)); check that "ssh nobody@box" logs in without a prompt (a key in ssh-agent or ~/.ssh/config)',
    );
    expect(describeDockerHostFailure("ssh://me@box", cli("Host key verification failed."))).toBe(
        `ssh does not know box's host key; run "ssh me@box" once and accept it`,
    );
    expect(
        describeDockerHostFailure(
            "tcp://box:2376",
            "Cannot connect to the Docker daemon at tcp://box:2376. Is the docker daemon running?",
        ),
    ).toBe(
        "no Docker engine answers at tcp://box:2376: Cannot connect to the Docker daemon at tcp://box:2376. Is the docker daemon running?",
    );
});

test("published ports are read from the container listing, ranges and all, as Docker and Podman print them", () => {
    const listing = [
        "registry-front\t127.0.0.1:5000-5004->5000-5004/tcp, 127.0.0.1:5006->5006/tcp",
        "other\t0.0.0.0:8080->80/tcp, :::8080->80/tcp",
        "quiet\t",
    ].join("\n");
    expect(Object.fromEntries(parsePublishedPorts(listing))).toEqual({
        5000: "registry-front",
        5001: "registry-front",
        5002: "registry-front",
        5003: "registry-front",
        5004: "registry-front",
        5006: "registry-front",
        8080: "other",
    });
});
