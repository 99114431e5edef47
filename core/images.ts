/**
 * Platforms as OCI indexes name them, and this host's. Image references themselves are part of
 * the config contract (mirrors.ts, parseImageReference). Pure.
 */

/** A platform as OCI indexes name them, e.g. `linux/amd64` or `linux/arm64/v8`. */
export interface Platform {
    os: string;
    architecture: string;
    variant?: string;
}

const nodeArchitectures: Record<string, string> = {
    x64: "amd64",
    arm64: "arm64",
    arm: "arm",
    ia32: "386",
    ppc64: "ppc64le",
    s390x: "s390x",
    riscv64: "riscv64",
};

/** The platform of this host, as a node started here would ask for it. */
export function hostPlatform(): Platform {
    return { os: "linux", architecture: nodeArchitectures[process.arch] ?? process.arch };
}

export function parsePlatform(text: string): Platform | undefined {
    const [os, architecture, variant, ...rest] = text.split("/");
    if (
        !os ||
        !architecture ||
        rest.length > 0 ||
        !/^[a-z0-9]+$/.test(os + architecture + (variant ?? ""))
    )
        return undefined;
    return variant ? { os, architecture, variant } : { os, architecture };
}

export const formatPlatform = (platform: Platform) =>
    [platform.os, platform.architecture, platform.variant].filter(Boolean).join("/");

/** Whether an index entry is for `wanted`; a wanted platform without variant accepts any variant. */
export function matchesPlatform(entry: Platform | undefined, wanted: Platform): boolean {
    return (
        entry !== undefined &&
        entry.os === wanted.os &&
        entry.architecture === wanted.architecture &&
        (wanted.variant === undefined || entry.variant === wanted.variant)
    );
}
