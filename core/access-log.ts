/**
 * The front's access log, for people (`docker logs <front>`, rotated with the container's log)
 * and the tests: its nginx `log_format`, and a formatter and a parser both derived from that one
 * format, so the tests read exactly what the front writes. The tools never read it: their figures
 * come from the front's ledger (core/ledger.ts). Pure.
 */

/** nginx's `combined`, plus the cache port and whether the front's own cache hit. */
export const accessLogFormat =
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent ' +
    '"$http_referer" "$http_user_agent" port=$server_port cache=$upstream_cache_status';

/** One request as the front logged it. */
export interface AccessLogEntry {
    client: string;
    /** Epoch seconds. */
    time: number;
    /** The request line: `GET /v2/library/nginx/manifests/1.27 HTTP/1.1`. */
    request: string;
    status: number;
    /** Body bytes sent to the client. */
    bytes: number;
    userAgent: string;
    /** The cache port the request came in on. */
    port: number;
    /** The front's cache: `HIT`, `MISS`, … or `-` when it was not asked. */
    cache: string;
}

/** Each variable of the format: the text nginx writes for it, and the entry field it carries. */
const variables: Record<string, { pattern: string; field?: keyof AccessLogEntry }> = {
    remote_addr: { pattern: "\\S+", field: "client" },
    remote_user: { pattern: "\\S+" },
    time_local: { pattern: "[^\\]]+", field: "time" },
    request: { pattern: '[^"]*', field: "request" },
    status: { pattern: "\\d{3}", field: "status" },
    body_bytes_sent: { pattern: "\\d+", field: "bytes" },
    http_referer: { pattern: '[^"]*' },
    http_user_agent: { pattern: '[^"]*', field: "userAgent" },
    server_port: { pattern: "\\d+", field: "port" },
    upstream_cache_status: { pattern: "\\S*", field: "cache" },
};

const variableName = /\$(\w+)/g;
const formatVariables = [...accessLogFormat.matchAll(variableName)].map(([, name]) => name);
const linePattern = new RegExp(
    `^${accessLogFormat
        .split(variableName)
        .map((part, index) =>
            index % 2 === 0
                ? part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
                : `(${variables[part].pattern})`,
        )
        .join("")}$`,
);

const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const pad = (value: number) => String(value).padStart(2, "0");

/** nginx's `$time_local` (`29/Nov/2026:17:03:16 +0000`) in epoch seconds. */
function parseLogTime(text: string): number | undefined {
    const match = /^(\d{2})\/(\w{3})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(
        text,
    );
    if (!match) return undefined;
    const [, day, month, year, hour, minute, second, sign, offsetHours, offsetMinutes] = match;
    const utc = Date.UTC(+year, months.indexOf(month), +day, +hour, +minute, +second) / 1000;
    const offset = (+offsetHours * 60 + +offsetMinutes) * 60;
    return sign === "+" ? utc - offset : utc + offset;
}

/** Epoch seconds as `$time_local` of a front running in UTC. */
function formatLogTime(seconds: number): string {
    const date = new Date(seconds * 1000);
    return (
        `${pad(date.getUTCDate())}/${months[date.getUTCMonth()]}/${date.getUTCFullYear()}:` +
        `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`
    );
}

/** A line as the front writes it for `entry`. */
export function formatAccessLogLine(entry: AccessLogEntry): string {
    return accessLogFormat.replace(variableName, (_, name: string) => {
        const field = variables[name].field;
        if (field === undefined) return "-";
        return field === "time" ? formatLogTime(entry.time) : String(entry[field]);
    });
}

/** One line of the front's log; undefined for anything else (nginx's own messages). */
export function parseAccessLogLine(line: string): AccessLogEntry | undefined {
    const match = linePattern.exec(line.trim());
    if (!match) return undefined;
    const text = (field: keyof AccessLogEntry) =>
        match[formatVariables.findIndex((name) => variables[name].field === field) + 1];
    const time = parseLogTime(text("time"));
    if (time === undefined) return undefined;
    return {
        client: text("client"),
        time,
        request: text("request"),
        status: Number(text("status")),
        bytes: Number(text("bytes")),
        userAgent: text("userAgent"),
        port: Number(text("port")),
        cache: text("cache"),
    };
}

/** The entries of a whole log that came in on `port`. */
export function readAccessLog(log: string, port: number): AccessLogEntry[] {
    return log.split("\n").flatMap((line) => {
        const entry = parseAccessLogLine(line);
        return entry && entry.port === port ? [entry] : [];
    });
}

/** A request for content: a manifest or a blob of a repository. */
export interface ContentRequest {
    method: string;
    repository: string;
    kind: "manifests" | "blobs";
    /** A tag or a digest; containerd's `?ns=<registry>` is not part of it. */
    reference: string;
}

/** The content an entry asked for, if it asked for content with GET or HEAD. */
export function contentRequest(entry: AccessLogEntry): ContentRequest | undefined {
    const match = /^(GET|HEAD) \/v2\/(\S+)\/(manifests|blobs)\/([^\s?]+)\S* HTTP\/[\d.]+$/.exec(
        entry.request,
    );
    if (!match) return undefined;
    const [, method, repository, kind, reference] = match;
    return { method, repository, kind: kind as ContentRequest["kind"], reference };
}
