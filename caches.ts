/**
 * The `Caches` component: one pull-through registry cache per upstream on a Docker engine (this
 * host's, or `dockerHost`), behind one coalescing front, and, when asked, a Talos cluster on this
 * host that pulls through them. Every decision lives in mirrors.ts (the settings contract) and
 * core/ (the plan and its renderings); this file only turns the plan into resources and outputs.
 *
 * ```ts
 * import { Caches } from "pullthrough";
 * const caches = new Caches("caches", { mirrorHost: "10.5.0.1" });
 * // caches.talosConfigPatch resolves once every cache is healthy (and warm, with prewarm).
 * ```
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import * as command from "@pulumi/command";
import * as tls from "@pulumi/tls";
import { parseCachesArgs } from "./mirrors";
import type {
    AnyRegistryEndpoint,
    CachesArgs,
    ClusterOutput,
    MirrorEndpoint,
} from "./core/caches-types";
import { clusterCommand, clusterCommandOptions, clusterCreateWithAccess } from "./core/cluster";
import { ConfigError, argumentSpelling } from "./core/config-error";
import {
    FrontAccessFiles,
    frontAccessUploads,
    frontContainer,
    frontLedgerVolume,
    networkOptions,
    stackNetwork,
} from "./core/front";
import { cacheContainer, cacheVolume, containerOptions, volumeOptions } from "./core/plan";
import { importCommand, prewarmCommand, pruneCommand } from "./core/tool-commands";
import * as render from "./core/render";
import {
    serverCertificate,
    serverCertificateRequest,
    stackCaCertificate,
    stackKey,
} from "./core/tls";
import { packageRoot, readCacheSupervisor, readFrontScripts } from "./host/assets";
import { dockerProviderArgs } from "./host/docker-host";
import { planStack } from "./host/stack-plan";

export type * from "./core/caches-types";
export { ConfigError } from "./core/config-error";

/** The Pulumi type token of the component, as `pulumi preview` shows it. */
export const cachesType = "pullthrough:index:Caches";

export class Caches extends pulumi.ComponentResource {
    /** Each cache's endpoint, keyed by its registry (`endpoint` for nodes, `hostEndpoint` here). */
    readonly mirrors: pulumi.Output<Record<string, MirrorEndpoint>>;
    /** `talosctl cluster create` flags: `--registry-mirror <registry>=<endpoint>` per cache. */
    readonly registryMirrorFlags: pulumi.Output<string[]>;
    /** A `machine.registries.mirrors` patch, which every Talos version takes. */
    readonly talosConfigPatch: pulumi.Output<string>;
    /** One `RegistryMirrorConfig` document per cache, for Talos 1.12 and later. */
    readonly talosMirrorDocuments: pulumi.Output<string>;
    /** containerd `hosts.toml` per registry (`<config_path>/<registry>/hosts.toml`). */
    readonly containerdHosts: pulumi.Output<Record<string, string>>;
    /** The one port that serves every cache, routed by containerd's `ns`. */
    readonly anyRegistry: pulumi.Output<AnyRegistryEndpoint>;
    /** A `machine.registries.mirrors."*"` patch: that port for every registry (Talos 1.4+). */
    readonly talosAnyRegistryPatch: pulumi.Output<string>;
    /** A `RegistryMirrorConfig` document named `*` (Talos 1.12+). */
    readonly talosAnyRegistryDocuments: pulumi.Output<string>;
    /** containerd `_default/hosts.toml`: that port for any registry without its own folder. */
    readonly containerdDefaultHosts: pulumi.Output<string>;
    /** `talosctl cluster create` flags for it: `--registry-mirror '*=<endpoint>'`. */
    readonly anyRegistryMirrorFlags: pulumi.Output<string[]>;
    /** The CA that clients trust the front by (PEM): the stack's own, or `tls.ca`; else null. */
    readonly caCertificate: pulumi.Output<string | null>;
    /** A root shell script that makes Docker trust that CA for every port (`certs.d`); else null. */
    readonly dockerCaInstall: pulumi.Output<string | null>;
    /** The images warmed before anything pulls, fully qualified. */
    readonly prewarmImages: pulumi.Output<string[]>;
    /** The shell command that creates a Talos cluster with these mirrors. */
    readonly talosctlCreate: pulumi.Output<string>;
    /** The engine the caches run on, for the tools (null: this machine's). */
    readonly dockerHost: pulumi.Output<string | null>;
    /** The cluster this component created, null when `cluster.enabled` is false. */
    readonly cluster: pulumi.Output<ClusterOutput | null>;

