/**
 * A newcomer's first minutes: `npm run up` on a machine without the Pulumi CLI, and the tools'
 * help and errors. Downloads are tried in an empty network namespace, so nothing leaves.
 */
import { spawnSync } from "node:child_process";
import {
    chmodSync,
    mkdtempSync,
    readFileSync,
    rmSync,
    statSync,
    symlinkSync,
    writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import * as path from "node:path";
import { dockerUnreachable } from "../../host/docker-host";

const project = path.resolve(__dirname, "../..");
const script = path.join(project, "scripts/pulumi-local.sh");
/** PATH as `npm run` builds it on a machine with Node but no Pulumi CLI. */
const npmPath = `${project}/node_modules/.bin:/usr/local/bin:/usr/bin:/bin`;

let home: string;
beforeEach(() => {
    home = mkdtempSync(path.join(tmpdir(), "pt-home-"));
});
afterEach(() => rmSync(home, { recursive: true, force: true }));

describe("npm run up without a Pulumi CLI on PATH", () => {
    test("uses the pulumi npm package's, and when it cannot download says so in one line", () => {
        // unshare: a network namespace of its own, with nothing in it but loopback.
        const run = spawnSync("unshare", ["-rn", "sh", script, "up", "--yes"], {
            env: { PATH: npmPath, HOME: home },
            encoding: "utf8",
        });
        const version = JSON.parse(
            readFileSync(path.join(project, "node_modules/pulumi/package.json"), "utf8"),
        ).version;
        expect(run.status).toBe(127);
        expect(run.stderr.trimEnd().split("\n")).toEqual([
            `error: no Pulumi CLI on PATH, and downloading v${version} from get.pulumi.com failed (pulumi: fetch failed: get.pulumi.com could not be reached; is this machine offline?): install it from https://www.pulumi.com/docs/install/ and run this again`,
        ]);
    });

    /** A `pulumi` on PATH that reports `version` and records every call. */
    function installedPulumi(version: string) {
        const bin = mkdtempSync(path.join(tmpdir(), "pt-bin-"));
        const calls = path.join(bin, "calls");
        writeFileSync(
            path.join(bin, "pulumi"),
            `#!/bin/sh\necho "$@" >> '${calls}'\n[ "$1" != version ] || echo v${version}\n`,
        );
        chmodSync(path.join(bin, "pulumi"), 0o755);
        const run = (...args: string[]) => runWith({}, ...args);
        const runWith = (env: Record<string, string>, ...args: string[]) =>
            spawnSync("unshare", ["-rn", "sh", script, ...args], {
                env: {
                    PATH: `${project}/node_modules/.bin:${bin}:/usr/bin:/bin`,
                    HOME: home,
                    ...env,
                },
                encoding: "utf8",
            });
        const recorded = () => readFileSync(calls, "utf8").trim().split("\n");
        return {
            run,
            runWith,
            recorded,
            remove: () => rmSync(bin, { recursive: true, force: true }),
        };
    }

    test("a pulumi installed on PATH wins over the npm package's", () => {
        const pulumi = installedPulumi("3.190.0");
        try {
            expect(pulumi.run("preview").status).toBe(0);
            expect(pulumi.recorded()).toEqual([
                "version",
                "stack select --create dev",
                "preview --stack dev",
            ]);
        } finally {
            pulumi.remove();
        }
    });

    test("npm run pulumi passes any command through on the same stack; CLI commands take none", () => {
        const pulumi = installedPulumi("3.265.0");
        try {
            pulumi.run("config", "set", "pullthrough:ttl", "168h");
            pulumi.run("stack", "output", "--json", "--stack", "ci");
            pulumi.run("preview", "--stack=staging");
            pulumi.run("up", "-s", "prod");
            pulumi.runWith({ PULUMI_STACK: "team" }, "preview");
            pulumi.run("version");
            // The stack a command names is the one selected: no dev stack made on the way.
            expect(pulumi.recorded().filter((call) => call !== "version")).toEqual([
                "stack select --create dev",
                "config set pullthrough:ttl 168h --stack dev",
                "stack select --create ci",
                "stack output --json --stack ci",
                "stack select --create staging",
                "preview --stack=staging",
                "stack select --create prod",
                "up -s prod",
                "stack select --create team",
                "preview --stack team",
            ]);
        } finally {
            pulumi.remove();
        }
    });

    test("a pulumi on PATH older than Pulumi.yaml needs: the package's CLI instead, said in one line", () => {
        const pulumi = installedPulumi("3.100.0");
        try {
            const run = pulumi.run("up", "--yes");
            const [warning, error] = run.stderr.trimEnd().split("\n");
            expect(warning).toMatch(
                /^pullthrough: \S+\/pulumi is v3\.100\.0, older than the 3\.187\.0 Pulumi\.yaml needs; using the pulumi npm package's CLI instead$/,
            );
            // Here the package's CLI cannot download; it is what ran.
            expect(error).toMatch(/^error: no Pulumi CLI on PATH, and downloading v/);
            expect(pulumi.recorded()).toEqual(["version"]);
        } finally {
            pulumi.remove();
        }
    });
});

describe("npm run up under sudo (a QEMU cluster needs root)", () => {
    test("the user's state goes back to the user afterwards, said in one line", () => {
        const bin = mkdtempSync(path.join(tmpdir(), "pt-bin-"));
        try {
            // A CLI that writes state as `pulumi up` does: in ~/.pulumi and talosctl's ~/.talos.
            writeFileSync(
                path.join(bin, "pulumi"),
                `#!/bin/sh\nmkdir -p "$HOME/.pulumi/stacks" "$HOME/.talos/clusters"\necho "$@" >"$HOME/.pulumi/stacks/dev.json"\ntouch "$HOME/.talos/clusters/state.yaml"\n`,
            );
            chmodSync(path.join(bin, "pulumi"), 0o755);
            const run = spawnSync("sh", [script, "up", "--yes"], {
                env: {
                    PATH: `${bin}:/usr/bin:/bin`,
                    HOME: home,
                    SUDO_USER: "nobody",
                    SUDO_UID: "65534",
                    SUDO_GID: "65534",
                    // A stack with no file in the checkout, which is not the test's to give away.
                    PULUMI_STACK: "sudo",
                },
                encoding: "utf8",
            });
            expect(run.status).toBe(0);
            expect(run.stderr.trimEnd().split("\n")).toEqual([
                "pullthrough: ran as root under sudo; gave nobody back ~/.pulumi, ~/.talos and Pulumi.sudo.yaml",
            ]);
            for (const file of [".pulumi/stacks/dev.json", ".talos/clusters/state.yaml", ".pulumi"])
                expect(statSync(path.join(home, file)).uid).toBe(65534);
            expect(readFileSync(path.join(home, ".pulumi/stacks/dev.json"), "utf8")).toBe(
                "up --yes --stack sudo\n",
            );
        } finally {
            rmSync(bin, { recursive: true, force: true });
        }
    });
});

describe("the tools", () => {
    const tool = (...args: string[]) =>
        spawnSync(path.join(project, "node_modules/.bin/tsx"), ["tools/cli.ts", ...args], {
            cwd: project,
            encoding: "utf8",
        });

    test.each<[string, string[], string[]]>([
        ["prewarm", ["--images", "--platform", "--concurrency"], ["--deep", "--dry-run", "--to"]],
        ["verify", ["--images", "--deep", "--repair"], ["--dry-run", "--to"]],
        ["status", [], ["--images", "--concurrency", "--dry-run"]],
        ["prune", ["--to", "--older-than", "--dry-run"], ["--images", "--concurrency"]],
        [
            "export",
            ["--images", "--platform", "--format"],
            ["--dry-run", "--deep", "--concurrency"],
        ],
        ["import", ["--dry-run"], ["--images", "--platform", "--deep", "--concurrency"]],
    ])("%s --help and -h print its own options, and exit 0", (command, own, others) => {
        for (const flag of ["--help", "-h"]) {
            const run = tool(command, flag);
            expect(run.status).toBe(0);
            expect(run.stdout.split("\n")[0]).toMatch(new RegExp(`^Usage: npm run ${command} -- `));
            for (const option of [...own, "--outputs", "--stack", "--json", "-h, --help"])
                expect(run.stdout).toContain(option);
            for (const option of others) expect(run.stdout).not.toContain(option);
            expect(run.stderr).toBe("");
        }
    });

    test.each([
        ["import", ["x.tar", "--deep"]],
        ["prewarm", ["--dry-run"]],
        ["status", ["--images", "all"]],
        ["prune", ["--platform", "linux/amd64"]],
    ])(
        "%s refuses a flag it does not take, naming it, with its usage, before any work",
        (command, args) => {
            const run = tool(command, ...args);
            expect(run.status).toBe(2);
            const flag = args.find((arg) => arg.startsWith("--"))!;
            expect(run.stderr.trimEnd().split("\n")).toEqual([
                expect.stringMatching(
                    new RegExp(
                        `^error: ${command} takes no ${flag}; usage: npm run ${command} -- .*\\[--json\\] \\[--help\\]$`,
                    ),
                ),
            ]);
        },
    );

    test("the stack comes from PULUMI_STACK when --stack is not given, as for npm run pulumi", () => {
        const run = spawnSync(
            path.join(project, "node_modules/.bin/tsx"),
            ["tools/cli.ts", "status"],
            { cwd: project, env: { ...process.env, PULUMI_STACK: "nowhere" }, encoding: "utf8" },
        );
        expect(run.status).toBe(2);
        expect(run.stderr).toContain("Pulumi.nowhere.yaml");
    });

    test("an --outputs file that is not there is one line, not a stack trace", () => {
        const run = tool("verify", "--outputs", "/nonexistent/outputs.json");
        expect(run.status).toBe(2);
        expect(run.stderr.trimEnd().split("\n")).toEqual([
            "error: --outputs: cannot read /nonexistent/outputs.json (no such file); expected a file holding `npm run --silent outputs`",
        ]);
    });

    test("prune with no budget anywhere says how to give one, before touching any cache", () => {
        const run = tool("prune");
        expect(run.status).toBe(2);
        expect(run.stderr.trimEnd().split("\n")).toEqual([
            "error: nothing to prune to: pass --to SIZE or --older-than AGE, or set pullthrough:maxSize",
        ]);
        expect(tool("prune", "--to", "lots").stderr).toContain(
            'error: --to: "lots" is not a size such as 20GiB, 500MB or 1.5TB',
        );
    });

    test("under --json an error is JSON on stdout too", () => {
        const run = tool("prewarm", "--outputs", "/nonexistent/outputs.json", "--json");
        expect(run.status).toBe(2);
        expect(JSON.parse(run.stdout)).toEqual({
            ok: false,
            error: expect.stringContaining("--outputs: cannot read /nonexistent/outputs.json"),
        });
        const unknown = tool("verify", "--bogus", "--json");
        expect(JSON.parse(unknown.stdout).error).toMatch(
            /^verify takes no --bogus; usage: npm run verify -- \[--outputs FILE\]/,
        );
    });
});

describe("an engine the tools cannot reach: exit 2, one line naming the cause", () => {
    const status = (env: NodeJS.ProcessEnv) =>
        spawnSync(path.join(project, "node_modules/.bin/tsx"), ["tools/cli.ts", "status"], {
            cwd: project,
            env: { ...process.env, ...env },
            encoding: "utf8",
        });

    test("no engine answers at the address", () => {
        const run = status({ DOCKER_HOST: "unix:///nonexistent/docker.sock" });
        expect(run.status).toBe(2);
        expect(run.stderr.trimEnd().split("\n")).toEqual([
            "error: the Docker engine at unix:///nonexistent/docker.sock does not answer: start Docker, or check pullthrough:dockerHost",
        ]);
    });

    test("no docker CLI on PATH", () => {
        // Node alone on PATH: its own folder may hold docker too (/usr/bin).
        symlinkSync(process.execPath, path.join(home, "node"));
        const run = status({ PATH: home });
        expect(run.status).toBe(2);
        expect(run.stderr.trimEnd().split("\n")).toEqual([
            "error: the tools need the docker CLI (they look inside the caches); none found on PATH",
        ]);
    });

    test("a socket this user may not use: what the docker CLI prints names the fix", async () => {
        // The real CLI, as an unprivileged user, against a socket only root may open.
        const socket = path.join(home, "docker.sock");
        const server = createServer();
        await new Promise<void>((resolve) => server.listen(socket, resolve));
        try {
            chmodSync(home, 0o755);
            chmodSync(socket, 0o600);
            const run = spawnSync(
                "setpriv",
                [
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "docker",
                    "--host",
                    `unix://${socket}`,
                    "version",
                ],
                { encoding: "utf8", env: { PATH: process.env.PATH, HOME: "/nonexistent" } },
            );
            expect(run.status).not.toBe(0);
            expect(dockerUnreachable(run.stderr)).toBe(
                `no permission to use the Docker engine at unix://${socket}: add your user to the docker group and log in again, or run as root`,
            );
        } finally {
            server.close();
        }
    });
});
