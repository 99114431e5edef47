/**
 * Bundles without an engine: the OCI layout's index and reference annotations, the import plan's
 * checks and writes, the tar codec, and the layout reader and writer on real files (and on tars
 * GNU tar wrote, with its long-name extensions).
 */
import { execFileSync } from "node:child_process";
import {
    existsSync,
    mkdirSync,
    mkdtempSync,
    readdirSync,
    rmSync,
    statSync,
    truncateSync,
    writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import {
    ImportImage,
    bytesToAdd,
    planCacheWrites,
    planImport,
    planStorageWrites,
} from "../../core/bundle";
import { frontCacheFile } from "../../core/front";
import {
    Descriptor,
    entryReference,
    parseBundleIndex,
    refNameAnnotation,
    renderBundleIndex,
} from "../../core/oci";
import { sha256Digest } from "../../core/digest";
import { parsePaxRecords, parseTarHeader, tarHeader } from "../../core/tar";
import { BundleWriter } from "../../host/oci-layout";
import { bundleFingerprint, bundleToImport, openBundle } from "../../host/bundles";
import { image, index, layer } from "../../harness/oci";

let workDir: string;
beforeEach(() => {
    workDir = mkdtempSync(path.join(tmpdir(), "pt-bundle-unit-"));
});
afterEach(() => rmSync(workDir, { recursive: true, force: true }));

const named = (reference: string, digest = `sha256:${"a".repeat(64)}`): Descriptor => ({
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest,
    size: 10,
    annotations: { [refNameAnnotation]: reference },
});

describe("reference annotations", () => {
    test("a full reference names the image; containerd's annotation wins over image-spec's", () => {
        expect(entryReference(named("docker.io/library/nginx:1.27"))).toMatchObject({
            registry: "docker.io",
            repository: "library/nginx",
            tag: "1.27",
        });
        const both = named("ghcr.io/a/b:1");
        both.annotations!["io.containerd.image.name"] = "quay.io/c/d:2";
        expect(entryReference(both)).toMatchObject({ registry: "quay.io", repository: "c/d" });
    });

    test.each([
        ["1.27", 'is named "1.27", not a full reference'],
        ["nginx:1.27", 'is named "nginx:1.27", not a full reference'],
        ["library/nginx:1.27", 'is named "library/nginx:1.27", not a full reference'],
    ])("%s does not say which cache it belongs to", (reference, problem) => {
        expect(entryReference(named(reference))).toContain(problem);
    });

    test("an entry without a name, or whose name holds another digest, is refused", () => {
        expect(entryReference({ ...named("x"), annotations: {} })).toContain(
            "has no reference annotation",
        );
        const other = `sha256:${"b".repeat(64)}`;
        expect(entryReference(named(`ghcr.io/a/b@${other}`))).toContain(`but is sha256:aaaa`);
    });

    test("the index lists each reference once, sorted, under both annotations", () => {
        const manifest = { mediaType: "m", digest: `sha256:${"c".repeat(64)}`, size: 3 };
        const rendered = JSON.parse(
            renderBundleIndex([
                { reference: "registry.k8s.io/pause:3.10", manifest },
                { reference: "docker.io/library/nginx:1.27", manifest },
            ]),
        );
        expect(rendered.manifests.map((entry: Descriptor) => entry.annotations)).toEqual([
            {
                "io.containerd.image.name": "docker.io/library/nginx:1.27",
                [refNameAnnotation]: "docker.io/library/nginx:1.27",
            },
            {
                "io.containerd.image.name": "registry.k8s.io/pause:3.10",
                [refNameAnnotation]: "registry.k8s.io/pause:3.10",
            },
        ]);
        expect(parseBundleIndex(JSON.stringify(rendered))).toEqual(rendered);
        expect(parseBundleIndex("{")).toBe("index.json is not JSON");
        expect(parseBundleIndex('{"schemaVersion":2,"manifests":[{"digest":"x","size":1}]}')).toBe(
            "index.json entry 1 has no sha256 digest and size",
        );
    });
});

/** A bundle's index, manifests and blob sizes for `images` (reference → artifact). */
function bundleOf(images: Record<string, ReturnType<typeof image>>) {
    const manifests = new Map<string, Buffer>();
    const sizes = new Map<string, number>();
    for (const artifact of Object.values(images)) {
        for (const m of [artifact, ...artifact.children]) {
            manifests.set(m.manifest.digest, m.manifest.bytes);
            sizes.set(m.manifest.digest, m.manifest.bytes.length);
            for (const blob of m.blobs) sizes.set(blob.digest, blob.bytes.length);
        }
    }
    const rendered = renderBundleIndex(
        Object.entries(images).map(([reference, artifact]) => ({
            reference,
            manifest: {
                mediaType: artifact.mediaType,
                digest: artifact.manifest.digest,
                size: artifact.manifest.bytes.length,
            },
        })),
    );
    return {
        index: parseBundleIndex(rendered) as ReturnType<typeof parseBundleIndex> & object,
        manifests,
        sizes,
    };
}

describe("the import plan", () => {
    const base = layer("unit-base", 1024);
    const app = image([base, layer("unit-app", 2048)]);
    const multi = index({
        amd64: image([base, layer("unit-amd64", 512)], { oci: true }),
        arm64: image([layer("unit-arm64", 512)], { oci: true, architecture: "arm64" }),
    });

    test("each image goes with its manifests (platforms first) and blobs, each blob once", () => {
        const {
            index: idx,
            manifests,
            sizes,
        } = bundleOf({
            "ghcr.io/a/app:1": app,
            "docker.io/library/multi:1": multi,
        });
        const plan = planImport(idx, manifests, sizes, ["ghcr.io", "docker.io"]);
        expect(plan.problems).toEqual([]);
        const [multiImage, appImage] = plan.images;
        expect(appImage.manifests.map((m) => m.digest)).toEqual([app.manifest.digest]);
        expect(appImage.blobs.map((b) => b.digest)).toEqual(app.blobs.map((b) => b.digest));
        expect(multiImage.manifests.map((m) => m.digest)).toEqual([
            ...multi.children.map((child) => child.manifest.digest),
            multi.manifest.digest,
        ]);
    });

    test("an index whose platforms the bundle lacks in part still imports what it carries", () => {
        const { index: idx, manifests, sizes } = bundleOf({ "docker.io/library/multi:1": multi });
        manifests.delete(multi.children[1].manifest.digest);
        const plan = planImport(idx, manifests, sizes, ["docker.io"]);
        expect(plan.problems).toEqual([]);
        expect(plan.images[0].manifests).toHaveLength(2);
        manifests.delete(multi.children[0].manifest.digest);
        expect(planImport(idx, manifests, sizes, ["docker.io"]).problems).toEqual([
            "docker.io/library/multi:1: its index lists 2 platform manifests and the bundle holds none of them",
        ]);
    });

    test("every problem is found before anything is written, each naming its image", () => {
        const {
            index: idx,
            manifests,
            sizes,
        } = bundleOf({
            "ghcr.io/a/app:1": app,
            "quay.io/a/app:1": app,
        });
        const layerDigest = app.blobs[2].digest;
        sizes.delete(layerDigest);
        sizes.set(app.blobs[1].digest, 1);
        expect(planImport(idx, manifests, sizes, ["ghcr.io"]).problems).toEqual([
            `ghcr.io/a/app:1: blob ${app.blobs[1].digest} has 1 bytes in the bundle; its manifest says ${app.blobs[1].bytes.length}`,
            `ghcr.io/a/app:1: blob ${layerDigest} is named but not in the bundle`,
            "quay.io/a/app:1 is for quay.io, which has no cache (caches: ghcr.io)",
        ]);
        manifests.set(app.manifest.digest, Buffer.from("{}"));
        expect(planImport(idx, manifests, sizes, ["ghcr.io", "quay.io"]).problems[0]).toBe(
            `ghcr.io/a/app:1: its manifest ${app.manifest.digest} does not match its digest (its bytes hash to ${sha256Digest("{}")})`,
        );
    });

    test("writes: what the repository links is left alone, another repository's blob is mounted, the rest uploaded; a second import writes nothing", () => {
        const { index: idx, manifests, sizes } = bundleOf({ "ghcr.io/a/app:1": app });
        const [wanted] = planImport(idx, manifests, sizes, ["ghcr.io"]).images as ImportImage[];
        const empty = { blobs: new Set<string>(), repositories: new Map() };
        const first = planCacheWrites([wanted], empty);
        expect(first[0].blobs.map(({ step }) => step.kind)).toEqual(["upload", "upload", "upload"]);
        expect(first[0]).toMatchObject({ tag: true });
        expect(bytesToAdd(first, empty)).toBe(
            app.manifest.bytes.length + app.blobs.reduce((sum, blob) => sum + blob.bytes.length, 0),
        );

        const other = {
            layers: new Set([base.blob.digest]),
            revisions: new Set<string>(),
            tags: new Map<string, string>(),
        };
        const withBase = {
            blobs: new Set([base.blob.digest]),
            repositories: new Map([["b/other", other]]),
        };
        expect(planCacheWrites([wanted], withBase)[0].blobs.map(({ step }) => step)).toEqual([
            { kind: "upload" },
            { kind: "mount", from: "b/other" },
            { kind: "upload" },
        ]);

        const held = {
            blobs: new Set([app.manifest.digest, ...app.blobs.map((blob) => blob.digest)]),
            repositories: new Map([
                [
                    "a/app",
                    {
                        layers: new Set(app.blobs.map((blob) => blob.digest)),
                        revisions: new Set([app.manifest.digest]),
                        tags: new Map([["1", app.manifest.digest]]),
                    },
                ],
            ]),
        };
        const again = planCacheWrites([wanted], held);
        expect(again[0]).toMatchObject({ manifests: [], tag: false });
        expect(again[0].blobs.every(({ step }) => step.kind === "linked")).toBe(true);
        expect(bytesToAdd(again, held)).toBe(0);
    });

    test("storage writes: the registry's layout, each blob once, a held blob linked and not sent, the tag last", () => {
        const { index: idx, manifests, sizes } = bundleOf({ "ghcr.io/a/app:1": app });
        const [wanted] = planImport(idx, manifests, sizes, ["ghcr.io"]).images as ImportImage[];
        const hex = (digest: string) => digest.slice(7);
        const data = (digest: string) =>
            `blobs/sha256/${hex(digest).slice(0, 2)}/${hex(digest)}/data`;
        const withBase = {
            blobs: new Set([base.blob.digest]),
            repositories: new Map([
                [
                    "b/other",
                    {
                        layers: new Set([base.blob.digest]),
                        revisions: new Set<string>(),
                        tags: new Map<string, string>(),
                    },
                ],
            ]),
        };
        const writes = planStorageWrites(planCacheWrites([wanted], withBase), withBase);
        const paths = writes.files.map((file) => file.path);
        const sentBlobs = app.blobs.filter((blob) => blob.digest !== base.blob.digest);
        expect(paths).toEqual([
            ...app.blobs.flatMap((blob) => [
                ...(blob.digest === base.blob.digest ? [] : [data(blob.digest)]),
                `repositories/a/app/_layers/sha256/${hex(blob.digest)}/link`,
            ]),
            data(app.manifest.digest),
            `repositories/a/app/_manifests/revisions/sha256/${hex(app.manifest.digest)}/link`,
            "repositories/a/app/_manifests/tags/1/current/link",
            `repositories/a/app/_manifests/tags/1/index/sha256/${hex(app.manifest.digest)}/link`,
        ]);
        const link = writes.files.find((file) => file.path.endsWith("/current/link"));
        expect(link).toEqual({
            path: "repositories/a/app/_manifests/tags/1/current/link",
            content: Buffer.from(app.manifest.digest),
        });
        expect(writes.sentBytes).toBe(
            app.manifest.bytes.length + sentBlobs.reduce((sum, blob) => sum + blob.bytes.length, 0),
        );
        expect([...writes.sent].sort()).toEqual(
            [app.manifest.digest, ...sentBlobs.map((blob) => blob.digest)].sort(),
        );
    });
});

describe("tar headers", () => {
    test("a header reads back; a zero block ends the archive; a damaged one is not a header", () => {
        const header = tarHeader("blobs/sha256/abc", 1234);
        expect(parseTarHeader(header)).toEqual({
            kind: "entry",
            name: "blobs/sha256/abc",
            size: 1234,
            type: "0",
        });
        expect(parseTarHeader(Buffer.alloc(512))).toEqual({ kind: "end" });
        header[0] ^= 1;
        expect(parseTarHeader(header)).toEqual({ kind: "invalid" });
    });

    test("sizes past 8 GiB take GNU's base-256 form", () => {
        const size = 9 * 2 ** 30;
        expect(parseTarHeader(tarHeader("big", size))).toMatchObject({ size });
    });

    test("pax records", () => {
        expect(parsePaxRecords(Buffer.from("29 path=blobs/sha256/x/y/z/w\n11 size=77\n"))).toEqual({
            path: "blobs/sha256/x/y/z/w",
            size: 77,
        });
    });

    test("a path ustar's name and prefix cannot hold is led by a pax header; one they can is not", () => {
        const split = `import/${"r/".repeat(60)}link`;
        expect(tarHeader(split, 71)).toHaveLength(512);
        expect(parseTarHeader(tarHeader(split, 71))).toMatchObject({ name: split, size: 71 });
        const long = `import/${"repository-".repeat(30)}/link`;
        const header = tarHeader(long, 71);
        expect(header.length).toBeGreaterThan(512);
        expect(parseTarHeader(header)).toMatchObject({ type: "x" });
        const paxSize = (parseTarHeader(header) as { size: number }).size;
        expect(parsePaxRecords(header.subarray(512, 512 + paxSize)).path).toBe(long);
        expect(parseTarHeader(header.subarray(header.length - 512))).toMatchObject({ size: 71 });
    });
});

describe("the layout on disk", () => {
    const blobs = [Buffer.from("first blob"), Buffer.from("second, longer blob")];
    const digests = blobs.map((bytes) => sha256Digest(bytes));
    const indexText = renderBundleIndex([
        {
            reference: "ghcr.io/a/b:1",
            manifest: { mediaType: "m", digest: digests[0], size: blobs[0].length },
        },
    ]);

    async function write(destination: string, commit = true) {
        const writer = new BundleWriter(
            destination,
            new Map(digests.map((digest, i) => [digest, blobs[i].length])),
        );
        for (const [i, bytes] of blobs.entries()) await writer.addBlob(digests[i], bytes);
        if (commit) await writer.commit(indexText);
        return writer;
    }

    test.each(["bundle.tar", "bundle"])("%s: written, read back, each blob once", async (name) => {
        const destination = path.join(workDir, name);
        const writer = await write(destination);
        expect(readdirSync(workDir)).toEqual([name]);
        const bundle = openBundle(destination);
        expect(bundle.format).toBe(name.endsWith(".tar") ? "tar" : "directory");
        expect([...bundle.blobs]).toEqual(
            expect.arrayContaining(digests.map((digest, i) => [digest, blobs[i].length])),
        );
        expect(await bundle.read(digests[1])).toEqual(blobs[1]);
        const streamed: Buffer[] = [];
        for await (const chunk of bundle.stream(digests[0])) streamed.push(chunk as Buffer);
        expect(Buffer.concat(streamed)).toEqual(blobs[0]);
        expect(bundleFingerprint(destination)).toBe(sha256Digest(indexText));
        if (name.endsWith(".tar")) expect(statSync(destination).size).toBe(writer.bytes);
    });

    test("an export that stops before its index leaves nothing under the bundle's name", async () => {
        const destination = path.join(workDir, "bundle.tar");
        const writer = await write(destination, false);
        expect(existsSync(destination)).toBe(false);
        // What a killed export leaves is a partial file that no reader takes for a bundle.
        const [partial] = readdirSync(workDir);
        expect(partial).toMatch(/^bundle\.tar\.partial-[0-9a-f]{8}$/);
        expect(() => openBundle(path.join(workDir, partial))).toThrow(
            /truncated tar|no index\.json/,
        );
        writer.abort();
        expect(readdirSync(workDir)).toEqual([]);
    });

    test("a new bundle replaces an old one only once it is whole", async () => {
        const destination = path.join(workDir, "bundle");
        await write(destination);
        mkdirSync(path.join(destination, "stale"));
        await write(destination);
        expect(readdirSync(destination).sort()).toEqual(["blobs", "index.json", "oci-layout"]);
        expect(readdirSync(workDir)).toEqual(["bundle"]);
    });

    test("a tar from GNU tar, long names in its own extension, reads the same", async () => {
        const layout = path.join(workDir, "layout");
        await write(layout);
        // GNU tar writes ./-prefixed names; a long one goes in a ././@LongLink entry.
        const deep = path.join(layout, "x".repeat(120));
        writeFileSync(deep, "ignored");
        const file = path.join(workDir, "gnu.tar");
        execFileSync("tar", ["--format=gnu", "-cf", file, "-C", layout, "."]);
        const bundle = openBundle(file);
        expect(await bundle.read(digests[1])).toEqual(blobs[1]);
        expect(bundle.index.manifests).toHaveLength(1);
        execFileSync("tar", ["--format=pax", "-cf", file, "-C", layout, "."]);
        expect(await openBundle(file).read(digests[0])).toEqual(blobs[0]);
    });

    test("bad bundles: one line naming the file and the cause", async () => {
        const missing = path.join(workDir, "nowhere.tar");
        expect(() => openBundle(missing)).toThrow(`${missing}: no such file or directory`);
        const notTar = path.join(workDir, "notes.tar");
        writeFileSync(notTar, "x".repeat(2048));
        expect(() => openBundle(notTar)).toThrow(
            `${notTar}: neither a directory nor a tar archive`,
        );
        const truncated = path.join(workDir, "truncated.tar");
        await write(truncated);
        truncateSync(truncated, 700);
        expect(() => openBundle(truncated)).toThrow(`${truncated}: truncated tar`);
        const empty = path.join(workDir, "empty");
        mkdirSync(empty);
        expect(() => openBundle(empty)).toThrow(
            `${empty}: no oci-layout file: not an OCI image layout`,
        );
    });

    test("importFrom: resolved against the project folder; a bad bundle is a config error naming the key", async () => {
        await write(path.join(workDir, "bundle.tar"));
        expect(bundleToImport("bundle.tar", workDir)).toEqual({
            path: path.join(workDir, "bundle.tar"),
            fingerprint: sha256Digest(indexText),
        });
        expect(bundleToImport(undefined, workDir)).toBeUndefined();
        expect(() => bundleToImport("gone.tar", workDir)).toThrow(
            `pullthrough:importFrom: ${path.join(workDir, "gone.tar")}: no such file or directory; expected a bundle made by npm run export`,
        );
    });
});

test("the front's copy of a path is where nginx files it (levels=1:2, md5 of the key)", () => {
    // md5("5000/v2/library/nginx/blobs/sha256:…") as nginx computes it for proxy_cache_key.
    const file = frontCacheFile(5000, "/v2/library/nginx/blobs/sha256:0");
    const key = file.split("/").at(-1)!;
    expect(file).toBe(
        `/var/cache/nginx/pullthrough/blobs/${key.slice(-1)}/${key.slice(-3, -1)}/${key}`,
    );
    expect(key).toBe(
        execFileSync("md5sum", { input: "5000/v2/library/nginx/blobs/sha256:0" })
            .toString()
            .split(" ")[0],
    );
});
