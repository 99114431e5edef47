/**
 * A team's Talos program, which already makes its machine configs with `talosctl gen config`,
 * adds Pullthrough's caches and writes each config again with the mirrors patched in. The patch
 * is an Output of the caches: the configs are written once every cache is healthy, and again
 * whenever the mirrors change.
 */
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { Caches } from "pullthrough";

const config = new pulumi.Config();
const nodeNetwork = config.require("nodeNetwork");

const caches = new Caches("team-caches", {
    upstreams: [
        { registry: "docker.io", remote: "https://registry-1.docker.io", port: 5000 },
        { registry: "ghcr.io", remote: "https://ghcr.io", port: 5004 },
        { registry: "factory.talos.dev", remote: "https://factory.talos.dev", port: 5006 },
    ],
    mirrorHost: config.require("mirrorHost"),
    allowFrom: [nodeNetwork],
    namePrefix: "team-cache-",
});

// The configs `talosctl gen config` wrote beside this program, each patched into a new file.
const roles = ["controlplane", "worker"];
const mirroredConfigs = roles.map(
    (role) =>
        new command.local.Command(`${role}-with-mirrors`, {
            create: `talosctl machineconfig patch ${role}.yaml --patch @/dev/stdin --output ${role}-mirrored.yaml`,
            delete: `rm -f ${role}-mirrored.yaml`,
            stdin: caches.talosConfigPatch,
            triggers: [caches.talosConfigPatch],
        }),
);

export const mirrors = caches.mirrors;
export const machineConfigs = roles.map((role) => `${role}-mirrored.yaml`);
export const machineConfigCommands = mirroredConfigs.map((made) => made.create);