    /**
     * @param name the component's name; the resources inside are named by `args.namePrefix`, so
     *   two `Caches` in one program need different prefixes (and ports)
     * @param args the same settings as the stack config's `pullthrough:<key>`s, as values
     * @throws ConfigError naming each bad argument (`args.upstreams[0].port`); nothing is created
     */
    constructor(name: string, args: CachesArgs = {}, opts: pulumi.ComponentResourceOptions = {}) {
        // Planned before the component registers, so a bad argument leaves nothing in the state.
        const planned = plan(args);
        super(cachesType, name, {}, opts);
        // Before this component, these resources sat at the stack's root; the alias keeps each
        // one's identity, so upgrading a stack replaces nothing.
        const child = { parent: this, aliases: [{ parent: pulumi.rootStackResource }] };
        const frontTls = declareTls(planned, child);
        const front = declareCaches(planned, child, frontTls);
        const rendered = renderForClients(planned, frontTls);
        const { ready, talosCluster } = declareCommands(
            planned,
            child,
            front,
            rendered.talosctlCreate,
        );

        // Outputs resolve once the caches are ready, and carry that as a dependency: a resource
        // that takes `talosConfigPatch` waits for healthy, warm caches.
        const whenReady = <T>(value: pulumi.Input<T>) => afterAll(ready, value);
        this.mirrors = whenReady(rendered.mirrors);
        this.registryMirrorFlags = whenReady(rendered.registryMirrorFlags);
        this.talosConfigPatch = whenReady(rendered.talosConfigPatch);
        this.talosMirrorDocuments = whenReady(rendered.talosMirrorDocuments);
        this.containerdHosts = whenReady(rendered.containerdHosts);
        this.anyRegistry = whenReady(rendered.anyRegistry);
        this.talosAnyRegistryPatch = whenReady(rendered.talosAnyRegistryPatch);
        this.talosAnyRegistryDocuments = whenReady(rendered.talosAnyRegistryDocuments);
        this.containerdDefaultHosts = whenReady(rendered.containerdDefaultHosts);
        this.anyRegistryMirrorFlags = whenReady(rendered.anyRegistryMirrorFlags);
        this.caCertificate = whenReady(rendered.caCertificate);
        this.dockerCaInstall = whenReady(rendered.dockerCaInstall);
        this.prewarmImages = whenReady(planned.prewarmImages);
        this.talosctlCreate = whenReady(rendered.talosctlCreate);
        const { settings, clusterPlan } = planned;
        this.dockerHost = whenReady(settings.dockerHost ?? null);
        // null, not undefined: an undefined stack output draws a warning on every `pulumi up`.
        this.cluster = afterAll(talosCluster, settings.cluster.enabled ? clusterPlan.output : null);
        this.registerOutputs({
            mirrors: this.mirrors,
            registryMirrorFlags: this.registryMirrorFlags,
            talosConfigPatch: this.talosConfigPatch,
            talosMirrorDocuments: this.talosMirrorDocuments,
            containerdHosts: this.containerdHosts,
            anyRegistry: this.anyRegistry,
            talosAnyRegistryPatch: this.talosAnyRegistryPatch,
            talosAnyRegistryDocuments: this.talosAnyRegistryDocuments,
            containerdDefaultHosts: this.containerdDefaultHosts,
            anyRegistryMirrorFlags: this.anyRegistryMirrorFlags,
            caCertificate: this.caCertificate,
            dockerCaInstall: this.dockerCaInstall,
            prewarmImages: this.prewarmImages,
            talosctlCreate: this.talosctlCreate,
            dockerHost: this.dockerHost,
            cluster: this.cluster,
        });
    }
}

type Planned = ReturnType<typeof plan>;

/**
 * The caches in every client's form. What clients need besides the endpoints is the CA and the
 * first pull credential; an output that carries the credential is a secret.
 */
