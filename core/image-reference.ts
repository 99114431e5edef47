/**
 * Image references as containerd and Docker read them (distribution/reference's grammar, with
 * Docker's normalisation): config validation, `pulumi up` and the tools all agree on where an
 * image lives.
 */
import { sha256Hex } from "./digest";

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
    `^(?:(?<domain>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?(?<path>${component}(?:/${component})*)(?::(?<tag>[\\w][\\w.-]{0,127}))?(?:@(?<digest>sha256:${sha256Hex}))?$`,
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
