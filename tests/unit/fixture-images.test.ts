/**
 * harness/fixture-images.sh on a plain clone, with no shared/ beside it: it pulls the official
 * registry:3.0.0 by digest and tags it. Run against a `docker` stand-in first on PATH that
 * records what it is asked, since a real `docker pull` would leave this machine.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

const script = path.join(__dirname, "../../harness/fixture-images.sh");
let dir: string;
beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "pt-fixtures-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The layout an image-building script stamps on what it builds. */
const layoutOf = (builder: string) =>
    /^layout=(\d+)/m.exec(readFileSync(path.join(__dirname, "../../harness", builder), "utf8"))![1];

/**
 * A `docker` that logs its arguments: the registry:3 fixture is absent, the two images built
 * from Debian packages are there in their current layout, and `pull` does what `pullWorks` says.
 */
function dockerStandIn(pullWorks: boolean) {
    const log = path.join(dir, "docker.log");
    writeFileSync(
        path.join(dir, "docker"),
        `#!/bin/sh
echo "$*" >>${log}
case "$*" in
    "image inspect pullthrough-test/registry:3.0.0") exit 1 ;;
    "image inspect --format"*registry:2.8-debian) echo ${layoutOf("registry-image.sh")} ;;
    "image inspect --format"*nginx:1.22-debian) echo ${layoutOf("front-image.sh")} ;;
    pull*) ${pullWorks ? "exit 0" : 'echo "dial tcp: lookup registry-1.docker.io: no such host" >&2; exit 1'} ;;
esac
`,
    );
    chmodSync(path.join(dir, "docker"), 0o755);
    return log;
}

const run = () =>
    execFileSync("bash", [script], {
        env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, PULLTHROUGH_SHARED: dir },
        stdio: ["ignore", "pipe", "pipe"],
        encoding: "utf8",
    });

test("without the archive, the official registry:3.0.0 is pulled by digest and tagged", () => {
    const log = dockerStandIn(true);
    run();
    const asked = readFileSync(log, "utf8").trim().split("\n");
    const pinned =
        "registry:3.0.0@sha256:6c5666b861f3505b116bb9aa9b25175e71210414bd010d92035ff64018f9457e";
    expect(asked.slice(0, 3)).toEqual([
        "image inspect pullthrough-test/registry:3.0.0",
        `pull --quiet ${pinned}`,
        `tag ${pinned} pullthrough-test/registry:3.0.0`,
    ]);
});

test("when the pull fails too, one line says what to do", () => {
    dockerStandIn(false);
    expect(run).toThrow(
        `fixture-images: cannot pull registry:3.0.0@sha256:6c5666b861f3505b116bb9aa9b25175e71210414bd010d92035ff64018f9457e; put the registry 3.0.0 archive at ${dir}/fixtures/registry-3/registry-3.0.0-image.tar.xz (or set PULLTHROUGH_SHARED), or run with a network`,
    );
});
