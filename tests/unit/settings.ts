/** Shared by the unit suites: stack config as the Pulumi CLI hands it over, and small builders. */
import { encodeConfig } from "../../mirrors";

export const identity = { project: "pullthrough", stack: "dev" };

/** `pullthrough:<key>` → string, as the CLI stores it (JSON for anything not a string). */
export const config = (values: Record<string, unknown>) => encodeConfig(values);

export const upstream = (registry: string, port: unknown, extra: Record<string, unknown> = {}) => ({
    registry,
    remote: `https://${registry}`,
    port,
    ...extra,
});

/**
 * A front on plain HTTP with no pull credentials and no prefetch, allowing `allowed`, its one
 * port on 5005.
 */
export const plainFront = (allowed: string[]) => ({
    allowed,
    anyRegistryPort: 5005,
    tls: false,
    pullAuth: false,
    prefetch: false,
});
