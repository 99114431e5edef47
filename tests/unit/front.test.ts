import { ledgerFiles } from "../../core/ledger";
import { frontConfig, frontContainer, planFront } from "../../core/front";
import { planCaches } from "../../core/plan";
import { parseSettings } from "../../mirrors";
import { config, identity, plainFront, upstream } from "./settings";

const settings = parseSettings(
    config({
        upstreams: [upstream("docker.io", 5000), upstream("registry.local:5443", 5010)],
        namePrefix: "t-",
        bindAddress: "127.0.0.1",
    }),
);
const caches = planCaches(settings, identity);
const front = planFront(settings, identity);
const rendered = frontConfig(caches, front);

/** The body of the server block that listens on `port`. */
function server(port: number): string {
    const start = rendered.indexOf(`listen ${port};`);
    expect(start).toBeGreaterThan(0);
    return rendered.slice(start, rendered.indexOf("\n}", start));
}

test("one server per cache, each passing to its own registry on the stack network", () => {
    expect(server(5000)).toContain("set $registry http://t-docker.io:5000;");
    expect(server(5010)).toContain("set $registry http://t-registry.local_5443:5000;");
    expect(front).toMatchObject({ name: "t-front", network: "t-net", image: "nginx:1" });
});

test("only paths addressed by digest are cached and coalesced; the rest passes through", () => {
    const body = server(5000);
    const [cached, passThrough] = body.split("location / {");
    expect(cached).toContain('location ~ "^/v2/.+/(blobs|manifests)/sha256:[0-9a-f]{64}$"');
    expect(cached).toContain("proxy_cache_lock on;");
    expect(passThrough).not.toContain("proxy_cache");
    // The key holds the port: two caches never share an entry.
    expect(cached).toContain('proxy_cache_key "5000$uri";');
    // prewarm's second look goes past the front's copy, to the registry.
    expect(cached).toContain("proxy_cache_bypass $http_x_pullthrough_refresh;");
});

test("a request with a view id in the view header goes to that read-only view, and nowhere else", () => {
    const config = frontConfig(caches, plainFront(["127.0.0.0/8"]));
    expect(config).toContain(
        'if ($http_x_pullthrough_view ~ "^[0-9a-f]{32}$") {\n        set $registry http://t-docker.io-view-$http_x_pullthrough_view:5000;\n        rewrite ^ /pullthrough-view$uri last;\n    }',
    );
    // There it is never the front's copy nor kept as one, and it is reached by no other path.
    const view = config.split("location /pullthrough-view/ {")[1].split("}")[0];
    expect(view).toContain("internal;");
    expect(view).toContain("rewrite ^/pullthrough-view(/.*)$ $1 break;");
    expect(view).toContain("proxy_max_temp_file_size 0;");
    expect(view).not.toContain("proxy_cache");
});

test("a waiter's wait is bounded well under containerd's 5-minute pull-progress timeout", () => {
    // As nginx reads the config: how long a waiter waits, and how long one fetch holds the lock.
    const seconds = (directive: string) =>
        Number(new RegExp(`${directive} (\\d+)s;`).exec(server(5000))?.[1]);
    expect(seconds("proxy_cache_lock_timeout")).toBeLessThanOrEqual(150);
    expect(seconds("proxy_cache_lock_age")).toBeLessThanOrEqual(150);
});

test("the front publishes every cache port on the bind address, uploads its config and keeps its ledger on its volume", () => {
    const container = frontContainer(front, caches, {
        entry: "entry script",
        ledgerProgram: "fold",
        prefetchProgram: "prefetch",
    });
    expect(container.entrypoints).toEqual(["/bin/sh", "-c", "entry script"]);
    expect(container.ports).toEqual([
        { internal: 5000, external: 5000, ip: "127.0.0.1", protocol: "tcp" },
        { internal: 5010, external: 5010, ip: "127.0.0.1", protocol: "tcp" },
        // The one port for every registry.
        { internal: 5005, external: 5005, ip: "127.0.0.1", protocol: "tcp" },
    ]);
    expect(container.uploads).toEqual([
        { file: "/etc/nginx/conf.d/default.conf", content: rendered },
        { file: ledgerFiles.program, content: "fold" },
        { file: "/etc/nginx/pullthrough/api-base.json", content: "{}" },
    ]);
    expect(container.envs.join("\n")).not.toContain("PREFETCH");
    expect(container.volumes).toEqual([
        { volumeName: front.ledgerVolume, containerPath: ledgerFiles.volumePath },
    ]);
    expect(container.networksAdvanced).toEqual([{ name: "t-net" }]);
    expect(container.logOpts).toEqual({ "max-size": "10m", "max-file": "3" });
});

