/**
 * Where a tool run finds its caches and images: the stack outputs (`--outputs FILE`, `-` for
 * stdin, as `pulumi stack output --json` prints them), or else the stack's config file, planned
 * with the same code `pulumi up` runs, so there is one source of truth.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { CacheEndpoint, cacheEndpoint, planCaches } from "../core/plan";
import { planPrewarm } from "../core/prewarm";
import { MirrorsOutput, cacheEndpoints } from "../core/render";
import { detectTalosctl, readTalosImageSet, talosImagesNotice } from "../host/talosctl";
import { encodeConfig, parseSettings } from "../mirrors";
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
}

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
    };
}

/**
 * Plans the stack from its config file as `pulumi up` would. Secure values (credentials) are
 * skipped: the caches hold the credentials, the tools never need them.
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
    const plain = Object.entries(document.config ?? {}).filter(
        ([, value]) => !(typeof value === "object" && value !== null && "secure" in value),
    );
    const settings = parseSettings(encodeConfig(Object.fromEntries(plain)));
    const caches = planCaches(settings, { project: configNamespace, stack });
    let notice: string | undefined;
    const images = planPrewarm(settings, caches, () => {
        const talosImages = readTalosImageSet(settings.cluster, detectTalosctl(settings.cluster));
        notice = talosImagesNotice(talosImages);
        return talosImages;
    });
    return {
        caches: caches.map(cacheEndpoint),
        images,
        ...(notice ? { notice } : {}),
        maxSize: settings.maxSize,
        dockerHost: settings.dockerHost,
    };
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
