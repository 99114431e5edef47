/** What every tool shares: the caches it works on, how it reaches them, and how it fails. */
import { ImageReference } from "../core/image-reference";
import { CacheEndpoint } from "../core/plan";
import type { EndpointTrust } from "./registry-client";

/** Thrown for input the tools cannot work with: an unknown image, a registry without a cache. */
export class UsageError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "UsageError";
    }
}

/**
 * Thrown when the machine is not as the tool needs it: no docker CLI, an engine that does not
 * answer, a cache or front that is not there or too old. Like a UsageError, exit 2.
 */
export class EnvironmentError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "EnvironmentError";
    }
}

/** Stops the tool with a UsageError: input it cannot work with. */
export function fail(message: string): never {
    throw new UsageError(message);
}

/**
 * Where a cache's read-only view answers (tools/cache-view.ts): its endpoint, with these headers,
 * trusted so (on HTTPS).
 */
export interface CacheView {
    endpoint: string;
    headers: Record<string, string>;
    trust?: EndpointTrust;
}

/** An image, and the cache of its registry. */
export interface RoutedImage {
    image: ImageReference;
    cache: CacheEndpoint;
}
