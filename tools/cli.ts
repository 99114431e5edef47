/**
 * `npm run prewarm`, `verify`, `status`, `prune`, `export` and `import`. All take the caches
 * (and the image list, and the engine they run on) from the stack: `--outputs FILE` (or `-` for
 * stdin) reads `pulumi stack output --json`; otherwise the stack's config file is planned with the
 * same code `pulumi up` runs, so there is one source of truth.
 *
 * Exit codes: 0 all good; 1 an image failed to warm or is missing (or corrupt), a cache needs
 * attention, or prune could not get under its budget; 2 the tool could not run (bad arguments or
 * config, a cache unreachable, an image without a cache, a bundle that cannot be imported);
 * 130 or 143 interrupted by SIGINT or SIGTERM, once what it made is removed.
 */
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { Platform, formatPlatform, hostPlatform, parsePlatform } from "../core/images";
import {
    Run,
    exportFormats,
    runExport,
    runImport,
    runPrewarm,
    runPrune,
    runStatus,
    runVerify,
} from "./commands";
import { removeStaleViews } from "./cache-view";
import { dockerCli } from "./docker";
import { Interrupted, untilInterrupted } from "./interrupt";
import { failureJson } from "./json";
import { fromOutputs, fromStackConfig, readOutputsDocument } from "./stack";
import { UsageError, fail } from "./types";

const projectDir = path.resolve(__dirname, "..");

/** One option: its parseArgs type, the value it takes (for usage), and what it does. */
interface Option {
    type: "string" | "boolean";
    short?: string;
    value?: string;
    help: string;
}

// Every tool reads the stack, prints JSON on request and has --help: declared once.
const stackOptions = {
    outputs: {
        type: "string",
        value: "FILE",
        help: 'read caches and images from `npm run --silent outputs` saved in FILE ("-": stdin)',
    },
    stack: {
        type: "string",
        value: "NAME",
        help: "otherwise plan them from Pulumi.NAME.yaml, as pulumi up does (default: $PULUMI_STACK, else dev)",
    },
} satisfies Record<string, Option>;
const outputOptions = {
    json: { type: "boolean", help: "print the result, or the error, as JSON (for CI)" },
    help: { type: "boolean", short: "h", help: "print this and exit" },
} satisfies Record<string, Option>;
const platform = (what: string) =>
    ({
        type: "string",
        value: "LIST",
        help: `platforms ${what}, e.g. linux/amd64,linux/arm64`,
    }) satisfies Option;
const concurrency = {
    type: "string",
    value: "N",
    help: "requests in flight at once, over all caches (default: 4)",
} satisfies Option;
const images = (fallback: string) =>
    ({
        type: "string",
        value: "WHICH",
        help: `"all" (every image the caches hold), "prewarm" (the prewarm list), "talos" (the Talos cluster's image set) or a comma-separated list of references (default: ${fallback})`,
    }) satisfies Option;

