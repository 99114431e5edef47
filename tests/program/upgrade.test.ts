/**
 * Upgrading a running stack to the `Caches` component: the engine stand-in holds the state the
 * stack program left before the component (main at the revision in the saved state, made by
 * harness/stack-state.ts), and this revision runs `up` on it with the same config.
 */
import * as path from "node:path";
import { containerType, volumeType } from "../../harness/docker-provider-stand-in";
import { InMemoryCommands, InMemoryDocker } from "../../harness/in-memory-providers";
import { PulumiEngineStandIn, previewTree } from "../../harness/pulumi-engine";
import { readSavedState } from "../../harness/stack-state";

const repoRoot = path.resolve(__dirname, "../..");
const saved = readSavedState(path.join(__dirname, "fixtures/state-8b7ba3a.json"), repoRoot);
const before = saved.stack.deployment.resources;

let docker: InMemoryDocker;
let commands: InMemoryCommands;
let engine: PulumiEngineStandIn;

beforeEach(() => {
    docker = new InMemoryDocker();
    commands = new InMemoryCommands();
    engine = new PulumiEngineStandIn([docker, commands]);
    engine.importStack(saved.stack);
});

test("the saved state is the flat stack of before: every resource at the stack's root", () => {
    for (const resource of before.filter((resource) => resource.custom))
        expect(resource.urn).toMatch(
            new RegExp(`^urn:pulumi:dev::pullthrough::${resource.type}::`),
        );
    expect(before.filter((resource) => resource.type === volumeType)).toHaveLength(3);
    expect(before.filter((resource) => resource.type === containerType)).toHaveLength(3);
});

test("up after the upgrade moves every resource under Caches; no volume or cache goes, only the front, for its new port", async () => {
    await engine.up(saved.config);
    expect(previewTree(engine.steps)).toBe(
        [
            "    Type                                    Name                Plan",
            "    pulumi:pulumi:Stack                     pullthrough-dev",
            "+   └─ pullthrough:index:Caches             pullthrough         create",
            "       ├─ docker:index/volume:Volume        registry-ledger",
            "       ├─ docker:index/volume:Volume        registry-docker.io",
            "       ├─ docker:index/volume:Volume        registry-ghcr.io",
            "       ├─ docker:index/network:Network      registry-net",
            "       ├─ docker:index/container:Container  registry-docker.io",
            "       ├─ docker:index/container:Container  registry-ghcr.io",
            "+-     ├─ docker:index/container:Container  registry-front      replace",
            "       ├─ command:local:Command             prewarm-caches",
            "       └─ command:local:Command             prune-caches",
        ].join("\n"),
    );
    // The front publishes the one port for every registry (anyRegistryPort) since this was saved,
    // and makes the tools' token at start: Docker cannot add a port to a running container. The
    // caches, their volumes and the ledger's are untouched.
    expect(engine.changes().map((step) => `${step.op} ${step.name} ${step.changed}`)).toEqual([
        "create pullthrough ",
        "replace registry-front entrypoints,envs,ports,uploads",
    ]);
    // Each found by its alias, at the URN it had, and now known by one under the component.
    for (const resource of before.filter((resource) => resource.custom)) {
        const step = engine.steps.find((candidate) => candidate.aliasedFrom === resource.urn)!;
        expect(step.op).toBe(step.name === "registry-front" ? "replace" : "same");
        expect(step.urn).toBe(
            `urn:pulumi:dev::pullthrough::pullthrough:index:Caches$${resource.type}::${step.name}`,
        );
    }
    expect(commands.ran).toEqual([]);
    const after = engine.exportStack().deployment.resources;
    expect(
        after
            .filter((resource) => resource.custom)
            .every((resource) =>
                resource.parent?.endsWith("::pullthrough:index:Caches::pullthrough"),
            ),
    ).toBe(true);
    // The next up finds everything under its new URN.
    await engine.up(saved.config);
    expect(engine.changes()).toEqual([]);
    expect(engine.steps.filter((step) => step.aliasedFrom)).toEqual([]);
});

test("a settings change made with the upgrade replaces only the cache it concerns, and no volume", async () => {
    const upstreams = JSON.parse(saved.config["pullthrough:upstreams"]);
    upstreams[1].ttl = "24h";
    await engine.up({ ...saved.config, "pullthrough:upstreams": JSON.stringify(upstreams) });
    expect(engine.changes().map((step) => `${step.op} ${step.name}`)).toEqual([
        "create pullthrough",
        "replace registry-ghcr.io",
        "replace registry-front",
    ]);
});

test("destroy after the upgrade keeps the volumes, as keepCache says", async () => {
    await engine.up(saved.config);
    await engine.destroy();
    expect([...docker.live.values()]).toEqual([]);
    expect(engine.steps.filter((step) => step.type === volumeType).map((step) => step.op)).toEqual([
        "delete",
        "delete",
        "delete",
    ]);
});
