/**
 * The `command.local.Command`s by which `pulumi up` runs the tools once the caches are healthy:
 * import a bundle, prewarm, prune. Each reads the stack's outputs on stdin, so the tools have one
 * input format, and runs again only when what it reads changes. Pure.
 */
import type * as command from "@pulumi/command";
import { Cache } from "./plan";
import { shellQuote } from "./cluster";
import { mirrorsByRegistry } from "./render";

/** What a tool run by `pulumi up` needs, as `pulumi stack output --json` gives it to CI jobs. */
interface ToolInput {
    images: readonly string[];
    caches: readonly Cache[];
    dockerHost: string | undefined;
}

const outputsDocument = ({ images, caches, dockerHost }: ToolInput) =>
    JSON.stringify({
        mirrors: mirrorsByRegistry(caches),
        prewarmImages: images,
        dockerHost: dockerHost ?? null,
    });

/**
 * The `command.local.Command` that runs `npm run prewarm` once the caches are healthy. It reads
 * the same document `pulumi stack output --json` gives CI jobs, on stdin, so the tool has one
 * input format; a change of images or endpoints runs it again.
 */
export function prewarmCommand(input: ToolInput, projectDir: string) {
    const outputs = outputsDocument(input);
    return {
        create: "npm run --silent prewarm -- --outputs -",
        stdin: outputs,
        dir: projectDir,
        triggers: [outputs],
        logging: "stdoutAndStderr",
    } satisfies command.local.CommandArgs;
}

/**
 * The `command.local.Command` that enforces `maxSize` once prewarm is done: `npm run prune` to the
 * budget, the prewarm list kept. Like prewarm it reads the stack outputs on stdin, and it runs
 * again whenever prewarm does or the budget changes.
 */
export function pruneCommand(maxSize: string, input: ToolInput, projectDir: string) {
    const outputs = outputsDocument(input);
    return {
        create: `npm run --silent prune -- --outputs - --to ${maxSize}`,
        stdin: outputs,
        dir: projectDir,
        triggers: [outputs, maxSize],
        logging: "stdoutAndStderr",
    } satisfies command.local.CommandArgs;
}

/** A bundle `up` imports: where it is, and the digest of its `index.json`. */
export interface BundleToImport {
    path: string;
    fingerprint: string;
}

/**
 * The `command.local.Command` that imports `importFrom` once the caches are healthy, before
 * prewarm, prune and the cluster. It runs again only when the bundle's content (its index) or the
 * caches change, not on every `up`.
 */
export function importCommand(bundle: BundleToImport, input: ToolInput, projectDir: string) {
    const outputs = outputsDocument(input);
    return {
        create: `npm run --silent import -- --outputs - ${shellQuote([bundle.path])}`,
        stdin: outputs,
        dir: projectDir,
        triggers: [outputsDocument({ ...input, images: [] }), bundle.fingerprint],
        logging: "stdoutAndStderr",
    } satisfies command.local.CommandArgs;
}
