/**
 * The front's ledger: the real folding program (container/ledger.awk, on this host's awk) fed the
 * lines nginx writes, its record read back as the tools read it.
 */
import { plainFront } from "./settings";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { frontConfig } from "../../core/front";
import {
    LedgerLine,
    forgetLines,
    ledgerLogFormat,
    ledgerPathPattern,
    parseLedger,
    pullActivity,
    servedBy,
    unroutedLogFormat,
} from "../../core/ledger";
import { foldLedger } from "../../harness/ledger";

const digest = (hex: string) => `sha256:${hex.repeat(64)}`;
const pull = (line: Partial<LedgerLine>): LedgerLine => ({
    time: 1_800_000_000.25,
    registry: "docker.io",
    method: "GET",
    status: 200,
    bytes: 100,
    frontCache: "",
    uri: `/v2/library/nginx/blobs/${digest("a")}`,
    ...line,
});

test("the front writes its ledger lines in the format the program reads", () => {
    const config = frontConfig([], plainFront([]));
    expect(config).toContain(`log_format pullthrough_ledger '${ledgerLogFormat}';`);
    expect(config).toContain(`"~${ledgerPathPattern}" $pullthrough_pull;`);
});

test("only content paths of bounded length are logged, so each line is one atomic pipe write", () => {
    const pattern = new RegExp(ledgerPathPattern);
    expect(pattern.test(`/v2/library/nginx/blobs/${digest("a")}`)).toBe(true);
    expect(pattern.test("/v2/siderolabs/kubelet/manifests/v1.34.0")).toBe(true);
    expect(pattern.test("/v2/")).toBe(false);
    expect(pattern.test("/v2/_catalog")).toBe(false);
    expect(pattern.test(`/v2/${"a".repeat(300)}/manifests/v1`)).toBe(false);
    expect(pattern.test(`/v2/library/nginx/manifests/${"t".repeat(200)}`)).toBe(false);
});

test("served requests, bytes and front hits per registry; failures are not counted", () => {
    const ledger = foldLedger([
        pull({ bytes: 1000, frontCache: "HIT" }),
        pull({ method: "HEAD", uri: "/v2/library/nginx/manifests/1.27", bytes: 0 }),
        pull({ status: 304, bytes: 0 }),
        pull({ status: 404, bytes: 19 }),
        pull({ status: 502, bytes: 150 }),
        pull({ registry: "ghcr.io", bytes: 7000, frontCache: "MISS" }),
    ]);
    expect(servedBy(ledger, "docker.io")).toEqual({ requests: 3, bytes: 1000, frontHits: 1 });
    expect(servedBy(ledger, "ghcr.io")).toEqual({ requests: 1, bytes: 7000, frontHits: 0 });
    expect(servedBy(ledger, "quay.io")).toEqual({ requests: 0, bytes: 0, frontHits: 0 });
    expect(ledger.since).toBe(1_700_000_000);
});

test("last pulls: manifests by tag and digest, blobs by GET only, the latest time kept", () => {
    const ledger = foldLedger([
        pull({ time: 1_800_000_001.9, method: "HEAD", uri: "/v2/team/a/manifests/v1" }),
        pull({ time: 1_800_000_002, uri: `/v2/team/a/manifests/${digest("b")}` }),
        pull({ time: 1_800_000_003, uri: `/v2/team/a/blobs/${digest("c")}` }),
        pull({ time: 1_800_000_009, method: "HEAD", uri: `/v2/team/a/blobs/${digest("d")}` }),
        pull({ time: 1_800_000_005, uri: "/v2/team/a/manifests/v1" }),
    ]);
    const activity = pullActivity(ledger, "docker.io");
    expect(Object.fromEntries(activity.manifests)).toEqual({
        "team/a:v1": 1_800_000_005,
        [`team/a@${digest("b")}`]: 1_800_000_002,
    });
    expect(Object.fromEntries(activity.blobs)).toEqual({ [digest("c")]: 1_800_000_003 });
});

