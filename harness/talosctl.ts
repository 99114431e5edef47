/**
 * Puts the talosctl stand-in (harness/talosctl-stand-in.js) behind an executable that
 * claims one version. Settings travel in the wrapper itself, not in this process's environment,
 * which jest keeps from child processes.
 */
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

export function talosctlStandIn(
    version: string,
    settings: { containerd?: string; images?: string[] } = {},
): string {
    const env = {
        TALOSCTL_STAND_IN_VERSION: version,
        TALOSCTL_STAND_IN_CONTAINERD: settings.containerd ?? "",
        TALOSCTL_STAND_IN_IMAGES: (settings.images ?? []).join(" "),
    };
    const exports = Object.entries(env).map(([key, value]) => `export ${key}='${value}'`);
    const script = path.join(__dirname, "talosctl-stand-in.js");
    const content = ["#!/bin/sh", ...exports, `exec node '${script}' "$@"`, ""].join("\n");
    // One folder per distinct wrapper, reused across runs, so nothing piles up in /tmp.
    const dir = path.join(
        tmpdir(),
        "pullthrough-talosctl",
        createHash("sha256").update(content).digest("hex").slice(0, 16),
    );
    mkdirSync(dir, { recursive: true });
    const executable = path.join(dir, "talosctl");
    writeFileSync(executable, content);
    chmodSync(executable, 0o755);
    return executable;
}