function renderForClients(
    { settings, caches, anyRegistry, clusterPlan }: Planned,
    frontTls: FrontTls | undefined,
) {
    const credential = settings.pullCredentials[0];
    const access = pulumi
        .output(frontTls?.ca)
        .apply((ca): render.ClientAccess => ({ ca, credential }));
    const withAccess = <T>(rendering: (access: render.ClientAccess) => T) =>
        access.apply(rendering);
    const withCredential = <T>(rendering: (access: render.ClientAccess) => T) =>
        credential ? pulumi.secret(access.apply(rendering)) : access.apply(rendering);
    const endpoints = [...caches.map((cache) => cache.endpoint), anyRegistry.endpoint];
    return {
        mirrors: render.mirrorsByRegistry(caches),
        registryMirrorFlags: render.registryMirrorFlags(caches),
        talosConfigPatch: withCredential((a) => render.talosConfigPatch(caches, a)),
        talosMirrorDocuments: withCredential((a) => render.talosMirrorDocuments(caches, a)),
        containerdHosts: withAccess((a) => render.containerdHosts(caches, a)),
        anyRegistry,
        talosAnyRegistryPatch: withCredential((a) => render.talosAnyRegistryPatch(anyRegistry, a)),
        talosAnyRegistryDocuments: withCredential((a) =>
            render.talosAnyRegistryDocuments(anyRegistry, a),
        ),
        containerdDefaultHosts: withAccess((a) => render.containerdDefaultHosts(anyRegistry, a)),
        anyRegistryMirrorFlags: render.anyRegistryMirrorFlags(anyRegistry),
        caCertificate: access.apply(({ ca }) => ca ?? null),
        dockerCaInstall: access.apply(({ ca }) => render.dockerCaInstall(endpoints, ca)),
        talosctlCreate: withCredential((a) => clusterCreateWithAccess(clusterPlan, caches, a)),
    };
}
/** Where a child goes: under the component, aliased to the stack's root. */
type ChildOptions = Pick<pulumi.CustomResourceOptions, "parent" | "aliases">;

/** The front's certificate and key, and the CA clients trust it by. */
interface FrontTls {
    certificate: pulumi.Input<string>;
    key: pulumi.Input<string>;
    ca: pulumi.Input<string> | undefined;
}

/**
 * HTTPS for the front, when `tls.enabled`: the user's certificate, or the stack's own CA and a
 * server certificate it signs. Their keys live in the stack's state as secrets, and any `up` in
 * a certificate's last days replaces it with a new one (core/tls.ts).
 */
function declareTls({ settings, serverNames }: Planned, child: ChildOptions): FrontTls | undefined {
    const { enabled, certificate, key, ca } = settings.tls;
    if (!enabled) return undefined;
    if (certificate !== undefined && key !== undefined)
        return { certificate, key: pulumi.secret(key), ca };
    const prefix = settings.namePrefix;
    const caKey = new tls.PrivateKey(`${prefix}ca-key`, stackKey, child);
    const stackCa = new tls.SelfSignedCert(
        `${prefix}ca`,
        stackCaCertificate(caKey.privateKeyPem, `${pulumi.getProject()}/${pulumi.getStack()}`),
        child,
    );
    const serverKey = new tls.PrivateKey(`${prefix}server-key`, stackKey, child);
    const request = new tls.CertRequest(
        `${prefix}server-request`,
        serverCertificateRequest(serverKey.privateKeyPem, settings.mirrorHost, serverNames),
        child,
    );
    const server = new tls.LocallySignedCert(
        `${prefix}server-certificate`,
        serverCertificate(request.certRequestPem, {
            caCertPem: stackCa.certPem,
            caPrivateKeyPem: caKey.privateKeyPem,
        }),
        child,
    );
    return { certificate: server.certPem, key: serverKey.privateKeyPem, ca: stackCa.certPem };
}

/**
 * The caches and their front on the engine: the network, a volume and a registry per upstream,
 * the ledger's volume, and the front that publishes them.
 */
