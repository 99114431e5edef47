/**
 * Just enough of the OCI distribution API to pull an image through a cache the way containerd
 * does (manifests with the same Accept list, `?ns=<registry>` on mirror requests) and to check
 * what a registry holds. Every manifest and blob read is checked against its digest.
 */
import { createHash } from "node:crypto";
import { ImageReference, Platform, formatPlatform } from "../core/images";

export const mediaTypes = {
    ociIndex: "application/vnd.oci.image.index.v1+json",
    dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
    ociManifest: "application/vnd.oci.image.manifest.v1+json",
    dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
} as const;

const manifestAccept = Object.values(mediaTypes).join(", ");
const indexTypes: readonly string[] = [mediaTypes.ociIndex, mediaTypes.dockerManifestList];

export interface Descriptor {
    mediaType: string;
    digest: string;
    size: number;
    platform?: Platform;
}

export interface Manifest {
    digest: string;
    mediaType: string;
    size: number;
    isIndex: boolean;
    /** Platform manifests of an index; empty for an image manifest. */
    manifests: Descriptor[];
    /** Config and layers of an image manifest; empty for an index. */
    blobs: Descriptor[];
}

/**
 * A registry problem to report as it is. `status` is set when the registry answered with an
 * error; `unreachable` when it did not answer at all.
 */
export class RegistryError extends Error {
    constructor(
        message: string,
        readonly status?: number,
        readonly unreachable = false,
    ) {
        super(message);
        this.name = "RegistryError";
    }
}

const sha256 = (data: Buffer | string) =>
    `sha256:${createHash("sha256").update(data).digest("hex")}`;

export class RegistryClient {
    /**
     * @param endpoint the registry's base URL, e.g. `http://127.0.0.1:5000`
     * @param namespace the upstream registry the images belong to, sent as `?ns=` like containerd
     * @param headers sent with every request
     */
    constructor(
        readonly endpoint: string,
        readonly namespace: string,
        private readonly headers: Record<string, string> = {},
    ) {}

    /** GETs a manifest or index by tag or digest and checks it against its digest. */
    async manifest(repository: string, reference: string): Promise<Manifest> {
        const response = await this.request("GET", `/v2/${repository}/manifests/${reference}`, {
            Accept: manifestAccept,
        });
        const body = Buffer.from(await response.arrayBuffer());
        const digest = sha256(body);
        const expected = reference.startsWith("sha256:")
            ? reference
            : response.headers.get("docker-content-digest");
        if (expected && expected !== digest)
            throw new RegistryError(
                `manifest ${repository}@${expected} arrived with digest ${digest}`,
            );
        const json = JSON.parse(body.toString("utf8")) as {
            mediaType?: string;
            manifests?: Descriptor[];
            config?: Descriptor;
            layers?: Descriptor[];
        };
        const mediaType =
            json.mediaType ?? response.headers.get("content-type") ?? mediaTypes.ociManifest;
        const isIndex = indexTypes.includes(mediaType);
        return isIndex
            ? {
                  digest,
                  mediaType,
                  size: body.length,
                  isIndex,
                  manifests: json.manifests ?? [],
                  blobs: [],
              }
            : {
                  digest,
                  mediaType,
                  size: body.length,
                  isIndex,
                  manifests: [],
                  blobs: [...(json.config ? [json.config] : []), ...(json.layers ?? [])],
              };
    }

