/**
 * Puts the talosctl stand-in (tests/fixtures/talosctl-stand-in.js) behind an executable that
 * claims one version. Settings travel in the wrapper itself, not in this process's environment,
 * which jest keeps from child processes.
 */
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

export function talosctlStandIn(version: string, settings: { containerd?: string; images?: string[] } = {}): string {
    const dir = mkdtempSync(path.join(tmpdir(), "pt-talosctl-bin-"));
    const executable = path.join(dir, "talosctl");
    const env = {
        TALOSCTL_STAND_IN_VERSION: version,
        TALOSCTL_STAND_IN_CONTAINERD: settings.containerd ?? "",
        TALOSCTL_STAND_IN_IMAGES: (settings.images ?? []).join(" "),
    };
    const exports = Object.entries(env).map(([key, value]) => `export ${key}='${value}'`);
    const script = path.join(__dirname, "../fixtures/talosctl-stand-in.js");
    writeFileSync(executable, ["#!/bin/sh", ...exports, `exec node '${script}' "$@"`, ""].join("\n"));
    chmodSync(executable, 0o755);
    return executable;
}
