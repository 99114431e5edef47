/**
 * The second and later `pulumi up`s: which resources a setting change replaces, updates or leaves
 * alone, stepped by the Pulumi engine stand-in with the Docker and Command providers' own
 * replace-on-change rules, and applied to an in-memory record instead of a Docker engine.
 */
import { CommandProviderStandIn } from "../../harness/command-provider-stand-in";
import { containerType, volumeType } from "../../harness/docker-provider-stand-in";
import { InMemoryDocker } from "../../harness/in-memory-providers";
import { PulumiEngineStandIn, Step } from "../../harness/pulumi-engine";
import { TlsProviderStandIn } from "../../harness/tls-provider-stand-in";
import { encodeConfig } from "../../mirrors";

const upstreams = [{ registry: "docker.io", remote: "http://upstream:5000", port: 6000 }];
const summary = (steps: Step[]) => steps.map((step) => `${step.op} ${step.name}`);

let docker: InMemoryDocker;
let tls: TlsProviderStandIn;
let engine: PulumiEngineStandIn;
let settings: Record<string, unknown>;

async function up(change: Record<string, unknown> = {}) {
    settings = { ...settings, ...change };
    await engine.up(encodeConfig({ upstreams, namePrefix: "t-", ...settings }));
    return summary(engine.changes());
}

beforeEach(async () => {
    docker = new InMemoryDocker();
    tls = new TlsProviderStandIn();
    engine = new PulumiEngineStandIn([docker, new CommandProviderStandIn(), tls]);
    settings = {};
    expect(await up()).toEqual([
        "create pullthrough-dev",
        "create pullthrough",
        "create t-ledger",
        "create t-docker.io",
        "create t-net",
        "create t-docker.io",
        "create t-front",
    ]);
});

/** The cache's volume and the front's ledger, as they are now. */
const volumes = () => [...docker.live].filter(([, made]) => made.type === volumeType);

test("an unchanged config plans no change at all", async () => {
    expect(await up()).toEqual([]);
});

test.each<[string, Record<string, unknown>, string]>([
    ["mode", { mode: "offline" }, "t-docker.io"],
    ["mode back to proxy", { mode: "proxy" }, "t-docker.io"],
    ["ttl", { ttl: "1h" }, "t-docker.io"],
    ["image", { image: "registry:2" }, "t-docker.io"],
    [
        "remote",
        { upstreams: [{ ...upstreams[0], remote: "http://other-upstream:5000" }] },
        "t-docker.io",
    ],
    [
        "credentials",
        { credentials: { "docker.io": { username: "u", password: "p" } } },
        "t-docker.io",
    ],
    ["bindAddress", { bindAddress: "127.0.0.1" }, "t-front"],
    ["port", { upstreams: [{ ...upstreams[0], port: 6001 }] }, "t-front"],
    ["frontImage", { frontImage: "nginx:1.27" }, "t-front"],
])(
    "changing %s replaces one container, %s, and leaves the volume alone",
    async (_key, change, replaced) => {
        const volumesBefore = volumes();
        expect(await up(change)).toEqual([`replace ${replaced}`]);
        expect(engine.changes()[0].type).toBe(containerType);
        expect(volumes()).toEqual(volumesBefore);
        expect(await up()).toEqual([]);
    },
);

test("changing the log limits replaces every container and keeps both volumes, the ledger's too", async () => {
    const volumesBefore = volumes();
    expect(await up({ logs: { maxSize: "1m", maxFiles: 2 } })).toEqual([
        "replace t-docker.io",
        "replace t-front",
    ]);
    expect(volumes()).toEqual(volumesBefore);
    const front = [...docker.live.values()].find((made) => made.inputs.name === "t-front")!;
    expect(front.inputs.logOpts).toEqual({ "max-size": "1m", "max-file": "2" });
});

test.each<[string, Record<string, unknown>]>([
    ["mirrorHost", { mirrorHost: "10.5.0.1" }],
    ["keepCache", { keepCache: false }],
])("changing %s keeps every cache running", async (_key, change) => {
    expect(await up(change)).toEqual([]);
});

test("a changed healthcheck replaces the container, which the provider's update would not apply", async () => {
    const container = [...docker.live.values()].find((made) => made.type === containerType)!;
    // As if an earlier release had declared another healthcheck.
    const state = engine.recordedState(containerType, "t-docker.io");
    state.healthcheck = { ...container.inputs.healthcheck, interval: "9s" };
    expect(await up()).toEqual(["replace t-docker.io"]);
});

test("a volume made by an earlier release, with other labels, is kept as it is", async () => {
    engine.recordedState(volumeType, "t-docker.io").labels = [
        { label: "pullthrough.mode", value: "auto" },
    ];
    expect(await up()).toEqual([]);
});

test("a new namePrefix is a new stack of caches, created before the old ones go (README: destroy first)", async () => {
    expect(await up({ namePrefix: "u-" })).toEqual([
        "create u-ledger",
        "create u-docker.io",
        "create u-net",
        "create u-docker.io",
        "create u-front",
        "delete t-front",
        "delete t-docker.io",
        "delete t-net",
        "delete t-docker.io",
        "delete t-ledger",
    ]);
});
