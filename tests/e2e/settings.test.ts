/**
 * Changing a setting never costs the cache: the second and later `pulumi up`s on the real engine,
 * stepped by the Pulumi engine stand-in with the Docker provider's own replace rules. After every change
 * the cached images pull with the upstream stopped, the volume is the one made at the start, and
 * a repeated `up` plans nothing.
 */
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { containerType } from "../../harness/docker-provider-stand-in";
import { docker, dockerApi, fixtureRegistryImage, freePort } from "../../harness/docker";
import { StackUpstream, TestStack } from "../../harness/stack";
import { byDigest, byTag, fixtureImages } from "../../harness/upstreams";

jest.setTimeout(300_000);

const registry = "docker.io";
const cached = fixtureImages().filter((fixture) => fixture.registry === registry);
const refs = cached.flatMap((fixture) => [byTag(fixture), byDigest(fixture)]);
const digests = cached.flatMap((fixture) => [
    fixture.artifact.manifest.digest,
    fixture.artifact.manifest.digest,
]);
/** The fixture registry image under another local tag: an `image` change that pulls nothing. */
const renamedImage = `${fixtureRegistryImage.split(":")[0]}:renamed`;

let stack: TestStack;
let cache: string;
let settings: Record<string, unknown>;
let upstream: StackUpstream;
const marker = randomUUID();

/**
 * What tells this volume from a new one of the same name: a file the test left in it. (Docker's
 * `CreatedAt` for a local volume is its directory's modification time, which mounts change.)
 */
async function volumeMarker(): Promise<string | undefined> {
    const { Mountpoint: mountpoint } = await dockerApi("GET", `/volumes/${cache}`);
    const file = path.join(mountpoint, "pullthrough-test-marker");
    return existsSync(file) ? readFileSync(file, "utf8") : undefined;
}

async function up(
    change: Record<string, unknown> = {},
    upstreamChange: Partial<StackUpstream> = {},
) {
    settings = { ...settings, ...change };
    upstream = { ...upstream, ...upstreamChange };
    await stack.up(settings, [upstream]);
    return stack.engine.changes().map((step) => `${step.op} ${step.name}`);
}

async function expectCachedImagesPullOffline() {
    stack.upstreams.stop(registry);
    try {
        expect(await stack.pullOnNewNode(refs)).toEqual(digests);
    } finally {
        await stack.upstreams.start(registry);
    }
}

/** Another name for the same upstream on the test network, for a `remote` change. */
const alias = () => `${stack.upstreams.get(registry).container}-alias`;

beforeAll(async () => {
    stack = await TestStack.start("settings", [registry], cached);
    docker("tag", fixtureRegistryImage, renamedImage);
    const { container } = stack.upstreams.get(registry);
    docker("network", "disconnect", stack.id, container);
    docker("network", "connect", "--alias", alias(), stack.id, container);
    cache = stack.cacheName(registry);
    settings = {};
    upstream = {
        registry,
        remote: stack.upstreams.get(registry).remote,
        port: stack.ports[registry],
    };
    // The two volumes have no order between them.
    expect((await up()).sort()).toEqual(
        [
            "create pullthrough-dev",
            "create pullthrough",
            `create ${cache}`,
            `create ${stack.id}-ledger`,
            `create ${stack.id}-net`,
            `create ${cache}`,
            `create ${stack.frontName}`,
        ].sort(),
    );
    // Warm: a node pulls everything once through the cache.
    expect(await stack.pullOnNewNode(refs)).toEqual(digests);
    const { Mountpoint: mountpoint } = await dockerApi("GET", `/volumes/${cache}`);
    writeFileSync(path.join(mountpoint, "pullthrough-test-marker"), marker);
});

afterAll(async () => {
    await stack?.remove();
    docker("rmi", renamedImage);
});

type Change = [
    name: string,
    settings: () => Record<string, unknown>,
    upstream: () => Partial<StackUpstream>,
];
const none = () => ({});

/** Each change in turn, from the defaults… */
const forward: Change[] = [
    ["mode auto → offline", () => ({ mode: "offline" }), none],
    ["mode offline → auto", () => ({ mode: "auto" }), none],
    ["ttl", () => ({ ttl: "1h" }), none],
    ["image", () => ({ image: renamedImage }), none],
    ["remote", none, () => ({ remote: `http://${alias()}:5000` })],
];
/** …and back again. */
const back: Change[] = [
    ["mode auto → offline", () => ({ mode: "offline" }), none],
    ["mode offline → auto", () => ({ mode: "auto" }), none],
    ["ttl", () => ({ ttl: "0" }), none],
    ["image", () => ({ image: fixtureRegistryImage }), none],
    ["remote", none, () => ({ remote: stack.upstreams.get(registry).remote })],
];

describe.each([
    [true, forward],
    [false, back],
])("with keepCache %s", (keepCache, changes) => {
    beforeAll(async () => {
        // keepCache is a resource option: switching it changes no resource.
        expect(await up({ keepCache })).toEqual([]);
    });

    test.each(changes)(
        "%s replaces only the container; the cache survives",
        async (_name, change, upstreamChange) => {
            expect(await up(change(), upstreamChange())).toEqual([`replace ${cache}`]);
            expect(stack.engine.changes()[0].type).toBe(containerType);
            await expectCachedImagesPullOffline();
            expect(await volumeMarker()).toBe(marker);
            expect(await up()).toEqual([]);
        },
    );
});

test("a cache port another container holds stops up before anything changes; the stack's own ports never do", async () => {
    const port = await freePort();
    const holder = `${stack.id}-holder`;
    docker("run", "-d", "--name", holder, "-p", `127.0.0.1:${port}:5000`, fixtureRegistryImage);
    const ownPort = upstream.port;
    try {
        await expect(up({}, { port })).rejects.toThrow(
            `pullthrough:upstreams[0].port: got ${port}; expected a port free on 127.0.0.1 (container ${holder} holds it)`,
        );
        // The front already publishes the stack's own port: the next up plans nothing.
        expect(await up({}, { port: ownPort })).toEqual([]);
    } finally {
        docker("rm", "--force", "--volumes", holder);
    }
});

test("only destroy removes the cache when keepCache is false", async () => {
    await stack.destroy();
    await expect(dockerApi("GET", `/volumes/${cache}`)).rejects.toThrow(/HTTP 404/);
});
