/**
 * Image references as containerd and Docker read them, and which cache serves each one. Pure, so
 * config validation, `pulumi up` and the prewarm/verify tools all agree on where an image lives.
 */

export interface ImageReference {
    /** Registry host as mirrors are keyed: `docker.io`, `registry.k8s.io`, `registry.local:5000`. */
    registry: string;
    /** Repository path on that registry: `library/nginx`, `coredns/coredns`. */
    repository: string;
    /** What to ask the registry for: the digest when there is one, else the tag. */
    reference: string;
    tag?: string;
    digest?: string;
    /** The fully qualified form, e.g. `docker.io/library/nginx:1.27`. */
    canonical: string;
}

const component = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
const referencePattern = new RegExp(
    `^(?:(?<domain>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?(?<path>${component}(?:/${component})*)(?::(?<tag>[\\w][\\w.-]{0,127}))?(?:@(?<digest>sha256:[a-f0-9]{64}))?$`,
);

/**
 * Parses `ref` with Docker's normalisation: no registry means `docker.io`, and a one-part
 * Docker Hub name lives under `library/`. Without a tag or digest the tag is `latest`.
 *
 * @returns undefined when `ref` is not an image reference
 */
export function parseImageReference(ref: string): ImageReference | undefined {
    const match = referencePattern.exec(ref);
    if (!match?.groups) return undefined;
    let { domain, path } = match.groups as { domain?: string; path: string };
    const { tag: explicitTag, digest } = match.groups;
    // A first part without "." or ":" (and not localhost) is a Docker Hub namespace, not a host.
    if (domain !== undefined && !/[.:]/.test(domain) && domain !== "localhost") {
        if (!new RegExp(`^${component}$`).test(domain)) return undefined;
        path = `${domain}/${path}`;
        domain = undefined;
    }
    const registry = domain === undefined || domain === "index.docker.io" ? "docker.io" : domain;
    const repository = registry === "docker.io" && !path.includes("/") ? `library/${path}` : path;
    const tag = explicitTag ?? (digest ? undefined : "latest");
    const canonical = `${registry}/${repository}${tag ? `:${tag}` : ""}${digest ? `@${digest}` : ""}`;
    return { registry, repository, reference: digest ?? tag!, tag, digest, canonical };
}

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
