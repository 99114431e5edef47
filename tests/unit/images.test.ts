import { parseImageReference } from "../../core/image-reference";
import { formatPlatform, parsePlatform } from "../../core/images";

describe("image references, normalised as Docker and containerd do", () => {
    test.each([
        ["nginx", "docker.io", "library/nginx", "latest", "docker.io/library/nginx:latest"],
        ["nginx:1.27", "docker.io", "library/nginx", "1.27", "docker.io/library/nginx:1.27"],
        ["bitnami/redis:7", "docker.io", "bitnami/redis", "7", "docker.io/bitnami/redis:7"],
        [
            "index.docker.io/library/nginx:1",
            "docker.io",
            "library/nginx",
            "1",
            "docker.io/library/nginx:1",
        ],
        [
            "registry.k8s.io/pause:3.10",
            "registry.k8s.io",
            "pause",
            "3.10",
            "registry.k8s.io/pause:3.10",
        ],
        ["localhost/app:dev", "localhost", "app", "dev", "localhost/app:dev"],
        [
            "registry.local:5000/team/app",
            "registry.local:5000",
            "team/app",
            "latest",
            "registry.local:5000/team/app:latest",
        ],
    ])("%s", (ref, registry, repository, reference, canonical) => {
        expect(parseImageReference(ref)).toMatchObject({
            registry,
            repository,
            reference,
            canonical,
        });
    });

    test("a digest is what the registry is asked for, with or without a tag", () => {
        const digest = `sha256:${"ab".repeat(32)}`;
        expect(parseImageReference(`ghcr.io/siderolabs/kubelet:v1.34.1@${digest}`)).toMatchObject({
            reference: digest,
            tag: "v1.34.1",
            digest,
        });
        expect(parseImageReference(`ghcr.io/siderolabs/kubelet@${digest}`)).toMatchObject({
            reference: digest,
            tag: undefined,
            canonical: `ghcr.io/siderolabs/kubelet@${digest}`,
        });
    });

    test.each([
        ["Nginx"],
        ["nginx:"],
        ["docker.io/"],
        ["a b"],
        [`nginx@sha256:${"z".repeat(64)}`],
        ["UPPER/app"],
    ])("%s is not a reference", (ref) => {
        expect(parseImageReference(ref)).toBeUndefined();
    });
});

test.each([
    ["linux/amd64", { os: "linux", architecture: "amd64" }],
    ["linux/arm64/v8", { os: "linux", architecture: "arm64", variant: "v8" }],
])("platform %s", (text, platform) => {
    expect(parsePlatform(text)).toEqual(platform);
    expect(formatPlatform(platform)).toBe(text);
});

test.each([["linux"], ["linux/"], ["linux/amd64/v1/x"], ["Linux/AMD64"]])(
    "%s is not a platform",
    (text) => {
        expect(parsePlatform(text)).toBeUndefined();
    },
);
