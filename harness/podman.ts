/**
 * A private rootful Podman serving the Docker API on a socket of its own: Debian's podman 4.3 with
 * netavark, run as `podman system service`, its storage, runtime state and networks in a
 * temporary folder, so it finds nothing and leaves nothing. What this machine needs of it:
 *
 * - Its sandbox caps open files at 20000, and rootful Podman raises a container's nofile and
 *   nproc past what it may (runc: "error setting rlimit"): a containers.conf of its own sets both
 *   to what the service itself has.
 * - It has no systemd, which Podman runs healthchecks from: the service runs `podman
 *   healthcheck run` for every running container on the interval the stack's healthchecks
 *   declare (3 s), as systemd's timers would.
 *
 * Images come from Docker's store (`docker save | podman load`); nothing is pulled.
 */
import { ChildProcess, execFile, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { dockerApi, dockerInventory, waitFor } from "./docker";

const run = promisify(execFile);

/** How often healthchecks run: the interval every Pullthrough container declares. */
const healthcheckIntervalMs = 3000;

/** Where a service keeps everything: the socket, storage and run state, networks, its config. */
const socketIn = (dir: string) => path.join(dir, "podman.sock");
const envFor = (dir: string) => ({
    ...process.env,
    CONTAINERS_CONF: path.join(dir, "containers.conf"),
});
const flagsFor = (dir: string) => [
    ...["--root", path.join(dir, "root")],
    ...["--runroot", path.join(dir, "run")],
    ...["--storage-driver", "overlay"],
];

/** The containers.conf this machine needs (see above). */
function containersConf(dir: string): string {
    // The service runs with nproc at the kernel's pid_max (seen: 32768), below this shell's.
    const pidMax = Number(readFileSync("/proc/sys/kernel/pid_max", "utf8"));
    const hard = Number(
        /^Max processes\s+\S+\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"))?.[1] ??
            pidMax,
    );
    const nproc = Math.min(pidMax, hard);
    return [
        "[containers]",
        `default_ulimits = ["nofile=20000:20000", "nproc=${nproc}:${nproc}"]`,
        "[engine]",
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        "[network]",
        'network_backend = "netavark"',
        `network_config_dir = "${path.join(dir, "networks")}"`,
        "",
    ].join("\n");
}

export class PodmanService {
    private constructor(
        private readonly dir: string,
        private readonly service: ChildProcess,
        private readonly healthchecks: NodeJS.Timeout,
    ) {}

    /** `dockerHost` for the stack: the service's socket. */
    get dockerHost(): string {
        return `unix://${socketIn(this.dir)}`;
    }

    static async start(): Promise<PodmanService> {
        const dir = mkdtempSync(path.join(tmpdir(), "pt-podman-"));
        writeFileSync(path.join(dir, "containers.conf"), containersConf(dir));
        const service = spawn(
            "podman",
            [...flagsFor(dir), "system", "service", "--time", "0", `unix://${socketIn(dir)}`],
            { env: envFor(dir), stdio: ["ignore", "ignore", "pipe"] },
        );
        let log = "";
        service.stderr!.on("data", (chunk: Buffer) => (log = (log + chunk).slice(-4000)));
        await waitFor("podman system service to answer", 30_000, async () => {
            if (service.exitCode !== null) throw new Error(`podman exited: ${log}`);
            await dockerApi("GET", "/version", undefined, undefined, `unix://${socketIn(dir)}`);
            return true;
        });
        const healthchecks = setInterval(() => void runHealthchecks(dir), healthcheckIntervalMs);
        return new PodmanService(dir, service, healthchecks);
    }

    podman(...args: string[]): string {
        return execFileSync("podman", [...flagsFor(this.dir), ...args], {
            env: envFor(this.dir),
            encoding: "utf8",
            stdio: ["pipe", "pipe", "pipe"],
        }).trim();
    }

    /**
     * Copies `images` from Docker's store. Podman's Docker API names an image as Docker does,
     * `docker.io/<name>` for a name without a registry, so each gets that name too.
     */
    load(images: readonly string[]): void {
        for (const image of images) {
            execFileSync(
                "sh",
                [
                    "-c",
                    'image=$1 && shift && docker save "$image" | podman "$@"',
                    "sh",
                    image,
                    ...flagsFor(this.dir),
                    "load",
                ],
                { env: envFor(this.dir), stdio: "pipe" },
            );
            this.podman("tag", `localhost/${image}`, `docker.io/${image}`);
        }
    }

    /** What Podman holds: containers, volumes and networks by name. */
    inventory() {
        return dockerInventory((...args) => this.podman(...args));
    }

    /** Stops the service and removes everything it held, its folder last. */
    async stop(): Promise<void> {
        clearInterval(this.healthchecks);
        this.service.kill("SIGTERM");
        await waitFor("podman to exit", 10_000, async () =>
            this.service.exitCode !== null || this.service.signalCode ? true : undefined,
        ).catch(() => this.service.kill("SIGKILL"));
        this.podman("system", "reset", "--force");
        // Conmon keeps each finished exec session (a healthcheck, a tool's exec) for 5 minutes:
        // not past the test. A killed one may still be writing into the folder for a moment.
        spawnSync("pkill", ["-f", this.dir]);
        // Gone once no process names the folder any more (pgrep exits 1 when none matches).
        await waitFor("conmon's exec sessions to exit", 10_000, async () =>
            spawnSync("pgrep", ["-f", this.dir]).status === 1 ? true : undefined,
        ).catch(() => spawnSync("pkill", ["-KILL", "-f", this.dir]));
        // A mount Podman left under the folder (its overlay storage) would fail the removal with
        // EBUSY: each is detached first, the deepest first.
        const mounts = readFileSync("/proc/mounts", "utf8")
            .split("\n")
            .map((line) => line.split(" ")[1])
            .filter((mount) => mount?.startsWith(`${this.dir}/`))
            .reverse();
        for (const mount of mounts) spawnSync("umount", ["--lazy", mount]);
        rmSync(this.dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
    }
}

/** One round of what systemd's timers would do: `podman healthcheck run` for each running container. */
async function runHealthchecks(dir: string): Promise<void> {
    const podman = (...args: string[]) =>
        run("podman", [...flagsFor(dir), ...args], { env: envFor(dir) });
    const { stdout } = await podman("ps", "--format", "{{.Names}}").catch(() => ({ stdout: "" }));
    await Promise.all(
        stdout
            .split("\n")
            .filter(Boolean)
            .map((name) => podman("healthcheck", "run", name).catch(() => undefined)),
    );
}
