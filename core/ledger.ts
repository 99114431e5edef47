/**
 * The front's ledger: what every pull through the front adds up to, kept in a small record on
 * the front's own volume by container/ledger.awk, which nginx feeds one line per pull through a
 * pipe. `status` and `prune` read the record instead of the front's log, so their figures survive
 * log rotation, restarts and a replaced front, and reading them takes time that grows with what
 * the caches hold, not with how many requests they served. Pure: the paths the front and the
 * tools share, nginx's line format, the tools' read script, and the record's parser.
 */
import type { PullActivity } from "./prune-plan";

/**
 * Where the front keeps its volume and the record on it, the pipe nginx writes to (made anew at
 * every start by container/front-entry.sh) and the folding program.
 */
export const ledgerFiles = {
    volumePath: "/var/lib/pullthrough",
    record: "/var/lib/pullthrough/ledger",
    pipe: "/tmp/pullthrough-ledger.pipe",
    program: "/etc/nginx/pullthrough-ledger.awk",
} as const;

/** nginx's variables in the ledger's line, in container/ledger.awk's order, tab-separated. */
export const ledgerLogFormat = [
    "$msec",
    "$pullthrough_registry",
    "$request_method",
    "$status",
    "$body_bytes_sent",
    "$upstream_cache_status",
    "$uri",
].join("\\t");

/**
 * The line of a request the one port had no cache for (core/front.ts): when, and the `ns` it
 * named (nginx writes "-" for none), tab-separated. The fold counts them by ns.
 */
export const unroutedLogFormat = ["$msec", "unrouted", "$arg_ns"].join("\\t");

/**
 * The paths a pull is for: a repository's manifest or blob, no longer than the distribution spec
 * lets a name (255) and a tag (128) be, so every line stays under the pipe's atomic write size
 * (PIPE_BUF, 4096 bytes) and two workers' lines never interleave.
 */
export const ledgerPathPattern =
    "^/v2/[a-z0-9][a-z0-9._/-]{0,254}/(manifests|blobs)/[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,149}$";

/** One pull as nginx writes it to the ledger's pipe. */
export interface LedgerLine {
    /** Epoch seconds, with milliseconds. */
    time: number;
    registry: string;
    method: string;
    status: number;
    bytes: number;
    /** The front's cache: `HIT`, `MISS`, … or empty when it was not asked. */
    frontCache: string;
    uri: string;
}

/** A line as nginx writes it for `line`: for tests of the folding program. */
export const formatLedgerLine = (line: LedgerLine) =>
    [
        line.time.toFixed(3),
        line.registry,
        line.method,
        line.status,
        line.bytes,
        line.frontCache,
        line.uri,
    ].join("\t");

/** One cache's totals in the ledger. */
export interface ServedFigures {
    /** Content requests (manifests and blobs) answered 2xx or 304. */
    requests: number;
    /** Body bytes sent for them. */
    bytes: number;
    /** Those the front answered from its own cache: a coalesced or repeated blob. */
    frontHits: number;
}

export interface Ledger {
    /** Epoch seconds: when the record began counting. */
    since: number;
    served: Map<string, ServedFigures>;
    /** Per registry: `<repository>:<tag>` or `<repository>@<digest>` → last served, epoch seconds. */
    manifests: Map<string, Map<string, number>>;
    /** Per registry: blob digest → last sent by GET, epoch seconds. */
    blobs: Map<string, Map<string, number>>;
    /** The latest syncs the record acknowledges. */
    synced: string[];
    /** Registries clients asked the one port for and no cache serves, by `ns` (lower case). */
    unrouted: Map<string, { requests: number; last: number }>;
}

export const emptyLedger = (since: number): Ledger => ({
    since,
    served: new Map(),
    manifests: new Map(),
    blobs: new Map(),
    synced: [],
    unrouted: new Map(),
});

const noFigures: ServedFigures = { requests: 0, bytes: 0, frontHits: 0 };

