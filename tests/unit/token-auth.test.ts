/**
 * The upstream token auth stand-in (harness/token-auth.ts) answers as distribution's token access
 * controller does: a challenge for any request without a token it issued, an anonymous token at
 * its realm, and the registry behind it for the rest.
 */
import { Server, createServer } from "node:http";
import { AddressInfo } from "node:net";
import { TokenAuth } from "../../harness/token-auth";

let registry: Server;
let auth: TokenAuth;
let url: string;
/** What the registry behind it was asked: method, path and whether a token came along. */
const asked: string[] = [];

beforeAll(async () => {
    registry = createServer((req, res) => {
        asked.push(`${req.method} ${req.url} ${req.headers.authorization ?? "no token"}`);
        res.writeHead(200, { "Docker-Content-Digest": "sha256:feed" });
        res.end("blob bytes");
    });
    await new Promise<void>((resolve) => registry.listen(0, "127.0.0.1", resolve));
    auth = await TokenAuth.start(`http://127.0.0.1:${(registry.address() as AddressInfo).port}`);
    url = `http://127.0.0.1:${auth.port}`;
});

afterAll(async () => {
    await auth.close();
    await new Promise((resolve) => registry.close(resolve));
});

test("a request without a token is challenged, with the realm on the host the client asked", async () => {
    for (const path of ["/v2/", "/v2/library/nginx/blobs/sha256:feed"]) {
        const answer = await fetch(`${url}${path}`);
        expect(answer.status).toBe(401);
        expect(answer.headers.get("www-authenticate")).toBe(
            `Bearer realm="${url}/token",service="127.0.0.1:${auth.port}"`,
        );
    }
    expect(asked).toEqual([]);
});

test("an issued token passes the request to the registry, without the token", async () => {
    const { token } = (await (
        await fetch(`${url}/token?scope=repository:library/nginx:pull`)
    ).json()) as { token: string };
    expect(auth.tokensIssued).toBe(1);
    const answer = await fetch(`${url}/v2/library/nginx/blobs/sha256:feed`, {
        headers: { Authorization: `Bearer ${token}` },
    });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("docker-content-digest")).toBe("sha256:feed");
    expect(await answer.text()).toBe("blob bytes");
    expect(asked).toEqual(["GET /v2/library/nginx/blobs/sha256:feed no token"]);

    const forged = await fetch(`${url}/v2/library/nginx/blobs/sha256:feed`, {
        headers: { Authorization: "Bearer made-up" },
    });
    expect(forged.status).toBe(401);
});