/** Each tool: what it does, its BUNDLE argument if any, its own options, and what it runs. */
const tools = {
    prewarm: {
        summary: "pull the stack's prewarm images through the caches until they are stored",
        options: {
            platform: platform(`to warm (default: ${formatPlatform(hostPlatform())})`),
            concurrency,
            images: {
                type: "string",
                value: "WHICH",
                help: '"prewarm" (the prewarm list), "talos" (the Talos cluster\'s image set) or a comma-separated list of references (default: prewarm)',
            },
        },
        run: runPrewarm,
    },
    verify: {
        summary: "check that the caches hold the prewarm images (or --images), asking no upstream",
        options: {
            platform: platform(`to check (default: ${formatPlatform(hostPlatform())})`),
            concurrency,
            images: images("prewarm"),
            deep: { type: "boolean", help: "also re-hash every stored blob the images need" },
            repair: {
                type: "boolean",
                help: "with --deep: remove each corrupt blob, so the next pull fetches it again",
            },
        },
        run: runVerify,
    },
    status: {
        summary: "what each cache holds, its health, and what it saved",
        options: {},
        run: runStatus,
    },
    prune: {
        summary:
            "remove the least recently pulled images (never a prewarm image) and the blobs no remaining image needs",
        options: {
            to: {
                type: "string",
                value: "SIZE",
                help: "until all caches together hold at most SIZE, e.g. 20GiB (default: maxSize)",
            },
            "older-than": {
                type: "string",
                value: "AGE",
                help: "every image not pulled for AGE, e.g. 7d, 36h, 90m",
            },
            "dry-run": { type: "boolean", help: "list what would go, remove nothing" },
        },
        run: runPrune,
    },
    export: {
        summary:
            "write what the caches hold to BUNDLE: an OCI image layout (a directory, or one file when BUNDLE ends in .tar), or a Talos image cache",
        bundle: true,
        options: {
            format: {
                type: "string",
                value: "FORMAT",
                help: `${exportFormats.join(", ")}: an OCI image layout (default), Talos's flat image cache (a directory \`talosctl image cache-serve\` serves), or its OCI form (for the imager's --image-cache)`,
            },
            platform: platform(
                "to export (default: every platform the caches hold; for the Talos formats this machine's)",
            ),
            images: images("all; for the Talos formats: talos"),
        },
        run: runExport,
    },
    import: {
        summary:
            "put the images of BUNDLE (an OCI layout with reference annotations, from export or skopeo, or a flat Talos image cache) into the caches of their registries; works offline",
        bundle: true,
        options: {
            "dry-run": {
                type: "boolean",
                help: "check the bundle and the caches, list what would be written, write nothing",
            },
        },
        run: runImport,
    },
} satisfies Record<
    string,
    {
        summary: string;
        bundle?: true;
        options: Record<string, Option>;
        run: (run: Run) => Promise<number>;
    }
>;

type ToolName = keyof typeof tools;

/** The options each tool takes, shared ones included (for the docs' check). */
export const toolOptions = Object.fromEntries(
    Object.entries(tools).map(([name, tool]) => [name, Object.keys(optionsOf(tool))]),
) as Record<ToolName, string[]>;

function optionsOf(tool: (typeof tools)[ToolName]): Record<string, Option> {
    return { ...stackOptions, ...tool.options, ...outputOptions };
}

const invocation = (name: ToolName) =>
    `npm run ${name} --${"bundle" in tools[name] ? " BUNDLE" : ""}`;

/** One line: how the tool is called, with every option it takes. */
function usageLine(name: ToolName): string {
    const flags = Object.entries(optionsOf(tools[name])).map(
        ([flag, option]) => `[--${flag}${option.value ? ` ${option.value}` : ""}]`,
    );
    return `${invocation(name)} ${flags.join(" ")}`;
}

/** `--help` of one tool: what it does, then each option. */
function toolHelp(name: ToolName): string {
    const rows = Object.entries(optionsOf(tools[name])).map(([flag, option]) => {
        const short = "short" in option ? `-${option.short}, ` : "";
        const left = `  ${short}--${flag}${option.value ? ` ${option.value}` : ""}`;
        return `${left.padEnd(22)} ${option.help}`;
    });
    return `Usage: ${invocation(name)} [options]\n\n${tools[name].summary}\n\n${rows.join("\n")}\n\n${exitCodes}`;
}

const exitCodes = `Exit codes: 0 all good; 1 an image failed to warm or is missing or corrupt, a cache needs
attention, or prune could not get under SIZE; 2 could not run (nothing was imported or exported).`;

const usage = `Usage: npm run <tool> -- [options]; npm run <tool> -- --help for its options

${Object.entries(tools)
    .map(
        ([name, tool]) =>
            `  ${(name + ("bundle" in tool ? " BUNDLE" : "")).padEnd(15)} ${tool.summary}`,
    )
    .join("\n")}

${exitCodes}`;

/**
 * A tool's command line, parsed against its own options: a flag it does not take is a usage
 * error naming the flag, with the tool's usage on the same line.
 */
