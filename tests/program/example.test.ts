/**
 * Pullthrough as a library: examples/mirrored-machine-configs, a team's own program, imports
 * `Caches` from the package (its built dist/, as another program gets it) and runs under mocks;
 * and the package resolves, and type-checks, from a program that depends on it.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { commandType } from "../../harness/command-provider-stand-in";
import { containerType } from "../../harness/docker-provider-stand-in";
import { ProgramRun, runProgram } from "../../harness/program";

const repoRoot = path.resolve(__dirname, "../..");
const example = path.join(repoRoot, "examples/mirrored-machine-configs");
const exampleConfig = {
    "mirrored-machine-configs:mirrorHost": "10.5.0.1",
    "mirrored-machine-configs:nodeNetwork": "10.5.0.0/24",
};

describe("the example program", () => {
    /** What registered when: the front's creation is slow, as a healthcheck wait is. */
    const events: string[] = [];
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram(exampleConfig, {
            program: path.join(example, "index.ts"),
            project: "mirrored-machine-configs",
            createResource: async (args) => {
                events.push(`register ${args.name}`);
                if (args.type === containerType && args.name === "team-cache-front") {
                    await new Promise((resolve) => setTimeout(resolve, 200));
                    events.push("front healthy");
                }
                return { id: `${args.name}-id`, state: args.inputs };
            },
        });
    });

    test("makes the caches as one component of its stack, named by its prefix", () => {
        const component = run.resources.find((r) => r.type === "pullthrough:index:Caches")!;
        expect(component.urn).toBe(
            "urn:pulumi:dev::mirrored-machine-configs::pullthrough:index:Caches::team-caches",
        );
        expect(
            run.resources
                .filter((r) => r.parent === component.urn)
                .map((r) => r.name)
                .sort(),
        ).toEqual([
            "team-cache-docker.io",
            "team-cache-docker.io",
            "team-cache-factory.talos.dev",
            "team-cache-factory.talos.dev",
            "team-cache-front",
            "team-cache-ghcr.io",
            "team-cache-ghcr.io",
            "team-cache-ledger",
            "team-cache-net",
        ]);
    });

    test("feeds the caches' Talos patch into its own commands, which wait for healthy caches", () => {
        const commands = run.resources.filter((r) => r.type === commandType);
        expect(commands.map((r) => r.name)).toEqual([
            "controlplane-with-mirrors",
            "worker-with-mirrors",
        ]);
        for (const made of commands) {
            expect(made.inputs.stdin).toBe(
                [
                    "machine:",
                    "  registries:",
                    "    mirrors:",
                    "      docker.io:",
                    "        endpoints:",
                    "          - http://10.5.0.1:5000",
                    "      ghcr.io:",
                    "        endpoints:",
                    "          - http://10.5.0.1:5004",
                    "      factory.talos.dev:",
                    "        endpoints:",
                    "          - http://10.5.0.1:5006",
                    "",
                ].join("\n"),
            );
            expect(events.indexOf(`register ${made.name}`)).toBeGreaterThan(
                events.indexOf("front healthy"),
            );
        }
    });

    test("exports the mirrors and its machine configs", () => {
        const endpoints = Object.entries(run.outputs.mirrors as Record<string, any>).map(
            ([registry, mirror]) => [registry, mirror.endpoint, mirror.container],
        );
        expect(endpoints).toEqual([
            ["docker.io", "http://10.5.0.1:5000", "team-cache-docker.io"],
            ["ghcr.io", "http://10.5.0.1:5004", "team-cache-ghcr.io"],
            ["factory.talos.dev", "http://10.5.0.1:5006", "team-cache-factory.talos.dev"],
        ]);
        expect(run.outputs.machineConfigs).toEqual([
            "controlplane-mirrored.yaml",
            "worker-mirrored.yaml",
        ]);
        expect(run.outputs.machineConfigCommands).toEqual([
            "talosctl machineconfig patch controlplane.yaml --patch @/dev/stdin --output controlplane-mirrored.yaml",
            "talosctl machineconfig patch worker.yaml --patch @/dev/stdin --output worker-mirrored.yaml",
        ]);
    });
});

test("a bad argument, even one only the host can judge, is named by its argument path, and nothing registers", async () => {
    const registered: string[] = [];
    const run = runProgram(
        {},
        {
            program: path.join(__dirname, "programs/bad-arguments.ts"),
            createResource: async (args) => {
                registered.push(args.type);
                return { id: "x", state: args.inputs };
            },
        },
    );
    await expect(run).rejects.toThrow(
        /^Invalid Caches arguments:\n {2}- args\.bindAddress: got "10\.99\.99\.99"; expected an address of this host/,
    );
    expect(registered.filter((type) => type !== "pulumi:pulumi:Stack")).toEqual([]);
});

describe("a program that depends on the package", () => {
    let consumer: string;
    beforeAll(() => {
        // As npm link or a git dependency leaves it: node_modules/pullthrough is the package.
        consumer = mkdtempSync(path.join(tmpdir(), "pt-consumer-"));
        mkdirSync(path.join(consumer, "node_modules"));
        symlinkSync(repoRoot, path.join(consumer, "node_modules/pullthrough"));
        for (const dependency of ["@pulumi", "@types", "typescript"])
            symlinkSync(
                path.join(repoRoot, "node_modules", dependency),
                path.join(consumer, "node_modules", dependency),
            );
        cpSync(path.join(example, "index.ts"), path.join(consumer, "index.ts"));
    });
    afterAll(() => rmSync(consumer, { recursive: true, force: true }));

    test("gets the built component from `pullthrough`, and nothing else", () => {
        const load = (specifier: string) =>
            execFileSync(
                process.execPath,
                ["-e", `console.log(Object.keys(require(${JSON.stringify(specifier)})).join(" "))`],
                { cwd: consumer, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
            ).trim();
        expect(load("pullthrough")).toBe("ConfigError cachesType Caches");
        expect(() => load("pullthrough/core/plan")).toThrow(/ERR_PACKAGE_PATH_NOT_EXPORTED/);
    });

    test.each(["node10", "node16"])(
        "the example type-checks against the package's types (moduleResolution %s)",
        (moduleResolution) => {
            writeFileSync(
                path.join(consumer, "tsconfig.json"),
                // The tsconfig of `pulumi new typescript` (no skipLibCheck, no esModuleInterop).
                JSON.stringify({
                    compilerOptions: {
                        strict: true,
                        noEmit: true,
                        target: "es2020",
                        module: moduleResolution === "node10" ? "commonjs" : "node16",
                        moduleResolution,
                        sourceMap: true,
                        experimentalDecorators: true,
                        noFallthroughCasesInSwitch: true,
                        noImplicitReturns: true,
                        forceConsistentCasingInFileNames: true,
                    },
                    files: ["index.ts"],
                }),
            );
            execFileSync(
                process.execPath,
                [path.join(repoRoot, "node_modules/typescript/bin/tsc"), "-p", consumer],
                { encoding: "utf8" },
            );
        },
    );
});
