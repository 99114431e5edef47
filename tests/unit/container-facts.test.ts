/** The supervisor's own paths are the facts core/container-facts.ts defines, and only those. */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import {
    healthcheckCommand,
    readHealthcheck,
    renderSupervisor,
    supervisorFacts,
} from "../../core/container-facts";

const script = readFileSync(path.join(__dirname, "../../container/cache-supervisor.sh"), "utf8");

test("the supervisor as it stands assigns every fact its defined value", () => {
    expect(renderSupervisor(script)).toBe(script);
});

test("rendering sets each fact's assignment and nothing else", () => {
    const rendered = renderSupervisor(script, { ...supervisorFacts, storage: "/srv/cache" });
    expect(rendered).toContain("\nstorage=/srv/cache\n");
    expect(rendered.replace("storage=/srv/cache", "storage=/var/lib/registry")).toBe(script);
});

test("a script that lost a fact's assignment is refused, naming it", () => {
    expect(() => renderSupervisor(script.replace(/^serving_file=.*$/m, ""))).toThrow(
        "cache-supervisor.sh assigns serving_file 0 times",
    );
});

test("the healthcheck's first line is what the cache serves, its last the problem", () => {
    expect(readHealthcheck("proxy\n", 0)).toEqual({ serving: "proxy" });
    expect(readHealthcheck("offline\ndisk is full: 0 MiB free", 1)).toEqual({
        serving: "offline",
        problem: "disk is full: 0 MiB free",
    });
    expect(readHealthcheck("", 1)).toEqual({
        serving: "unknown",
        problem: "the last healthcheck failed",
    });
});

describe("the healthcheck, run by a shell as Docker runs it", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "pt-health-"));
    const facts = {
        ...supervisorFacts,
        servingFile: path.join(dir, "serving"),
        diskFullFile: path.join(dir, "disk-full"),
    };
    /** `wget` answers as the registry would: at once, or not at all. */
    const check = (registryAnswers: boolean) => {
        writeFileSync(path.join(dir, "wget"), `#!/bin/sh\nexit ${registryAnswers ? 0 : 1}\n`);
        chmodSync(path.join(dir, "wget"), 0o755);
        const run = spawnSync("/bin/sh", ["-c", healthcheckCommand(facts)], {
            env: { PATH: `${dir}:/usr/bin:/bin` },
            encoding: "utf8",
        });
        return readHealthcheck(run.stdout, run.status ?? 1);
    };
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    test("healthy, saying what the cache serves", () => {
        writeFileSync(facts.servingFile, "offline\n");
        writeFileSync(facts.diskFullFile, "");
        expect(check(true)).toEqual({ serving: "offline" });
    });

    test("unhealthy while the disk is full, saying so last", () => {
        writeFileSync(facts.servingFile, "proxy\n");
        writeFileSync(facts.diskFullFile, "disk is full: 0 MiB free\n");
        expect(check(true)).toEqual({ serving: "proxy", problem: "disk is full: 0 MiB free" });
    });

    test("unhealthy when the registry does not answer", () => {
        writeFileSync(facts.diskFullFile, "");
        expect(check(false)).toEqual({
            serving: "unknown",
            problem: "the last healthcheck failed",
        });
    });
});

test("a fact that is not a plain absolute path is refused: it lands unquoted in the script", () => {
    expect(() =>
        renderSupervisor(script, { ...supervisorFacts, servingFile: "/tmp/a b; rm -rf /" }),
    ).toThrow('servingFile: "/tmp/a b; rm -rf /" is not a plain absolute path');
});
