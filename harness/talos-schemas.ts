/**
 * Talos's machine-config JSON schemas (`pkg/machinery/config/schemas/config.schema.json`) at the
 * tags the tests check against: the copies beside the checkout (`../shared/reference/
 * talos-schemas`, or `$PULLTHROUGH_SHARED`) when there are some, else the files from the Talos
 * repository at their tags, fetched once into `.cache/talos-schemas` (git ignores it). Every copy
 * is checked against the sha256 recorded here, computed from `git show <tag>:<path>` of
 * siderolabs/talos.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import * as path from "node:path";

const repoRoot = path.resolve(__dirname, "..");
const shared = process.env.PULLTHROUGH_SHARED ?? path.join(repoRoot, "../shared");
const sharedDir = path.join(shared, "reference/talos-schemas");
const cacheDir = path.join(repoRoot, ".cache/talos-schemas");

const talosSchemaDigests = {
    "v1.11.0": "9791769e639e5c211e725825dfd5522524b6fab29a3ca7c43f47295c29f3bf4f",
    "v1.13.9": "3729ac38813c92a35d3159444402d9e7955b5b67aa28303969d5e1d1fa9d2d1d",
} as const;
export type TalosSchemaVersion = keyof typeof talosSchemaDigests;

const talosSchemaUrl = (version: TalosSchemaVersion) =>
    `https://raw.githubusercontent.com/siderolabs/talos/${version}/pkg/machinery/config/schemas/config.schema.json`;

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** The bytes of `file` when it exists and matches `digest`. */
function pinned(file: string, digest: string): Buffer | undefined {
    if (!existsSync(file)) return undefined;
    const bytes = readFileSync(file);
    return sha256(bytes) === digest ? bytes : undefined;
}

/**
 * The schema of `version`, parsed.
 *
 * @throws an Error of one line that says what to do when no copy can be had
 */
export async function talosSchema(version: TalosSchemaVersion): Promise<unknown> {
    const digest = talosSchemaDigests[version];
    const name = `config-${version}.json`;
    const local =
        pinned(path.join(sharedDir, name), digest) ?? pinned(path.join(cacheDir, name), digest);
    if (local) return JSON.parse(local.toString("utf8"));
    const url = talosSchemaUrl(version);
    let bytes: Buffer;
    try {
        const response = await fetch(url);
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        bytes = Buffer.from(await response.arrayBuffer());
    } catch (error) {
        const cause = (error as { cause?: { code?: string } }).cause?.code ?? String(error);
        throw new Error(
            `Talos ${version} schema: not in ${sharedDir} and the download from ${url} failed (${cause}); run the tests once with a network, or set PULLTHROUGH_SHARED to a folder holding reference/talos-schemas`,
            { cause: error },
        );
    }
    if (sha256(bytes) !== digest)
        throw new Error(
            `Talos ${version} schema: ${url} has sha256 ${sha256(bytes)}, not the pinned ${digest}`,
        );
    mkdirSync(cacheDir, { recursive: true });
    const partial = path.join(cacheDir, `${name}.partial`);
    writeFileSync(partial, bytes);
    renameSync(partial, path.join(cacheDir, name));
    return JSON.parse(bytes.toString("utf8"));
}
