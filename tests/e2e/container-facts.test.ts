/**
 * The cache supervisor obeys core/container-facts.ts: rendered with other paths than the
 * defaults, the real script in the registry image writes what it serves, says the disk is full
 * and finds partial uploads where those paths say, and the healthcheck built from the same facts
 * reads back as status expects. No network: the container has none.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import {
    SupervisorFacts,
    healthcheckCommand,
    readHealthcheck,
    renderSupervisor,
} from "../../core/container-facts";
import {
    docker,
    fixtureRegistryImage,
    prepareTestHost,
    sleep,
    waitFor,
} from "../../harness/docker";
import { parseListing } from "../../core/storage-layout";

jest.setTimeout(120_000);

const elsewhere: SupervisorFacts = {
    storage: "/srv/elsewhere",
    servingFile: "/tmp/elsewhere-serving",
    diskFullFile: "/tmp/elsewhere-disk-full",
    credentialsFile: "/etc/elsewhere-login.yml",
    leaseFile: "/tmp/elsewhere-lease",
};
const supervisor = renderSupervisor(
    readFileSync(path.join(__dirname, "../../container/cache-supervisor.sh"), "utf8"),
    elsewhere,
);
const upload = "repositories/pullthrough/facts/_uploads/0123-upload";
let container: string;
let workDir: string;

/** The healthcheck rendered from `elsewhere`, run as Docker runs it, read as status reads it. */
const healthcheck = () => {
    const script = `${healthcheckCommand(elsewhere)}; echo "exit $?"`;
    const output = docker("exec", container, "sh", "-c", script);
    const exitCode = Number(/exit (\d+)$/.exec(output)![1]);
    return readHealthcheck(output.replace(/\n?exit \d+$/, ""), exitCode);
};

beforeAll(() => {
    prepareTestHost();
    container = docker(
        ...["create", "--network", "none", "--tmpfs", `${elsewhere.storage}:size=1m`],
        ...["--env", "PULLTHROUGH_MODE=offline", "--env", "PULLTHROUGH_REMOTE=http://127.0.0.1:9"],
        ...["--env", `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=${elsewhere.storage}`],
        ...["--label", "pullthrough.test=container-facts"],
        ...["--entrypoint", "/bin/sh", fixtureRegistryImage, "-c", supervisor],
    );
    workDir = mkdtempSync(path.join(tmpdir(), "pt-facts-"));
    const login = path.join(workDir, "login.yml");
    writeFileSync(login, 'proxy:\n  username: "facts-user"\n  password: "facts-pw"\n');
    docker("cp", login, `${container}:${elsewhere.credentialsFile}`);
    docker("start", container);
});

afterAll(() => {
    if (container) docker("rm", "--force", "--volumes", container);
    rmSync(workDir, { recursive: true, force: true });
});

test("the supervisor writes what it serves where the facts say, and the healthcheck reads it", async () => {
    await waitFor("the supervisor to serve", 20_000, async () =>
        healthcheck().serving === "offline" ? true : undefined,
    );
    expect(docker("exec", container, "cat", elsewhere.servingFile)).toBe("offline");
    expect(healthcheck()).toEqual({ serving: "offline" });
});

test("the login file the facts name goes into the registry's config", () => {
    expect(docker("exec", container, "cat", "/tmp/pullthrough-registry.yml")).toContain(
        'username: "facts-user"',
    );
});

test("partial uploads are found under the storage the facts name", () => {
    docker(
        ...["exec", container, "sh", "-c"],
        `mkdir -p ${elsewhere.storage}/docker/registry/v2/${upload} && echo partial >${elsewhere.storage}/docker/registry/v2/${upload}/data`,
    );
    const listing = docker("exec", container, "sh", "-c", supervisor, "sh", "uploads");
    expect(parseListing(listing).uploads).toEqual([
        expect.objectContaining({ path: upload, size: 8, state: "writing" }),
    ]);
});

test("a full disk is said in the file the facts name, and the healthcheck fails with it", async () => {
    docker(
        "exec",
        container,
        "sh",
        "-c",
        `head -c 2000000 /dev/zero >${elsewhere.storage}/fill || true`,
    );
    const full = await waitFor("the disk to read full", 20_000, async () => healthcheck().problem);
    expect(full).toMatch(
        new RegExp(`^disk is full: \\d+ MiB free of 1 MiB on ${elsewhere.storage}`),
    );
    expect(docker("exec", container, "cat", elsewhere.diskFullFile)).toBe(full);
    expect(healthcheck().serving).toBe("offline");
});

test("a view under a lease serves while it is renewed and stops itself once it is not", async () => {
    const view = docker(
        ...["run", "--detach", "--rm", "--network", "none"],
        ...["--env", "PULLTHROUGH_MODE=offline", "--env", "PULLTHROUGH_REMOTE=http://127.0.0.1:9"],
        ...["--env", "PULLTHROUGH_VIEW_LEASE_SECONDS=3"],
        ...["--label", "pullthrough.test=container-facts"],
        ...["--entrypoint", "/bin/sh", fixtureRegistryImage, "-c", supervisor],
    );
    const running = () => docker("ps", "--quiet", "--filter", `id=${view}`) !== "";
    try {
        for (let second = 0; second < 6; second++) {
            docker("exec", view, "touch", elsewhere.leaseFile);
            await sleep(1000);
        }
        expect(running()).toBe(true);
        // The lease runs out 3 s after the last renewal; the supervisor looks every second.
        await waitFor("the view to stop itself", 15_000, async () =>
            running() ? undefined : true,
        );
    } finally {
        // Gone already when it stopped itself (--rm).
        if (docker("ps", "--all", "--quiet", "--filter", `id=${view}`))
            docker("rm", "--force", "--volumes", view);
    }
});