test("only this host, the front's networks, the cluster network and allowFrom may pull", () => {
    const lab = parseSettings(
        config({ allowFrom: ["192.168.1.0/24", "10.0.0.7"], cluster: { cidr: "10.9.0.0/24" } }),
    );
    const { allowed } = planFront(lab, identity);
    expect(allowed).toEqual(["127.0.0.0/8", "10.9.0.0/24", "192.168.1.0/24", "10.0.0.7"]);
    // A specific bind address is where this host's own clients come from.
    expect(front.allowed).toEqual(["127.0.0.0/8", "127.0.0.1", "10.5.0.0/24"]);
    const body = frontConfig(planCaches(lab, identity), plainFront(allowed));
    const access = [
        "include /etc/nginx/pullthrough-networks.conf;",
        "allow 127.0.0.0/8;",
        "allow 10.9.0.0/24;",
        "allow 192.168.1.0/24;",
        "allow 10.0.0.7;",
        "deny all;",
    ].join("\n    ");
    // Every cache port, and the one port for every registry.
    expect(body.split(access)).toHaveLength(planCaches(lab, identity).length + 2);
});

test("the one port routes each registry by its ns, Docker Hub's other names and a port's encoded colon too", () => {
    const lab = parseSettings(
        config({ upstreams: [upstream("docker.io", 5000), upstream("registry.local:5443", 5010)] }),
    );
    const body = frontConfig(planCaches(lab, identity), plainFront([]));
    const route = body.split("map $arg_ns $pullthrough_route {")[1].split("}")[0];
    expect(
        route
            .trim()
            .split("\n")
            .map((line) => line.trim()),
    ).toEqual([
        'default "";',
        '"docker.io" "docker.io";',
        '"registry-1.docker.io" "docker.io";',
        '"index.docker.io" "docker.io";',
        '"registry.local:5443" "registry.local:5443";',
        '"registry.local%3A5443" "registry.local:5443";',
    ]);
    // Its copies are the caches' own: keyed by the cache's port, whichever port asked.
    expect(body).toContain('proxy_cache_key "$pullthrough_route_port$uri";');
    expect(body).toContain('proxy_cache_key "5000$uri";');
});

describe("prefetch", () => {
    const withPrefetch = frontConfig(caches, { ...plainFront(["127.0.0.0/8"]), prefetch: true });

    test("every client port tells the prefetcher of each platform manifest a client pulled", () => {
        const line =
            "access_log /tmp/pullthrough-prefetch.pipe pullthrough_prefetch if=$pullthrough_manifest_pulled;";
        expect(withPrefetch.split(line)).toHaveLength(caches.length + 2);
        expect(withPrefetch).toContain(
            "log_format pullthrough_prefetch '$pullthrough_cache_port $uri $sent_http_docker_content_digest';",
        );
        // The one port names the cache it routed to.
        expect(withPrefetch).toContain("5005 $pullthrough_route_port;");
        expect(frontConfig(caches, plainFront(["127.0.0.0/8"]))).not.toContain(
            "$pullthrough_manifest_pulled",
        );
    });

    test("the prefetcher is uploaded and told where to read, only when prefetch is on", () => {
        const container = frontContainer({ ...front, prefetch: true }, caches, {
            entry: "entry script",
            ledgerProgram: "fold",
            prefetchProgram: "prefetch",
        });
        expect(container.uploads).toContainEqual({
            file: "/etc/nginx/pullthrough-prefetch.sh",
            content: "prefetch",
        });
        expect(container.envs).toEqual(
            expect.arrayContaining([
                "PULLTHROUGH_PREFETCH_PROGRAM=/etc/nginx/pullthrough-prefetch.sh",
                "PULLTHROUGH_PREFETCH_PIPE=/tmp/pullthrough-prefetch.pipe",
                "PULLTHROUGH_PREFETCH_CONCURRENCY=4",
            ]),
        );
    });

    test("only a client's GET of a platform manifest counts: never an index, a view or the prefetcher", () => {
        const pattern = /"~(\^GET:200:1:[^"]+)" 1;/.exec(withPrefetch)![1];
        const pulled = new RegExp(pattern.replaceAll("\\\\", "\\"));
        const platform = "application/vnd.oci.image.manifest.v1+json";
        expect(pulled.test(`GET:200:1:${platform}`)).toBe(true);
        expect(pulled.test("GET:200:1:application/vnd.docker.distribution.manifest.v2+json")).toBe(
            true,
        );
        for (const other of [
            "GET:200:1:application/vnd.oci.image.index.v1+json",
            "GET:200:1:application/vnd.docker.distribution.manifest.list.v2+json",
            `GET:200:0:${platform}`,
            `HEAD:200:1:${platform}`,
            `GET:404:1:${platform}`,
        ])
            expect([other, pulled.test(other)]).toEqual([other, false]);
        expect(withPrefetch).toContain(
            'map "$http_x_pullthrough_view$http_x_pullthrough_prefetch" $pullthrough_pull {',
        );
    });
});
