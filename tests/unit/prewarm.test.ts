import { planCaches } from "../../core/plan";
import { planPrewarm } from "../../core/prewarm";
import { prewarmCommand } from "../../core/tool-commands";
import { mirrorsByRegistry } from "../../core/render";
import { parseSettings } from "../../mirrors";
import { ConfigError } from "../../core/config-error";
import { config, identity, upstream } from "./settings";

describe("prewarm", () => {
    const talosSet = {
        images: ["registry.k8s.io/pause:3.10", "ghcr.io/siderolabs/kubelet:v1.34.0"],
        source: "a test list",
    };
    const plan = (values: Record<string, unknown>, talos = talosSet) => {
        const settings = parseSettings(config(values));
        return planPrewarm(settings, planCaches(settings, identity), () => talos);
    };

    test("images are fully qualified, in config order, each once; talos expands to its image set", () => {
        expect(
            plan({
                prewarm: [
                    "nginx:1.27",
                    "talos",
                    "docker.io/library/nginx:1.27",
                    "registry.k8s.io/pause:3.10",
                ],
            }),
        ).toEqual([
            "docker.io/library/nginx:1.27",
            "registry.k8s.io/pause:3.10",
            "ghcr.io/siderolabs/kubelet:v1.34.0",
        ]);
    });

    test("the Talos image set is read only when talos is listed", () => {
        const settings = parseSettings(config({ prewarm: ["nginx"] }));
        expect(
            planPrewarm(settings, planCaches(settings, identity), () => {
                throw new Error("read");
            }),
        ).toEqual(["docker.io/library/nginx:latest"]);
    });

    test("a Talos image from a registry without a cache is a config error naming it", () => {
        const values = { prewarm: ["talos"], upstreams: [upstream("registry.k8s.io", 5001)] };
        expect(() => plan(values)).toThrow(ConfigError);
        expect(() => plan(values)).toThrow(
            /pullthrough:prewarm\[0\]: got "talos", whose ghcr.io\/siderolabs\/kubelet:v1.34.0 needs a cache for ghcr.io/,
        );
    });

    test("pulumi up runs npm run prewarm with the stack outputs on stdin", () => {
        const caches = planCaches(parseSettings({}), identity);
        const images = ["docker.io/library/nginx:1.27"];
        const command = prewarmCommand({ images, caches, dockerHost: undefined }, "/project");
        expect(command.create).toBe("npm run --silent prewarm -- --outputs -");
        expect(command.dir).toBe("/project");
        expect(JSON.parse(command.stdin)).toEqual({
            mirrors: mirrorsByRegistry(caches),
            prewarmImages: images,
            dockerHost: null,
        });
        // With another machine's engine the tool's docker commands go there too.
        const remote = prewarmCommand({ images, caches, dockerHost: "ssh://me@box" }, "/project");
        expect(JSON.parse(remote.stdin).dockerHost).toBe("ssh://me@box");
        expect(command.triggers).toEqual([command.stdin]);
    });
});
