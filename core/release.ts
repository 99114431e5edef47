/**
 * Release versions as Talos, talosctl and Kubernetes number them (`v1.12.1`, `1.34.0`,
 * `v1.14.0-rc.1`): one parser, one order, and the Talos releases where behaviour changes.
 */

export interface Release {
    major: number;
    minor: number;
    patch: number;
    /** `rc.1` of `v1.14.0-rc.1`. */
    pre?: string;
}

const releasePattern = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$/;

/** `v1.13.9`, `1.13.9` or `v1.14.0-rc.1`; undefined for anything else. */
export function parseRelease(text: string): Release | undefined {
    const match = releasePattern.exec(text);
    if (!match) return undefined;
    const [, major, minor, patch, pre] = match;
    return { major: +major, minor: +minor, patch: +patch, ...(pre ? { pre } : {}) };
}

/** A release, or a minor (`v1.11`) as `--talos-version` takes it: patch 0 then. */
export const parseReleaseOrMinor = (text: string): Release | undefined =>
    parseRelease(text) ?? parseRelease(`${text}.0`);

/** `v1.12.1`, `v1.14.0-rc.1`. */
export const formatRelease = (release: Release) =>
    `v${release.major}.${release.minor}.${release.patch}${release.pre ? `-${release.pre}` : ""}`;

/** Semver order: a prerelease comes before its release; prerelease parts compare numerically. */
export function compareReleases(a: Release, b: Release): number {
    const core = a.major - b.major || a.minor - b.minor || a.patch - b.patch;
    if (core !== 0 || a.pre === b.pre) return core;
    if (a.pre === undefined) return 1;
    if (b.pre === undefined) return -1;
    return a.pre.localeCompare(b.pre, "en", { numeric: true });
}

export const atLeast = (release: Release, floor: Release) => compareReleases(release, floor) >= 0;

/**
 * Talos 1.12: talosctl's `cluster create` took a subcommand per provisioner, and the machine
 * config took `RegistryMirrorConfig` documents for `machine.registries`.
 */
export const talos1_12: Release = { major: 1, minor: 12, patch: 0 };