describe("a record that carries on", () => {
    let dir: string;
    let record: string;
    beforeEach(() => {
        dir = mkdtempSync(path.join(tmpdir(), "pt-ledger-test-"));
        record = path.join(dir, "ledger");
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    test("a restarted fold adds to the record it finds, keeping when counting began", () => {
        foldLedger([pull({}), pull({})], { record, started: 1_700_000_000 });
        const later = foldLedger([pull({ bytes: 50 })], { record, started: 1_750_000_000 });
        expect(servedBy(later, "docker.io")).toEqual({ requests: 3, bytes: 250, frontHits: 0 });
        expect(later.since).toBe(1_700_000_000);
    });

    test("a sync is acknowledged, with the latest few syncs kept", () => {
        const ids = Array.from({ length: 10 }, (_, i) => `${i}`.repeat(16));
        const ledger = foldLedger([pull({}), ...ids.map((id) => `sync ${id}`)], { record });
        expect(ledger.synced).toEqual(ids.slice(-8));
        expect(servedBy(ledger, "docker.io").requests).toBe(1);
    });

    test("many pulls of one blob make a record no larger than one pull does", () => {
        const one = foldLedger([pull({})], { record });
        const size = (ledger: ReturnType<typeof parseLedger>) =>
            [...ledger.blobs.values()].reduce((total, blobs) => total + blobs.size, 0);
        const many = foldLedger(
            Array.from({ length: 200_000 }, (_, i) => pull({ time: 1_800_000_000 + i / 1000 })),
            { record },
        );
        expect(servedBy(many, "docker.io").requests).toBe(200_001);
        expect(size(many)).toBe(size(one));
        expect(many.manifests.size).toBe(one.manifests.size);
    });
});

test("what a prune forgets leaves the record, and nothing else", () => {
    const kept = digest("c");
    const ledger = foldLedger([
        pull({ uri: "/v2/team/a/manifests/v1" }),
        pull({ uri: `/v2/team/a/blobs/${digest("a")}` }),
        pull({ uri: `/v2/team/b/blobs/${kept}` }),
        pull({ registry: "ghcr.io", uri: `/v2/team/a/blobs/${digest("a")}` }),
        ...forgetLines(
            new Map([["docker.io", { manifests: ["team/a:v1"], blobs: [digest("a")] }]]),
        ),
    ]);
    expect(pullActivity(ledger, "docker.io")).toEqual({
        manifests: new Map(),
        blobs: new Map([[kept, 1_800_000_000]]),
    });
    expect([...pullActivity(ledger, "ghcr.io").blobs.keys()]).toEqual([digest("a")]);
    // Its counts are what was served, whatever went since.
    expect(servedBy(ledger, "docker.io").requests).toBe(3);
});

test("the record's unknown lines are skipped", () => {
    const ledger = parseLedger("since 5\nserved docker.io 1 2 3\nsomething else\nblob x\n");
    expect(ledger.since).toBe(5);
    expect(servedBy(ledger, "docker.io")).toEqual({ requests: 1, bytes: 2, frontHits: 3 });
    expect(ledger.blobs.size).toBe(0);
});

describe("requests the one port had no cache for", () => {
    const unrouted = (ns: string, time = 1_800_000_000.5) => `${time}\tunrouted\t${ns}`;

    test("the front writes them in the format the program reads", () => {
        expect(frontConfig([], plainFront([]))).toContain(
            `log_format pullthrough_unrouted '${unroutedLogFormat}';`,
        );
    });

    test("are counted by ns, in lower case, with the last request, apart from what was served", () => {
        const ledger = foldLedger([
            unrouted("quay.io", 1_800_000_001),
            unrouted("Quay.IO", 1_800_000_007),
            unrouted("-"),
            unrouted("nvcr.io%3A443"),
            unrouted("bad ns\\x22"),
            pull({}),
        ]);
        expect(Object.fromEntries(ledger.unrouted)).toEqual({
            "quay.io": { requests: 2, last: 1_800_000_007 },
            "(none)": { requests: 1, last: 1_800_000_000 },
            "nvcr.io:443": { requests: 1, last: 1_800_000_000 },
            "(invalid)": { requests: 1, last: 1_800_000_000 },
        });
        expect(servedBy(ledger, "docker.io").requests).toBe(1);
    });

    test("at most 100 names, the rest together: whatever clients send, the record stays small", () => {
        const ledger = foldLedger(
            Array.from({ length: 150 }, (_, i) => unrouted(`registry${i}.example`)),
        );
        expect(ledger.unrouted.size).toBe(101);
        expect(ledger.unrouted.get("(others)")?.requests).toBe(50);
    });
});
