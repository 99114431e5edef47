/**
 * What `import` (and `importFrom`) takes: an OCI image layout, as a directory or one `.tar`
 * (host/oci-layout.ts), or a flat Talos image cache (host/talos-cache.ts).
 */
import { existsSync, statSync } from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../core/config-error";
import { sha256Digest } from "../core/digest";
import { ociLayoutFile } from "../core/oci";
import { BundleToImport } from "../core/tool-commands";
import { Bundle, BundleError, openOciLayout } from "./oci-layout";
import { isTalosCache, openTalosCache } from "./talos-cache";

/**
 * Opens a bundle: a Talos image cache when the folder is laid out as one, else an OCI layout.
 *
 * @throws BundleError naming the file and what is wrong with it
 */
export function openBundle(file: string): Bundle {
    const isFolder = existsSync(file) && statSync(file).isDirectory();
    return isFolder && !existsSync(path.join(file, ociLayoutFile)) && isTalosCache(file)
        ? openTalosCache(file)
        : openOciLayout(file);
}

/** The digest of a bundle's `index.json`: it changes whenever what the bundle carries does. */
export function bundleFingerprint(file: string): string {
    return sha256Digest(openBundle(file).indexBytes);
}

/**
 * The bundle `importFrom` names, resolved against the project folder, with its fingerprint.
 *
 * @throws ConfigError naming `importFrom` when the bundle cannot be read
 */
export function bundleToImport(
    importFrom: string | undefined,
    projectDir: string,
): BundleToImport | undefined {
    if (importFrom === undefined) return undefined;
    const file = path.resolve(projectDir, importFrom);
    try {
        return { path: file, fingerprint: bundleFingerprint(file) };
    } catch (error) {
        if (!(error instanceof BundleError)) throw error;
        throw new ConfigError([
            {
                key: ["importFrom"],
                detail: `${error.message}; expected a bundle made by npm run export`,
            },
        ]);
    }
}
