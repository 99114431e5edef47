/**
 * The docs a newcomer follows stay true: every link lands on a heading, every command they show
 * exists (no bare `pulumi`: only `npm run pulumi -- …` knows the stack), every tool flag is one
 * the tools take, and the tables of config keys, cluster keys, outputs and JSON shapes match the
 * code they describe.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import * as path from "node:path";
import { clusterKeys, configKeys } from "../../mirrors";
import { toolOptions } from "../../tools/cli";
import {
    exportJson,
    failureJson,
    importJson,
    prewarmJson,
    statusJson,
    verifyJson,
} from "../../tools/json";
import { PrunePlan, pruneReport } from "../../core/prune-plan";
import { CacheStatus, formatStatus } from "../../core/status-report";

const root = path.resolve(__dirname, "../..");
const read = (file: string) => readFileSync(path.join(root, file), "utf8");
const docs = [
    "README.md",
    "CONTRIBUTING.md",
    "BENCHMARKS.md",
    ...readdirSync(path.join(root, "docs")).map((file) => `docs/${file}`),
];
const scripts = Object.keys(JSON.parse(read("package.json")).scripts as Record<string, string>);
const tools = ["prewarm", "verify", "status", "prune", "export", "import"];
/** Whether a tool takes a flag (`--stack`, `-h`…), as its own option table says. */
const takes = (tool: string, flag: string) =>
    toolOptions[tool as keyof typeof toolOptions]?.includes(flag.replace(/^--?/, "")) ?? false;

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
const anchorOf = (heading: string) =>
    heading
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, "")
        .replace(/\s/g, "-");

