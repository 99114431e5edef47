/**
 * Invalid settings, said one way for the stack config and another for the `Caches` component's
 * arguments. Its published types name neither zod nor the schema, so the component's stay light.
 */
import { z } from "zod";

/** Pulumi project name, and so the namespace of every config key (`pullthrough:<key>`). */
export const configNamespace = "pullthrough";

/** One bad setting: where it is (a path from the top of the settings) and what is wrong with it. */
export interface ConfigProblem {
    key: readonly PropertyKey[];
    detail: string;
}

/**
 * How a setting's path is spelled: as a stack config key (`pullthrough:upstreams[0].port`, what
 * `pulumi config set --path` takes), or as a path into the `Caches` component's arguments
 * (`args.upstreams[0].port`). One contract, two doors.
 */
export interface KeySpelling {
    /** Put before the first path segment. */
    root: string;
    /** What the whole set of settings is called in an error's first line. */
    subject: string;
}

export const configSpelling: KeySpelling = {
    root: `${configNamespace}:`,
    subject: `${configNamespace} config`,
};
export const argumentSpelling: KeySpelling = { root: "args.", subject: "Caches arguments" };

/** Thrown for invalid settings; lists every problem found, one per line, each naming its key. */
export class ConfigError extends Error {
    /** One line per problem, each starting with its key. */
    readonly problems: readonly string[];

    constructor(
        readonly found: readonly ConfigProblem[],
        readonly spelling: KeySpelling = configSpelling,
    ) {
        const problems = found.map(
            (problem) => `${formatKey(problem.key, spelling)}: ${problem.detail}`,
        );
        super(`Invalid ${spelling.subject}:\n${problems.map((line) => `  - ${line}`).join("\n")}`);
        this.problems = problems;
        this.name = "ConfigError";
    }

    /** The same problems, with their keys spelled another way. */
    spelledAs(spelling: KeySpelling): ConfigError {
        return new ConfigError(this.found, spelling);
    }
}

/** Renders a settings path the way `pulumi config set --path` spells it, or as an argument path. */
function formatKey(path: readonly PropertyKey[], spelling: KeySpelling = configSpelling): string {
    // zod's own path spelling is Pulumi's `--path` one: `upstreams[0].port`, `credentials["docker.io"]`.
    return `${spelling.root}${z.core.toDotPath(path as PropertyKey[])}`;
}