/** A cache's totals; none without a ledger (no front to read it from). */
export const servedBy = (ledger: Ledger | undefined, registry: string): ServedFigures =>
    ledger?.served.get(registry) ?? noFigures;

/** Reads the record container/ledger.awk writes; lines it does not know are skipped. */
export function parseLedger(text: string): Ledger {
    const ledger = emptyLedger(0);
    const entry = (map: Map<string, Map<string, number>>, registry: string) =>
        map.get(registry) ?? map.set(registry, new Map()).get(registry)!;
    for (const line of text.split("\n")) {
        const [kind, ...fields] = line.trim().split(" ");
        if (kind === "since" && fields.length === 1) ledger.since = Number(fields[0]);
        else if (kind === "served" && fields.length === 4) {
            const [registry, requests, bytes, frontHits] = fields;
            ledger.served.set(registry, {
                requests: Number(requests),
                bytes: Number(bytes),
                frontHits: Number(frontHits),
            });
        } else if ((kind === "manifest" || kind === "blob") && fields.length === 3) {
            const [registry, key, time] = fields;
            entry(kind === "manifest" ? ledger.manifests : ledger.blobs, registry).set(
                key,
                Number(time),
            );
        } else if (kind === "synced") ledger.synced = fields;
        else if (kind === "unrouted" && fields.length === 3) {
            const [ns, requests, last] = fields;
            ledger.unrouted.set(ns, { requests: Number(requests), last: Number(last) });
        }
    }
    return ledger;
}

/** What the ledger says about one cache's pulls, for prune. */
export const pullActivity = (ledger: Ledger, registry: string): PullActivity => ({
    manifests: ledger.manifests.get(registry) ?? new Map(),
    blobs: ledger.blobs.get(registry) ?? new Map(),
});

/** Ledger keys a prune removed, by registry: manifest keys (`repo:tag`, `repo@digest`) and blobs. */
export type ForgottenPulls = ReadonlyMap<string, { manifests: string[]; blobs: string[] }>;

/** The lines that make the ledger forget `forgotten`, as container/ledger.awk reads them. */
export const forgetLines = (forgotten: ForgottenPulls): string[] =>
    [...forgotten].flatMap(([registry, { manifests, blobs }]) => [
        ...manifests.map((key) => `forget ${registry} manifest ${key}`),
        ...blobs.map((digest) => `forget ${registry} blob ${digest}`),
    ]);

/**
 * The script that writes the lines on its stdin into the ledger's pipe, one `write` each so that
 * none interleaves with nginx's; nothing to do for a front without a ledger.
 */
export const ledgerWriteScript = () =>
    [
        `[ -p ${ledgerFiles.pipe} ] || exit 0`,
        `timeout 10 sh -c 'while IFS= read -r line; do printf "%s\\n" "$line"; done >${ledgerFiles.pipe}'`,
    ].join("\n");

/** What the read script exits with when the front has no ledger (one made before it existed). */
export const noLedgerExitCode = 3;

/**
 * The script a tool runs in the front to read the record: it writes `sync <id>` into the pipe,
 * then waits (up to 5 s) for a record that acknowledges it, so every pull logged before is in
 * what it prints. Opening the pipe has a timeout of its own: with no reader it would block.
 */
export function ledgerReadScript(syncId: string): string {
    const { pipe, record } = ledgerFiles;
    return [
        `[ -p ${pipe} ] || exit ${noLedgerExitCode}`,
        `timeout 5 sh -c 'echo "sync ${syncId}" >${pipe}' || { echo "the front's ledger takes no sync" >&2; exit 1; }`,
        "tries=0",
        "while :; do",
        `    record=$(cat ${record} 2>/dev/null)`,
        `    case "$record" in *"synced"*" ${syncId}"*) printf '%s\\n' "$record"; exit 0 ;; esac`,
        "    tries=$((tries + 1))",
        `    [ "$tries" -lt 100 ] || { echo "the front's ledger did not write its record within 5 s" >&2; exit 1; }`,
        "    sleep 0.05",
        "done",
    ].join("\n");
}
