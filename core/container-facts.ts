/**
 * What the TypeScript side and the cache container's script (container/cache-supervisor.sh) must
 * agree on: paths inside the container and the healthcheck's output. Defined here once; the
 * supervisor is rendered from these facts (renderSupervisor), and the healthcheck is built and
 * read by the functions below, so a rename reaches both sides. Pure.
 */

/** Where the registry image keeps its data (its config's `storage.filesystem.rootdirectory`). */
export const registryStoragePath = "/var/lib/registry";

/** The registry's own tree under its data (distribution registry/storage/paths.go). */
const registryTree = "docker/registry/v2";

export const registryStorageRoot = `${registryStoragePath}/${registryTree}`;

/** The port the registry listens on inside its container (both `registry:2` and `registry:3`). */
export const registryContainerPort = 5000;

/** The paths the supervisor works with. */
export interface SupervisorFacts {
    /** The volume's mount point: the registry's data. */
    storage: string;
    /** What the cache serves now, `proxy` or `offline`, written by the supervisor. */
    servingFile: string;
    /** Present, saying how much is left, while the volume cannot take a write. */
    diskFullFile: string;
    /** An upstream login (`proxy:` section) uploaded into the container, when there is one. */
    credentialsFile: string;
    /** A tool's view only: the file its tool touches to keep the view alive (tools/cache-view.ts). */
    leaseFile: string;
}

export const supervisorFacts: SupervisorFacts = {
    storage: registryStoragePath,
    servingFile: "/tmp/pullthrough-serving",
    diskFullFile: "/tmp/pullthrough-disk-full",
    credentialsFile: "/etc/pullthrough-credentials.yml",
    leaseFile: "/tmp/pullthrough-view-lease",
};

/** The shell variable of the supervisor that holds each fact. */
const supervisorVariables: Record<keyof SupervisorFacts, string> = {
    storage: "storage",
    servingFile: "serving_file",
    diskFullFile: "disk_full_file",
    credentialsFile: "credentials",
    leaseFile: "lease_file",
};

/**
 * The supervisor's text with each fact's assignment (`storage=/var/lib/registry`) set from
 * `facts`. The file's own values are the defaults, so the file as it stands runs unchanged.
 *
 * @throws if the script does not assign a fact exactly once
 */
export function renderSupervisor(script: string, facts: SupervisorFacts = supervisorFacts): string {
    const assign = (text: string, variable: string, value: string) => {
        const assignment = new RegExp(`^${variable}=.*$`, "gm");
        const found = script.match(assignment)?.length ?? 0;
        if (found !== 1)
            throw new Error(
                `cache-supervisor.sh assigns ${variable} ${found} times; it must once (core/container-facts.ts)`,
            );
        return text.replace(assignment, () => `${variable}=${value}`);
    };
    let rendered = script;
    for (const [fact, variable] of Object.entries(supervisorVariables)) {
        const value = facts[fact as keyof SupervisorFacts];
        // Plain paths only: the value lands unquoted in a shell assignment.
        if (!/^\/[\w./-]+$/.test(value))
            throw new Error(`${fact}: ${JSON.stringify(value)} is not a plain absolute path`);
        rendered = assign(rendered, variable, value);
    }
    // The registry's tree is where it is under whatever `storage` is.
    rendered = assign(rendered, "root", `$${supervisorVariables.storage}/${registryTree}`);
    return rendered;
}

/**
 * The cache's healthcheck: the registry answers, then the first line printed is what the cache
 * serves, and while the volume is full the check fails with the supervisor's word as the last
 * line. busybox wget is in both the registry:2 and registry:3 images; 127.0.0.1 needs no DNS.
 */
export function healthcheckCommand(facts: SupervisorFacts = supervisorFacts): string {
    const registryAnswers = `wget -q -O /dev/null http://127.0.0.1:${registryContainerPort}/v2/`;
    const full = facts.diskFullFile;
    const diskNotFull = `{ [ ! -s ${full} ] || { cat ${full}; false; }; }`;
    return `${registryAnswers} && cat ${facts.servingFile} && ${diskNotFull}`;
}

/** What one run of healthcheckCommand said. */
export interface HealthcheckReading {
    /** What the cache serves: `proxy` or `offline`, `unknown` when the check printed nothing. */
    serving: string;
    /** Why the check failed, when it did. */
    problem?: string;
}

/** A cache's Docker health: its status, and what its last check said. */
export interface CacheHealth extends HealthcheckReading {
    /** Docker's health status: `healthy`, `unhealthy`, `starting`. */
    status: string;
}

/** Reads healthcheckCommand's output (as Docker keeps it under State.Health.Log). */
export function readHealthcheck(output: string, exitCode: number): HealthcheckReading {
    const lines = output.trim().split("\n");
    return {
        serving: lines[0] || "unknown",
        ...(exitCode !== 0 ? { problem: lines.at(-1) || "the last healthcheck failed" } : {}),
    };
}
