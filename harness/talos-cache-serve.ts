/**
 * A stand-in for `talosctl image cache-serve` (Talos 1.12+): a read-only registry over a flat
 * image cache, answering as machined's registryd does. Go cannot be built here, so the tests read
 * our exports through this, written from siderolabs/talos at v1.12.0,
 * `internal/app/machined/pkg/system/services/registry`:
 *
 * - routes `GET /v2/{args...}` (Go's mux lets HEAD match GET), and 200 for `/v2`, `/v2/`, `/healthz`;
 * - params.go: the registry is `?ns=`; the path's last two parts are `manifests|blobs` and the
 *   reference; anything else is a 404, a bad name a 400;
 * - registry.go: with no `ns`, `tryFindRegistry` takes the first folder under `manifests/` (in
 *   name order) that has `<name>/reference`, and a 400 "missing ns" when none has;
 *   a tag resolves by hashing `reference/<tag>`, which must equal `digest/sha256-<that hash>`;
 *   a blob is `blob/sha256-<hex>`, a manifest `manifests/<name>/digest/sha256-<hex>`;
 *   a manifest's Content-Type is its own `mediaType` (none is a 500);
 * - names are normalised as distribution/reference's ParseDockerRef does (`docker.io/nginx` is
 *   `docker.io/library/nginx`), and a `host:port` registry is the folder `host_port_`.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import * as http from "node:http";
import { AddressInfo } from "node:net";
import * as path from "node:path";
import { parseImageReference } from "../core/image-reference";
import { registryOfTalosFolder, talosRegistryFolder } from "../core/talos-cache";

/** distribution/reference's NameRegexp: path components separated by `/`. */
const namePattern =
    /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

class Status extends Error {
    constructor(
        readonly code: number,
        message: string,
    ) {
        super(message);
    }
}

export class TalosCacheServe {
    /** Every request, as `METHOD path?query STATUS`. */
    readonly requests: string[] = [];

    private constructor(
        private readonly server: http.Server,
        readonly root: string,
    ) {}

    /** Serves `root` on a free loopback port. */
    static async start(root: string): Promise<TalosCacheServe> {
        const server = http.createServer();
        const serve = new TalosCacheServe(server, root);
        server.on("request", (request, response) => serve.handle(request, response));
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        return serve;
    }

    get url(): string {
        return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    }

    async stop(): Promise<void> {
        await new Promise((resolve) => this.server.close(resolve));
    }

    private handle(request: http.IncomingMessage, response: http.ServerResponse) {
        const url = new URL(request.url ?? "/", "http://cache-serve");
        let status = 200;
        try {
            if (request.method !== "GET" && request.method !== "HEAD")
                throw new Status(405, "method not allowed");
            if (["/v2", "/v2/", "/healthz", "/healthz/"].includes(url.pathname)) {
                response.writeHead(200).end();
            } else if (url.pathname.startsWith("/v2/")) {
                const { headers, body } = this.lookup(
                    url.pathname.slice("/v2/".length),
                    url.searchParams.get("ns") ?? "",
                );
                response.writeHead(200, headers);
                response.end(request.method === "HEAD" ? undefined : body);
            } else throw new Status(404, "not found");
        } catch (error) {
            status = error instanceof Status ? error.code : 500;
            response.writeHead(status).end();
        }
        this.requests.push(`${request.method} ${url.pathname}${url.search} ${status}`);
    }

    private lookup(args: string, ns: string): { headers: http.OutgoingHttpHeaders; body: Buffer } {
        const parts = path.posix.normalize(args).split("/");
        if (parts.length < 3) throw new Status(404, `incorrect args value '${args}'`);
        const kind = parts.at(-2);
        if (kind !== "blobs" && kind !== "manifests") throw new Status(404, "incorrect ref");
        const name = parts.slice(0, -2).join("/");
        const reference = parts.at(-1)!;
        if (!namePattern.test(name)) throw new Status(400, `incorrect name: '${name}'`);
        const registry = ns || this.findRegistry(name, reference);
        const folder = this.nameFolder(registry, name, reference);
        const digest = reference.startsWith("sha256:")
            ? reference
            : this.resolveTag(folder, reference);
        const file =
            kind === "blobs"
                ? path.join(this.root, "blob", digest.replace("sha256:", "sha256-"))
                : path.join(
                      this.root,
                      "manifests",
                      folder,
                      "digest",
                      digest.replace("sha256:", "sha256-"),
                  );
        if (!existsSync(file)) throw new Status(404, `content '${digest}' not found`);
        const body = readFileSync(file);
        const headers: http.OutgoingHttpHeaders = {
            "Content-Length": body.length,
            "Docker-Content-Digest": digest,
        };
        if (kind === "manifests") {
            const mediaType = (JSON.parse(body.toString("utf8")) as { mediaType?: string })
                .mediaType;
            if (!mediaType) throw new Status(500, "media type is empty");
            headers["Content-Type"] = mediaType;
        }
        return { headers, body };
    }

    /** `handleRegistryWithPort` of the normalised name: its folder under `manifests/`. */
    private nameFolder(registry: string, name: string, reference: string): string {
        const separator = reference.startsWith("sha256:") ? "@" : ":";
        const parsed = parseImageReference(`${registry}/${name}${separator}${reference}`);
        if (!parsed) throw new Status(400, `failed to parse docker ref ${registry}/${name}`);
        return `${talosRegistryFolder(parsed.registry)}/${parsed.repository}`;
    }

    private resolveTag(folder: string, tag: string): string {
        const tagged = path.join(this.root, "manifests", folder, "reference", tag);
        if (!existsSync(tagged)) throw new Status(404, `${tagged} not found`);
        const digest = `sha256:${createHash("sha256").update(readFileSync(tagged)).digest("hex")}`;
        const byDigest = path.join(
            this.root,
            "manifests",
            folder,
            "digest",
            digest.replace("sha256:", "sha256-"),
        );
        if (!existsSync(byDigest)) throw new Status(500, `failed to hash '${byDigest}'`);
        const again = `sha256:${createHash("sha256").update(readFileSync(byDigest)).digest("hex")}`;
        if (again !== digest) throw new Status(500, "hash for the tag is not the digest file's");
        return digest;
    }

    /** `tryFindRegistry`: the first registry folder holding `<name>/reference`. */
    private findRegistry(name: string, reference: string): string {
        const manifests = path.join(this.root, "manifests");
        if (!existsSync(manifests) || !statSync(manifests).isDirectory())
            throw new Status(500, "failed to read manifests directory");
        for (const entry of readdirSync(manifests).sort()) {
            const registry = registryOfTalosFolder(entry);
            if (
                existsSync(
                    path.join(manifests, this.nameFolder(registry, name, reference), "reference"),
                )
            )
                return registry;
        }
        throw new Status(400, "missing ns");
    }
}
