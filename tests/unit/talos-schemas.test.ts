/**
 * The Talos renderings against Talos's own machine-config JSON schemas (JSON Schema 2020-12,
 * `pkg/machinery/config/schemas/config.schema.json` at v1.11.0 and v1.13.9; harness/
 * talos-schemas.ts finds them, pinned by sha256, where `npm run talos-schemas` put them): `talosConfigPatch` is valid up to
 * 1.11 and gone from the schema from 1.12; `talosMirrorDocuments` is valid from 1.12 and unknown
 * before.
 */
import Ajv2020 from "ajv/dist/2020";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { planAnyRegistry, planCaches } from "../../core/plan";
import {
    talosAnyRegistryDocuments,
    talosAnyRegistryPatch,
    talosConfigPatch,
    talosMirrorDocuments,
} from "../../core/render";
import { parseSettings } from "../../mirrors";
import { TalosSchemaVersion, talosSchema } from "../../harness/talos-schemas";
import { config, identity, upstream } from "./settings";

const schemas = new Map<TalosSchemaVersion, unknown>();
beforeAll(() => {
    for (const version of ["v1.11.0", "v1.13.9"] as const)
        schemas.set(version, talosSchema(version));
});

/** A validator for one `$defs` entry of the schema of one Talos version. */
function validatorFor(version: TalosSchemaVersion, definition: string) {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    ajv.addSchema(schemas.get(version) as object, "talos");
    return ajv.getSchema(`talos#/$defs/${definition}`)!;
}

const caches = planCaches(
    parseSettings(
        config({ upstreams: [upstream("docker.io", 5000), upstream("registry.local:5443", 5010)] }),
    ),
    identity,
);
const patch = parseYaml(talosConfigPatch(caches)) as { machine: Record<string, unknown> };
const documents = parseAllDocuments(talosMirrorDocuments(caches)).map((document) =>
    document.toJSON(),
);

test("Talos 1.11 takes talosConfigPatch: machine.registries is in its schema", () => {
    const machine = validatorFor("v1.11.0", "v1alpha1.MachineConfig");
    expect(machine(patch.machine)).toBe(true);
    expect(validatorFor("v1.11.0", "v1alpha1.RegistriesConfig")(patch.machine.registries)).toBe(
        true,
    );
});

test("Talos 1.11 has no RegistryMirrorConfig document", () => {
    expect(JSON.stringify(schemas.get("v1.11.0"))).not.toContain("RegistryMirrorConfigV1Alpha1");
});

test("Talos 1.13 takes talosMirrorDocuments, one valid RegistryMirrorConfig per registry", () => {
    const document = validatorFor("v1.13.9", "cri.RegistryMirrorConfigV1Alpha1");
    expect(documents.map((each) => [each.name, document(each), document.errors])).toEqual([
        ["docker.io", true, null],
        ["registry.local:5443", true, null],
    ]);
});

test("Talos 1.13's schema no longer has machine.registries: editors reject talosConfigPatch", () => {
    const machine = validatorFor("v1.13.9", "v1alpha1.MachineConfig");
    expect(machine(patch.machine)).toBe(false);
    expect(machine.errors).toEqual([
        expect.objectContaining({ params: { additionalProperty: "registries" } }),
    ]);
});

test("the one `*` mirror: Talos 1.11 takes the patch, Talos 1.13 the document", () => {
    const anyRegistry = planAnyRegistry(parseSettings({}));
    const wildcard = parseYaml(talosAnyRegistryPatch(anyRegistry)) as {
        machine: { registries: unknown };
    };
    expect(validatorFor("v1.11.0", "v1alpha1.RegistriesConfig")(wildcard.machine.registries)).toBe(
        true,
    );
    const document = validatorFor("v1.13.9", "cri.RegistryMirrorConfigV1Alpha1");
    const rendered = parseYaml(talosAnyRegistryDocuments(anyRegistry));
    expect([rendered.name, document(rendered), document.errors]).toEqual(["*", true, null]);
});
