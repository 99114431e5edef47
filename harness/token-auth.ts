/**
 * An upstream's token auth, in front of a fixture registry: what the real upstreams answer a
 * client that brings no token. Every `/v2/` request without a bearer token this issued gets 401
 * with `WWW-Authenticate: Bearer realm="http://<host>/token",service="<host>"` (distribution's
 * token access controller, registry/auth/token/accesscontroller.go, which docker.io and ghcr.io
 * run; registry.k8s.io's archeio challenges `/v2/` with the same realm on its own host,
 * cmd/archeio/internal/app/handlers.go), and `GET /token` hands out an anonymous pull token, as
 * their auth services do for public repositories. Every other request passes to the registry.
 *
 * Clients then behave as they do against the real ones: containerd asks for a token after a 401
 * and keeps it per repository; a registry in proxy mode asks for one before each request it
 * proxies (registry/proxy/proxyregistry.go makes a token handler per repository per request).
 */
import { randomUUID } from "node:crypto";
import { IncomingMessage, Server, ServerResponse, createServer, request } from "node:http";
import { AddressInfo } from "node:net";

export class TokenAuth {
    private readonly issued = new Set<string>();
    /** Tokens handed out so far. */
    tokensIssued = 0;
    /** `GET /v2/` asked so far (a client learning the challenge). */
    pings = 0;

    private constructor(
        private readonly server: Server,
        private readonly target: URL,
    ) {}

    /** Listens on `listenHost` and passes authorised requests to the registry at `target`. */
    static async start(target: string, listenHost = "127.0.0.1"): Promise<TokenAuth> {
        const server = createServer();
        const auth = new TokenAuth(server, new URL(target));
        server.on("request", (req, res) => auth.answer(req, res));
        await new Promise<void>((resolve, reject) =>
            server.once("error", reject).listen(0, listenHost, resolve),
        );
        return auth;
    }

    get port(): number {
        return (this.server.address() as AddressInfo).port;
    }

    private answer(req: IncomingMessage, res: ServerResponse) {
        const host = req.headers.host ?? `127.0.0.1:${this.port}`;
        if (req.url?.startsWith("/token")) {
            const token = randomUUID();
            this.issued.add(token);
            this.tokensIssued++;
            res.writeHead(200, { "Content-Type": "application/json" });
            res.end(JSON.stringify({ token, access_token: token, expires_in: 300 }));
            return;
        }
        if (req.url === "/v2/") this.pings++;
        const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
        if (!bearer || !this.issued.has(bearer)) {
            res.writeHead(401, {
                "Content-Type": "application/json",
                "Docker-Distribution-Api-Version": "registry/2.0",
                "WWW-Authenticate": `Bearer realm="http://${host}/token",service="${host}"`,
            });
            res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
            return;
        }
        // The token is this stand-in's; the registry behind it takes every pull.
        const headers = { ...req.headers };
        delete headers.authorization;
        const upstream = request(
            {
                host: this.target.hostname,
                port: this.target.port,
                method: req.method,
                path: req.url,
                headers: { ...headers, host: this.target.host },
            },
            (answer) => {
                res.writeHead(answer.statusCode ?? 502, answer.headers);
                answer.pipe(res);
            },
        );
        upstream.on("error", () => res.destroy());
        req.pipe(upstream);
    }

    async close(): Promise<void> {
        this.server.closeAllConnections();
        await new Promise((resolve) => this.server.close(resolve));
    }
}
