/**
 * A second Docker host on this machine, for the `dockerHost` tests: a container of the locally
 * built `pullthrough-test/docker-host:debian` image (harness/docker-host-image.sh) on a network
 * the test made, running Debian's dockerd and sshd, reached as `ssh://root@<its address>`.
 *
 * ssh is set up as a user's ~/.ssh/config would be, without touching it: a key made for the run
 * and a config naming it, applied by an `ssh` first on PATH that adds `-F <config>`. Both the
 * docker CLI (the tools) and the Docker provider stand-in run that `ssh`.
 */
import { execFileSync } from "node:child_process";
import {
    chmodSync,
    copyFileSync,
    mkdirSync,
    mkdtempSync,
    readFileSync,
    rmSync,
    writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { docker, dockerApi, dockerInventory, waitFor } from "./docker";

const dockerHostImage = "pullthrough-test/docker-host:debian";
const repoRoot = path.resolve(__dirname, "..");

/**
 * Everything but SYS_RESOURCE, which this machine's runc cannot grant (so --privileged fails),
 * and no seccomp or AppArmor confinement: what a nested dockerd needs.
 */
const nestedEngineFlags = [
    ...["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE"],
    ...["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"],
    ...["--device-cgroup-rule", "a *:* rwm"],
];

export class SecondDockerHost {
    private constructor(
        readonly container: string,
        /** Its address on the test's network: how this machine reaches it. */
        readonly address: string,
        private readonly sshDir: string,
        /** ca.pem, cert.pem and key.pem of a client the engine trusts: a DOCKER_CERT_PATH. */
        readonly certPath: string,
        private readonly pathBefore: string,
    ) {}

    /** `dockerHost` for the stack: ssh as root, key only. */
    get dockerHost(): string {
        return `ssh://root@${this.address}`;
    }

    /** `dockerHost` for the stack over TCP: TLS, with the client certificate in `certPath`. */
    get tlsDockerHost(): string {
        return `tcp://${this.address}:2376`;
    }

    /** Starts the host on `network` and waits until its engine answers over ssh. */
    static async start(name: string, network: string): Promise<SecondDockerHost> {
        execFileSync(
            "bash",
            [path.join(repoRoot, "harness/docker-host-image.sh"), dockerHostImage],
            {
                stdio: "inherit",
            },
        );
        const sshDir = mkdtempSync(path.join(tmpdir(), "pt-ssh-"));
        const key = path.join(sshDir, "id_ed25519");
        execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
        docker(
            ...["run", "-d", "--name", name, "--network", network, ...nestedEngineFlags],
            // Names outside Docker's resolve nowhere, for the host's own dockerd too: asked to
            // run an image it lacks, it cannot even look up a registry.
            ...["--dns", "127.0.0.1"],
            ...["--env", `PULLTHROUGH_AUTHORIZED_KEY=${readFileSync(`${key}.pub`, "utf8").trim()}`],
            dockerHostImage,
        );
        const address = docker(
            ...["inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"],
            name,
        );
        const tls = issueCertificates(sshDir, address);
        docker("cp", `${tls.server}/.`, `${name}:/etc/docker-tls`);
        docker("exec", name, "touch", "/etc/docker-tls/ready");
        writeFileSync(
            path.join(sshDir, "config"),
            [
                `Host ${address}`,
                `  IdentityFile ${key}`,
                // The host key is new with each run: the test trusts the container it just made.
                "  StrictHostKeyChecking no",
                "  UserKnownHostsFile /dev/null",
                "  LogLevel ERROR",
                "",
            ].join("\n"),
        );
        const bin = path.join(sshDir, "bin");
        mkdirSync(bin);
        writeFileSync(
            path.join(bin, "ssh"),
            `#!/bin/sh\nexec /usr/bin/ssh -F ${path.join(sshDir, "config")} "$@"\n`,
        );
        chmodSync(path.join(bin, "ssh"), 0o755);
        const pathBefore = process.env.PATH ?? "";
        process.env.PATH = `${bin}:${pathBefore}`;
        const host = new SecondDockerHost(name, address, sshDir, tls.client, pathBefore);
        await waitFor("the second Docker host to answer over ssh", 60_000, async () =>
            host.docker("version", "--format", "{{.Server.APIVersion}}") ? true : undefined,
        ).catch((error: Error) => {
            throw new Error(`${error.message}\n${docker("logs", name)}`);
        });
        return host;
    }

    /** The docker CLI against this host's engine. */
    docker(...args: string[]): string {
        return execFileSync("docker", args, {
            encoding: "utf8",
            env: { ...process.env, DOCKER_HOST: this.dockerHost },
            stdio: ["ignore", "pipe", "pipe"],
            maxBuffer: 256 << 20,
        }).trim();
    }

    /** Copies local images to this host (it pulls nothing either). */
    load(images: readonly string[]): void {
        execFileSync(
            "sh",
            [
                "-c",
                `docker save ${images.join(" ")} | DOCKER_HOST=${this.dockerHost} docker load -q`,
            ],
            { stdio: ["ignore", "ignore", "inherit"], env: process.env },
        );
    }

    /** What the host's engine holds, by kind: to compare before and after a stack. */
    inventory() {
        return dockerInventory((...args) => this.docker(...args));
    }

    async remove(): Promise<void> {
        process.env.PATH = this.pathBefore;
        await dockerApi("DELETE", `/containers/${this.container}?force=true&v=true`).catch(
            () => undefined,
        );
        rmSync(this.sshDir, { recursive: true, force: true });
    }
}

/**
 * A CA, a server certificate for `address` and a client certificate, as Docker's guide to
 * protecting the daemon socket makes them: `server/` for dockerd, `client/` as DOCKER_CERT_PATH.
 */
function issueCertificates(dir: string, address: string): { server: string; client: string } {
    const server = path.join(dir, "server");
    const client = path.join(dir, "client");
    const openssl = (...args: string[]) =>
        execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    mkdirSync(server);
    mkdirSync(client);
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=pullthrough test CA",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    );
    const issue = (name: string, extensions: string) => {
        writeFileSync(path.join(dir, `${name}.ext`), extensions);
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            `/CN=${name}`,
            "-keyout",
            `${name}-key.pem`,
            "-out",
            `${name}.csr`,
        );
        openssl(
            "x509",
            "-req",
            "-in",
            `${name}.csr`,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            `${name}.ext`,
            "-out",
            `${name}-cert.pem`,
        );
    };
    issue("server", `subjectAltName = IP:${address}\nextendedKeyUsage = serverAuth\n`);
    issue("client", "extendedKeyUsage = clientAuth\n");
    for (const [from, to] of [
        ["ca.pem", `${server}/ca.pem`],
        ["server-cert.pem", `${server}/server-cert.pem`],
        ["server-key.pem", `${server}/server-key.pem`],
        ["ca.pem", `${client}/ca.pem`],
        ["client-cert.pem", `${client}/cert.pem`],
        ["client-key.pem", `${client}/key.pem`],
    ])
        copyFileSync(path.join(dir, from), to);
    return { server, client };
}