    /** Streams a blob to nowhere, reporting bytes as they arrive; the digest is checked at the end. */
    async fetchBlob(
        repository: string,
        digest: string,
        onBytes: (bytes: number) => void = () => {},
    ): Promise<number> {
        const response = await this.request("GET", `/v2/${repository}/blobs/${digest}`);
        const hash = createHash("sha256");
        let total = 0;
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
            hash.update(chunk);
            total += chunk.length;
            onBytes(chunk.length);
        }
        const actual = `sha256:${hash.digest("hex")}`;
        if (actual !== digest)
            throw new RegistryError(
                `blob ${digest} of ${repository} arrived with digest ${actual}`,
            );
        return total;
    }

    /** HEAD: whether the registry has this blob in this repository. */
    async hasBlob(repository: string, digest: string): Promise<boolean> {
        return this.exists(`/v2/${repository}/blobs/${digest}`);
    }

    /** GET /v2/: throws a RegistryError that says the endpoint is unreachable. */
    async ping(): Promise<void> {
        await this.request("GET", "/v2/");
    }

    private async exists(apiPath: string): Promise<boolean> {
        try {
            await this.request("HEAD", apiPath);
            return true;
        } catch (error) {
            if (error instanceof RegistryError && error.status === 404) return false;
            throw error;
        }
    }

    private async request(
        method: string,
        apiPath: string,
        headers: Record<string, string> = {},
    ): Promise<Response> {
        const url = `${this.endpoint}${apiPath}?ns=${encodeURIComponent(this.namespace)}`;
        let response: Response;
        try {
            response = await fetch(url, {
                method,
                headers: { ...this.headers, ...headers },
                redirect: "follow",
            });
        } catch (error) {
            const cause = (error as { cause?: { code?: string; message?: string } }).cause;
            throw new RegistryError(
                `${this.endpoint} is unreachable (${cause?.code ?? cause?.message ?? String(error)})`,
                undefined,
                true,
            );
        }
        if (!response.ok) {
            const detail =
                method === "HEAD" ? "" : await response.text().then(describeErrorBody, () => "");
            throw new RegistryError(
                `${method} ${apiPath} answered ${response.status}${detail ? `: ${detail}` : ""}`,
                response.status,
            );
        }
        return response;
    }
}

/**
 * A registry's error body in a line: its `errors` list (distribution's `{code, message, detail}`)
 * in full, since the cause often comes last ("…: no space left on device"); other bodies cut short.
 */
function describeErrorBody(text: string): string {
    try {
        const { errors } = JSON.parse(text) as {
            errors?: { message?: string; detail?: unknown }[];
        };
        if (Array.isArray(errors) && errors.length > 0)
            return errors
                .map(({ message, detail }) =>
                    [message, typeof detail === "string" ? detail : JSON.stringify(detail)]
                        .filter(Boolean)
                        .join(": "),
                )
                .join("; ");
    } catch {
        // not JSON
    }
    return text.trim().slice(0, 200);
}

/** Whether an index entry is for `wanted`; a wanted platform without variant accepts any variant. */
export function matchesPlatform(entry: Platform | undefined, wanted: Platform): boolean {
    return (
        entry !== undefined &&
        entry.os === wanted.os &&
        entry.architecture === wanted.architecture &&
        (wanted.variant === undefined || entry.variant === wanted.variant)
    );
}

/** The manifests of `index` for `platforms`, or an error naming what the index does offer. */
export function selectPlatforms(index: Manifest, platforms: readonly Platform[]): Descriptor[] {
    const selected = index.manifests.filter((entry) =>
        platforms.some((wanted) => matchesPlatform(entry.platform, wanted)),
    );
    if (selected.length === 0) {
        const offered = index.manifests
            .map((entry) => (entry.platform ? formatPlatform(entry.platform) : entry.digest))
            .join(", ");
        throw new RegistryError(
            `no manifest for ${platforms.map(formatPlatform).join(", ")} in the index (it has ${offered || "none"})`,
        );
    }
    return selected;
}

/** The blobs an image needs on `platforms`: config and layers of each selected manifest. */
export interface ImageContent {
    /** Every manifest read, the index first. */
    manifests: Manifest[];
    blobs: Descriptor[];
}

/**
 * Reads an image's manifests (index first) through `client`; blobs are listed, not fetched.
 * Errors say which manifest failed: the tag, the digest, or a platform's manifest.
 */
export async function readImage(
    client: RegistryClient,
    image: ImageReference,
    platforms: readonly Platform[],
): Promise<ImageContent> {
    const top = await describing(
        image.tag && !image.digest ? `tag ${image.tag}` : `manifest ${image.reference}`,
        () => client.manifest(image.repository, image.reference),
    );
    if (!top.isIndex) return { manifests: [top], blobs: top.blobs };
    const children = await Promise.all(
        selectPlatforms(top, platforms).map((entry) =>
            describing(
                `${entry.platform ? formatPlatform(entry.platform) : ""} manifest ${entry.digest.slice(0, 19)}…`,
                () => client.manifest(image.repository, entry.digest),
            ),
        ),
    );
    return { manifests: [top, ...children], blobs: children.flatMap((child) => child.blobs) };
}

async function describing<T>(subject: string, read: () => Promise<T>): Promise<T> {
    try {
        return await read();
    } catch (error) {
        if (!(error instanceof RegistryError) || error.unreachable) throw error;
        const what = error.status === 404 ? "not found" : error.message;
        throw new RegistryError(`${subject}: ${what}`, error.status);
    }
}
