/**
 * Where a tool run finds its caches and images: the stack outputs (`--outputs FILE`, `-` for
 * stdin, as `pulumi stack output --json` prints them), or else the stack's config file, planned
 * with the same code `pulumi up` runs, so there is one source of truth.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { CacheEndpoint, cacheEndpoint, planCaches } from "../core/plan";
import { TalosImageSet, planPrewarm } from "../core/prewarm";
import { MirrorsOutput, cacheEndpoints } from "../core/render";
import { detectTalosctl, readTalosImageSet, talosImagesNotice } from "../host/talosctl";
import { Settings, encodeConfig, parseSettings } from "../mirrors";
import { configNamespace } from "../core/config-error";
import { UsageError } from "./types";

/** The caches and images a run works on, as the stack outputs carry them. */
export interface StackView {
    caches: CacheEndpoint[];
    images: string[];
    /** Which Talos image set `talos` stands for, when it is not the release's own. */
    notice?: string;
    /** The `maxSize` budget, when planned from the stack config. */
    maxSize?: string;
    /** The engine the caches run on, when not this machine's. */
    dockerHost?: string;
    /** The Talos cluster's image set (`--images talos`), read when asked for. */
    talosImages(): TalosImageSet;
}

/** The image set of `cluster`: `talosctl image default`, or the kept set when there is none. */
const talosImagesOf = (cluster: Settings["cluster"]) => () =>
    readTalosImageSet(cluster, detectTalosctl(cluster));

/** Reads the `mirrors` and `prewarmImages` stack outputs. */
export function fromOutputs(document: string): StackView {
    let outputs: {
        mirrors?: MirrorsOutput;
        prewarmImages?: string[];
        dockerHost?: string | null;
    };
    try {
        outputs = JSON.parse(document);
    } catch {
        throw new UsageError(
            "--outputs: not JSON; expected the output of `npm run --silent outputs` (`pulumi stack output --json`)",
        );
    }
    if (!outputs.mirrors || typeof outputs.mirrors !== "object")
        throw new UsageError(
            "--outputs: no `mirrors` output; expected the output of `npm run --silent outputs` (`pulumi stack output --json`)",
        );
    return {
        caches: cacheEndpoints(outputs.mirrors),
        images: outputs.prewarmImages ?? [],
        dockerHost: outputs.dockerHost ?? undefined,
        // The outputs do not say which cluster: the set of the talosctl here (or the kept one).
        talosImages: talosImagesOf(parseSettings({}).cluster),
    };
}

/**
 * Plans the stack from its config file as `pulumi up` would, from what the tools may read of it
 * (readableConfig).
 */
export function fromStackConfig(configFile: string, stack: string): StackView {
    let text: string;
    try {
        text = readFileSync(configFile, "utf8");
    } catch {
        throw new UsageError(
            `no stack config at ${configFile}; pass --stack NAME, or --outputs FILE with \`npm run --silent outputs\``,
        );
    }
    const document = (parseYaml(text) ?? {}) as { config?: Record<string, unknown> };
    const settings = parseSettings(encodeConfig(readableConfig(document.config ?? {})));
    const caches = planCaches(settings, { project: configNamespace, stack });
    let notice: string | undefined;
    const talosImages = talosImagesOf(settings.cluster);
    const images = planPrewarm(settings, caches, () => {
        const set = talosImages();
        notice = talosImagesNotice(set);
        return set;
    });
    return {
        caches: caches.map(cacheEndpoint),
        images,
        ...(notice ? { notice } : {}),
        maxSize: settings.maxSize,
        dockerHost: settings.dockerHost,
        talosImages,
    };
}

const isSecure = (value: unknown) =>
    typeof value === "object" && value !== null && "secure" in value;

/**
 * What the tools read of the config file: no secure value (the caches and the front hold them;
 * the tools need none), and of `tls` only whether it is on: the front gives the tools its CA.
 */
function readableConfig(config: Record<string, unknown>): Record<string, unknown> {
    const tlsKey = `${configNamespace}:tls`;
    return Object.fromEntries(
        Object.entries(config)
            .filter(([, value]) => !isSecure(value))
            .map(([key, value]) =>
                key === tlsKey
                    ? [key, { enabled: (value as { enabled?: unknown }).enabled }]
                    : [key, value],
            ),
    );
}

/** Reads `--outputs`: a file, or stdin for "-". */
export function readOutputsDocument(file: string): string {
    try {
        return readFileSync(file === "-" ? 0 : file, "utf8");
    } catch (error) {
        const reason =
            (error as NodeJS.ErrnoException).code === "ENOENT"
                ? "no such file"
                : String((error as Error).message);
        throw new UsageError(
            `--outputs: cannot read ${file} (${reason}); expected a file holding \`npm run --silent outputs\``,
        );
    }
}