function parseToolArgs(name: ToolName, args: string[]) {
    const options = Object.fromEntries(
        Object.entries(optionsOf(tools[name])).map(([flag, { type, short }]) => [
            flag,
            short ? { type, short } : { type },
        ]),
    );
    try {
        return parseArgs({
            args,
            options,
            strict: true,
            allowPositionals: "bundle" in tools[name],
        });
    } catch (error) {
        const { code, message } = error as { code?: string; message: string };
        const flag = /'(-[^']*)'/.exec(message)?.[1];
        const why =
            code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && flag
                ? `${name} takes no ${flag}`
                : message.split(". ")[0];
        throw new UsageError(`${why}; usage: ${usageLine(name)}`);
    }
}

async function main(argv: string[]): Promise<number> {
    const [name, ...rest] = argv;
    if (!Object.hasOwn(tools, name)) throw new UsageError(usage);
    const tool = name as ToolName;
    const { values, positionals } = parseToolArgs(tool, rest);
    if (values.help) {
        console.log(toolHelp(tool));
        return 0;
    }
    if ("bundle" in tools[tool] && positionals.length !== 1)
        fail(`${tool} takes one BUNDLE path, e.g. npm run ${tool} -- talos-images.tar`);
    const option = (flag: string) => values[flag] as string | undefined;
    const platforms =
        option("platform") === undefined ? undefined : parsePlatforms(option("platform")!);
    const concurrency = parseConcurrency(option("concurrency") ?? "4");
    if (values.repair && !values.deep)
        fail("--repair goes with --deep: npm run verify -- --deep --repair");
    const stackName = option("stack") ?? (process.env.PULUMI_STACK || "dev");
    const stack = values.outputs
        ? fromOutputs(readOutputsDocument(option("outputs")!))
        : fromStackConfig(path.join(projectDir, `Pulumi.${stackName}.yaml`), stackName);
    // Every `docker` command of the tools goes to the caches' engine.
    const docker = dockerCli(stack.dockerHost);
    // What killed tools left: before this one starts views of its own.
    await removeStaleViews(docker, stack.caches);
    return tools[tool].run({
        values: values as Run["values"],
        bundle: positionals[0],
        stack,
        platforms,
        concurrency,
        docker,
    });
}

/** `--platform`: a comma-separated list of os/arch[/variant]. */
function parsePlatforms(list: string): Platform[] {
    return list
        .split(",")
        .map(
            (text) =>
                parsePlatform(text) ??
                fail(`--platform: ${JSON.stringify(text)} is not os/arch[/variant]`),
        );
}

function parseConcurrency(text: string): number {
    const concurrency = Number(text);
    if (!Number.isInteger(concurrency) || concurrency < 1)
        fail(`--concurrency: ${text} is not a positive integer`);
    return concurrency;
}

/**
 * The tool could not run: one line on stderr (a ConfigError lists each key on its own line), or
 * under `--json` one JSON document on stdout, so CI always gets what it asked for. A stack trace
 * only with PULLTHROUGH_DEBUG set.
 */
function reportFailure(error: unknown, json: boolean): void {
    const message = error instanceof Error ? error.message : String(error);
    if (json) console.log(JSON.stringify(failureJson(message), null, 2));
    else console.error(`error: ${message}`);
    if (process.env.PULLTHROUGH_DEBUG) console.error(error);
}

/** How long an interrupted tool may take to remove what it made (its views) before it exits. */
const unwindMs = 20_000;

if (require.main === module) {
    const argv = process.argv.slice(2);
    const run = main(argv);
    untilInterrupted(run).then(
        (code) => process.exit(code),
        async (error: unknown) => {
            if (error instanceof Interrupted)
                await Promise.race([run.catch(() => undefined), sleep(unwindMs)]);
            reportFailure(error, argv.includes("--json"));
            process.exit(error instanceof Interrupted ? error.exitCode : 2);
        },
    );
}