const headings = (file: string) =>
    new Set([...read(file).matchAll(/^#{1,6} (.+)$/gm)].map((match) => anchorOf(match[1])));

/** Lines inside fenced code blocks. */
function codeLines(text: string): string[] {
    const lines: string[] = [];
    let inside = false;
    for (const line of text.split("\n")) {
        if (/^\s*```/.test(line)) inside = !inside;
        else if (inside) lines.push(line);
    }
    return lines;
}

/** The cells of each row of the first markdown table whose header line matches `header`. */
function tableRows(text: string, header: RegExp): string[][] {
    const lines = text.split("\n");
    const start = lines.findIndex((line) => header.test(line));
    if (start < 0) throw new Error(`no table headed ${header}`);
    const rows: string[][] = [];
    for (const line of lines.slice(start + 2)) {
        if (!line.startsWith("|")) break;
        rows.push(
            line
                .split(/(?<!\\)\|/)
                .slice(1, -1)
                .map((cell) => cell.trim()),
        );
    }
    return rows;
}

const backticked = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((match) => match[1]);
/** `{ok, seconds, images}` → its keys; `deep?` is optional. */
const shapeKeys = (shape: string) =>
    shape
        .replace(/^\{|\}$/g, "")
        .split(",")
        .map((key) => key.trim());

test.each(docs)("%s: every relative link lands on a file and heading that exist", (file) => {
    const broken: string[] = [];
    for (const [, target] of read(file).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target)) continue;
        const [relative, anchor] = target.split("#");
        const linked = relative ? path.join(path.dirname(file), relative) : file;
        if (!existsSync(path.join(root, linked))) broken.push(target);
        else if (anchor !== undefined && !(docs.includes(linked) && headings(linked).has(anchor)))
            broken.push(target);
    }
    expect(broken).toEqual([]);
});

test.each(docs)(
    "%s: commands run Pulumi through npm run, and name scripts and flags that exist",
    (file) => {
        const wrong: string[] = [];
        for (const line of codeLines(read(file))) {
            if (/(?:^|\$ |[|;&(]\s*)pulumi\s/.test(line)) wrong.push(`bare pulumi: ${line}`);
            for (const [, script, rest] of line.matchAll(
                /npm run (?:--silent )?([\w:-]+)([^|;&#]*)/g,
            )) {
                if (!scripts.includes(script)) wrong.push(`no script ${script}: ${line}`);
                if (!tools.includes(script)) continue;
                for (const [flag] of rest.matchAll(/--[a-z][\w-]*/g))
                    if (!takes(script, flag)) wrong.push(`${script} takes no ${flag}: ${line}`);
            }
        }
        for (const [, script] of read(file).matchAll(/`npm run (?:--silent )?([\w:-]+)/g))
            if (!scripts.includes(script)) wrong.push(`no script ${script}`);
        expect(wrong).toEqual([]);
    },
);

const readme = read("README.md");
const configuration = read("docs/configuration.md");

test("the README's tool table names every tool, and the flags each one takes", () => {
    const rows = tableRows(readme, /^\| command \| what it does \|/);
    expect(rows.map((row) => backticked(row[0])[0].split(" ")[2])).toEqual(tools);
    for (const row of rows) {
        const tool = backticked(row[0])[0].split(" ")[2];
        const own = toolOptions[tool as keyof typeof toolOptions].filter(
            (option) => !["outputs", "stack", "json", "help"].includes(option),
        );
        expect(
            backticked(row[2])
                .map((flag) => flag.slice(2))
                .sort(),
        ).toEqual(own.sort());
    }
});

test("the README's JSON shapes are what the tools print", () => {
    const shapes = Object.fromEntries(
        tableRows(readme, /^\| command \| what it does \|/).map((row) => [
            backticked(row[0])[0].split(" ")[2],
            shapeKeys(backticked(row[4])[0]),
        ]),
    );
    const keys = (report: object, optional: string[] = []) =>
        Object.keys(report).map((key) => (optional.includes(key) ? `${key}?` : key));
    const plan: PrunePlan = {
        heldBytes: 0,
        removed: [],
        protected: [],
        strayBytes: 0,
        staleUploadBytes: 0,
        freedBytes: 0,
        paths: new Map(),
        records: new Map(),
        forgotten: new Map(),
    };
    const deep = { seconds: 0, checks: [], findings: [] };
    expect(shapes).toEqual({
        prewarm: keys(prewarmJson([], 0)),
        verify: keys(verifyJson([], [], deep, []), ["deep", "repairs"]),
        status: keys(statusJson([], [], { expires: "", daysLeft: 1 }), ["certificate"]),
        prune: keys(pruneReport(plan, false, true)),
        export: keys(
            exportJson({
                bundle: "",
                images: [],
                skipped: [],
                blobs: 0,
                blobBytes: 0,
                bundleBytes: 0,
                seconds: 0,
            }),
        ),
        import: keys(
            importJson({ bundle: "", dryRun: false, images: [], sentBytes: 0, seconds: 0 }),
        ),
    });
    // "an error is `{ok: false, error}`": the keys of what a failing tool prints, ok false.
    const documented = /an error is `(\{[^`]*\})`/.exec(readme)![1];
    const failure = failureJson("no such bundle");
    expect(shapeKeys(documented).map((key) => key.split(":")[0])).toEqual(Object.keys(failure));
    expect(documented).toContain("ok: false");
    expect(failure.ok).toBe(false);
});

/** A cache status with every field, optional ones too. */
const everyField: Required<CacheStatus> = {
    registry: "",
    port: 0,
    mode: "",
    serving: "",
    health: "",
    problem: "",
    frontAnswer: "",
    degraded: false,
    disk: { usedBytes: 0, freeBytes: 0 },
    partialUploads: { count: 0, bytes: 0 },
    repositories: 0,
    images: 0,
    since: { requests: "", upstream: "" },
    requests: 0,
    hits: 0,
    frontHits: 0,
    misses: 0,
    servedBytes: 0,
    upstreamBytes: 0,
    hitRatio: null,
    savedBytes: 0,
    lastCheck: null,
};

test("the README stays short: at most 300 lines", () => {
    expect(readme.trimEnd().split("\n").length).toBeLessThanOrEqual(300);
});

test("the README's status sample has the lines status prints, in its order", () => {
    const sample = /\$ npm run --silent status\n([\s\S]*?)```/.exec(readme)![1];
    const since = { requests: "2026-12-07T10:26:33.000Z", upstream: "" };
    const printed = formatStatus([{ ...everyField, registry: "ghcr.io", since }], false);
    const shape = (text: string) =>
        text
            .split("\n")
            .map((line) => /^\s*(\S+)/.exec(line)?.[1] ?? "")
            .filter((word) => word !== "" && word !== "…");
    // The cache's own name aside: disk, hits, bytes, check, the footer.
    expect(shape(sample).slice(1)).toEqual(shape(printed).slice(1));
    expect(sample).toContain(printed.split("\n").at(-2)!);
});

test("status's documented fields are those of a cache's status", () => {
    const documented = /each cache with these fields:\s([^.]*)\./.exec(read("docs/tools.md"))![1];
    const fields = backticked(documented);
    expect(new Set(fields)).toEqual(new Set(Object.keys(everyField)));
});

test("the configuration tables list exactly the schema's keys, in its order", () => {
    const keysOf = (text: string, header: RegExp) =>
        tableRows(text, header).map((row) => backticked(row[0])[0]);
    expect(keysOf(configuration, /^\| key \| type \| default \|/)).toEqual(configKeys);
    expect(keysOf(readme, /^\| key \| default \| what it sets \|/)).toEqual(configKeys);
    const cluster = tableRows(read("docs/talos.md"), /^\| key \| default \| meaning \|/).flatMap(
        (row) => backticked(row[0]),
    );
    expect(cluster).toEqual(clusterKeys);
});

test("the outputs table lists exactly what index.ts exports", () => {
    const exported = [...read("index.ts").matchAll(/^export (?:const (\w+)|\{ (\w+) \})/gm)].map(
        (match) => match[1] ?? match[2],
    );
    const documented = tableRows(configuration, /^\| output \| what it is \|/).map(
        (row) => backticked(row[0])[0],
    );
    expect(documented.sort()).toEqual(exported.sort());
});
