/**
 * Talos's machine-config JSON schemas (`pkg/machinery/config/schemas/config.schema.json`) at the
 * tags the tests check against: the copies beside the checkout (`../shared/reference/
 * talos-schemas`, or `$PULLTHROUGH_SHARED`) when there are some, else the files from the Talos
 * repository at their tags, which `npm run talos-schemas` (run by .ci/run) fetches once into
 * `.cache/talos-schemas` (git ignores it); a test run never downloads. Every copy is checked
 * against the sha256 recorded here, computed from `git show <tag>:<path>` of siderolabs/talos.
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

/** The pinned copy of `version` beside the checkout or in the cache, if there is one. */
const localCopy = (version: TalosSchemaVersion) => {
    const name = `config-${version}.json`;
    const digest = talosSchemaDigests[version];
    return pinned(path.join(sharedDir, name), digest) ?? pinned(path.join(cacheDir, name), digest);
};

/**
 * The schema of `version`, parsed, from a local copy: tests never download.
 *
 * @throws an Error of one line that says how to get the copies
 */
export function talosSchema(version: TalosSchemaVersion): unknown {
    const local = localCopy(version);
    if (!local)
        throw new Error(
            `Talos ${version} schema: not in ${sharedDir} nor ${cacheDir}; run npm run talos-schemas once with a network`,
        );
    return JSON.parse(local.toString("utf8"));
}

/** Downloads the schemas no local copy has, saying in one line what it fetches from where. */
async function fetchMissing(): Promise<void> {
    const missing = (Object.keys(talosSchemaDigests) as TalosSchemaVersion[]).filter(
        (version) => !localCopy(version),
    );
    if (missing.length === 0) {
        console.log(
            `talos-schemas: Talos ${Object.keys(talosSchemaDigests).join(" and ")} machine-config schemas are here, pinned; nothing to download`,
        );
        return;
    }
    console.log(
        `talos-schemas: downloading Talos ${missing.join(" and ")} machine-config schemas from raw.githubusercontent.com/siderolabs/talos into ${cacheDir}`,
    );
    mkdirSync(cacheDir, { recursive: true });
    for (const version of missing) {
        const url = talosSchemaUrl(version);
        const response = await fetch(url);
        if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
        const bytes = Buffer.from(await response.arrayBuffer());
        const digest = talosSchemaDigests[version];
        if (sha256(bytes) !== digest)
            throw new Error(`${url} has sha256 ${sha256(bytes)}, not the pinned ${digest}`);
        const partial = path.join(cacheDir, `config-${version}.json.partial`);
        writeFileSync(partial, bytes);
        renameSync(partial, path.join(cacheDir, `config-${version}.json`));
    }
}

if (require.main === module) {
    fetchMissing().catch((error: unknown) => {
        const cause = (error as { cause?: { code?: string } }).cause?.code;
        console.error(
            `talos-schemas: ${error instanceof Error ? error.message : String(error)}${cause ? ` (${cause})` : ""}`,
        );
        process.exit(1);
    });
}