function declareCaches(
    { settings, caches, front, htpasswd }: Planned,
    child: ChildOptions,
    frontTls: FrontTls | undefined,
): docker.Container {
    // The engine the caches run on: `dockerHost` (another machine's), else the default.
    const engine = settings.dockerHost
        ? {
              provider: new docker.Provider(
                  "docker-host",
                  dockerProviderArgs(settings.dockerHost),
                  child,
              ),
          }
        : {};
    const onEngine = { ...child, ...engine };

    // The stack's private network: the front reaches each registry on it by container name.
    const network = new docker.Network(front.network, stackNetwork(front), {
        ...networkOptions(),
        ...onEngine,
    });

    const supervisor = readCacheSupervisor();
    const registries = caches.map((cache) => {
        // The cache's storage; kept on destroy with keepCache, so the next up starts warm.
        const volume = new docker.Volume(cache.name, cacheVolume(cache), {
            ...volumeOptions(settings),
            ...onEngine,
        });
        // The registry, run per `mode` (container/cache-supervisor.sh); `wait` holds `up` until
        // it is healthy.
        const { args, secretUploads } = cacheContainer(cache, supervisor);
        const uploads = secretUploads.length > 0 ? pulumi.secret(secretUploads) : undefined;
        return new docker.Container(
            cache.name,
            { ...args, uploads },
            { ...containerOptions(), ...onEngine, dependsOn: [volume, network] },
        );
    });

    // The ledger of what was pulled (status's figures, prune's last pulls); kept like the caches.
    const ledger = new docker.Volume(front.ledgerVolume, frontLedgerVolume(front), {
        ...volumeOptions(settings),
        ...onEngine,
    });

    // The coalescing front publishes every cache port, to allowed clients only: one upstream
    // fetch per blob, however many ask. Its key and the pull credentials go in as secrets.
    const args = frontContainer(front, caches, readFrontScripts());
    const accessFiles: pulumi.Output<FrontAccessFiles> | undefined =
        frontTls || htpasswd
            ? pulumi.output({ ...frontTls, users: htpasswd }).apply((files) => files)
            : undefined;
    const uploads = accessFiles
        ? pulumi.secret(
              accessFiles.apply((files) => [...args.uploads, ...frontAccessUploads(files)]),
          )
        : args.uploads;
    return new docker.Container(
        front.name,
        { ...args, uploads },
        { ...containerOptions(), ...onEngine, dependsOn: [...registries, ledger] },
    );
}

/**
 * What runs on this host once the caches are healthy, in order: the bundle import, prewarm, prune
 * and the Talos cluster. `ready` is what the caches' outputs wait for.
 */
function declareCommands(
    { settings, caches, prewarmImages, clusterPlan, bundle }: Planned,
    child: ChildOptions,
    front: docker.Container,
    talosctlCreate: pulumi.Output<string>,
) {
    const toolInput = { images: prewarmImages, caches, dockerHost: settings.dockerHost };
    const after = (...resources: pulumi.Resource[]) => ({ ...child, dependsOn: resources });

    // Fills the caches from a bundle (`importFrom`), with no network, before anything pulls.
    const imported = bundle
        ? [
              new command.local.Command(
                  "import-bundle",
                  importCommand(bundle, toolInput, packageRoot),
                  after(front),
              ),
          ]
        : [];

    // Warms the caches before any node pulls, so even a first boot pulls from warm caches.
    const prewarm =
        prewarmImages.length > 0
            ? [
                  new command.local.Command(
                      "prewarm-caches",
                      prewarmCommand(toolInput, packageRoot),
                      after(front, ...imported),
                  ),
              ]
            : [];

    // Keeps the caches inside `maxSize` once warm: least recently pulled images go first.
    const prune = settings.maxSize
        ? [
              new command.local.Command(
                  "prune-caches",
                  pruneCommand(settings.maxSize, toolInput, packageRoot),
                  after(front, ...imported, ...prewarm),
              ),
          ]
        : [];
    const ready = [front, ...imported, ...prewarm, ...prune];

    // The Talos cluster boots only once every cache is healthy (and warm, with prewarm).
    const talosCluster = settings.cluster.enabled
        ? [
              new command.local.Command(
                  "talos-cluster",
                  clusterCommand(clusterPlan, talosctlCreate),
                  {
                      ...clusterCommandOptions(),
                      ...after(...ready),
                  },
              ),
          ]
        : [];
    return { ready, talosCluster };
}

/**
 * The settings and everything `up` decides from them, checked against this host.
 * @throws ConfigError naming each bad argument by its path (`args.upstreams[0].port`)
 */
function plan(args: CachesArgs) {
    try {
        const settings = parseCachesArgs(args);
        const planned = planStack(
            settings,
            { project: pulumi.getProject(), stack: pulumi.getStack() },
            // Pulumi runs a program in its own folder: relative paths are the user's.
            process.cwd(),
            (message) => pulumi.log.info(message),
        );
        return { settings, ...planned };
    } catch (error) {
        throw error instanceof ConfigError ? error.spelledAs(argumentSpelling) : error;
    }
}

/** `value` once every one of `resources` is registered, with them as its dependencies. */
function afterAll<T>(
    resources: readonly pulumi.Resource[],
    value: pulumi.Input<T>,
): pulumi.Output<T> {
    return pulumi
        .all(resources.map((resource) => resource.urn))
        .apply(() => value) as pulumi.Output<T>;
}
