/**
 * Where cluster nodes reach the caches. The docker provisioner puts nodes on a user-defined
 * network of the cluster's subnet (talosctl sets only the subnet; Docker gives the gateway its
 * first address), and QEMU nodes sit behind a bridge holding that same gateway address. A
 * container on such a network pulls an image through the caches at the default `mirrorHost`:
 * the manifest and every blob, each checked against its digest.
 */
import { docker, fixtureRegistryImage } from "../../harness/docker";
import { TestStack } from "../../harness/stack";
import { FixtureImage } from "../../harness/upstreams";
import { image, layer } from "../../harness/oci";
import { cidrAddress } from "../../core/network";

jest.setTimeout(180_000);

const pulled: FixtureImage = {
    registry: "ghcr.io",
    repository: "pullthrough/reach",
    tag: "v1",
    artifact: image([layer("reach-a", 64 << 10), layer("reach-b", 64 << 10)], { oci: true }),
};
const cidr = `10.214.${process.pid % 250}.0/24`;
let stack: TestStack;
let clusterNetwork: string;

/** busybox wget in the node container: the manifest by tag, then each blob by its digest. */
const pullScript = `
set -e
base="$1/v2/${pulled.repository}"
wget -q -O /tmp/manifest --header 'Accept: application/vnd.oci.image.manifest.v1+json' "$base/manifests/${pulled.tag}"
for digest in $(grep -o 'sha256:[0-9a-f]\\{64\\}' /tmp/manifest | sort -u); do
  wget -q -O /tmp/blob "$base/blobs/$digest"
  [ "sha256:$(sha256sum /tmp/blob | cut -d' ' -f1)" = "$digest" ]
  echo "$digest"
done`;

beforeAll(async () => {
    stack = await TestStack.start("reach", ["ghcr.io"], [pulled]);
    // What talosctl's docker provisioner makes (pkg/provision/providers/docker/network.go).
    clusterNetwork = `${stack.id}-cluster`;
    docker("network", "create", "--subnet", cidr, "--label", "talos.owned=true", clusterNetwork);
    // The defaults a user gets: caches published on every address, mirrorHost left unset.
    await stack.up({
        bindAddress: "0.0.0.0",
        mirrorHost: undefined,
        cluster: { provisioner: "docker", cidr },
    });
});

afterAll(async () => {
    if (clusterNetwork) docker("network", "rm", clusterNetwork);
    await stack?.remove();
});

test("a node's gateway on the cluster network is the address mirrorHost defaults to", () => {
    // Docker records no gateway for a subnet-only network; a node's default route shows it.
    const route = docker(
        ...["run", "--rm", "--network", clusterNetwork, "--entrypoint", "ip"],
        ...[fixtureRegistryImage, "route", "show", "default"],
    );
    const gateway = /^default via (\S+)/.exec(route)?.[1];
    const { endpoint } = (stack.run.outputs.mirrors as Record<string, { endpoint: string }>)[
        "ghcr.io"
    ];
    expect(gateway).toBe(cidrAddress(cidr, 1));
    expect(endpoint).toBe(`http://${gateway}:${stack.ports["ghcr.io"]}`);
});

test("a node on the cluster network pulls through the caches at the default endpoint", () => {
    const { endpoint } = (stack.run.outputs.mirrors as Record<string, { endpoint: string }>)[
        "ghcr.io"
    ];
    const node = ["run", "--rm", "--network", clusterNetwork, "--entrypoint", "sh"];
    const digests = docker(...node, fixtureRegistryImage, "-c", pullScript, "pull", endpoint);
    expect(digests.split("\n").sort()).toEqual(
        pulled.artifact.blobs.map((blob) => blob.digest).sort(),
    );
    expect(stack.upstreams.blobRequests("ghcr.io")).toBeGreaterThanOrEqual(3);
});
