/**
 * Content digests as registries, OCI layouts and image references spell them: `sha256:<64 hex>`.
 * The one place their pattern is written.
 */
import { createHash } from "node:crypto";

/** The hex part of a sha256 digest, for patterns that capture it (storage paths, nginx routes). */
export const sha256Hex = "[0-9a-f]{64}";

const digestPattern = new RegExp(`^sha256:${sha256Hex}$`);

export const isDigest = (value: string) => digestPattern.test(value);

/** The hex part of a digest, as storage and layout paths name blobs. */
export const hexOf = (digest: string) => digest.slice("sha256:".length);

export const sha256Digest = (data: Buffer | string) =>
    `sha256:${createHash("sha256").update(data).digest("hex")}`;
