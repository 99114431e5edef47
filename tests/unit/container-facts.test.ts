/** The supervisor's own paths are the facts core/container-facts.ts defines, and only those. */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { readHealthcheck, renderSupervisor, supervisorFacts } from "../../core/container-facts";

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

test("a fact that is not a plain absolute path is refused: it lands unquoted in the script", () => {
    expect(() =>
        renderSupervisor(script, { ...supervisorFacts, servingFile: "/tmp/a b; rm -rf /" }),
    ).toThrow('servingFile: "/tmp/a b; rm -rf /" is not a plain absolute path');
});
