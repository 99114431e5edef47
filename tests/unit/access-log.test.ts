/** The front's access log: one format, which the formatter writes and the parser reads back. */
import { plainFront } from "./settings";
import {
    AccessLogEntry,
    accessLogFormat,
    contentRequest,
    formatAccessLogLine,
    parseAccessLogLine,
    readAccessLog,
} from "../../core/access-log";
import { frontConfig } from "../../core/front";

const entry: AccessLogEntry = {
    client: "172.18.0.1",
    time: 1_800_000_000,
    request: "GET /v2/library/nginx/manifests/1.27?ns=docker.io HTTP/1.1",
    status: 200,
    bytes: 1234,
    userAgent: "containerd/1.7.24",
    port: 5000,
    cache: "MISS",
};

test("the front logs in this format", () => {
    expect(frontConfig([], plainFront([]))).toContain(
        `log_format pullthrough '${accessLogFormat}';`,
    );
});

test("a line the formatter writes parses back to the same entry", () => {
    const line = formatAccessLogLine(entry);
    expect(line).toBe(
        '172.18.0.1 - - [15/Jan/2027:08:00:00 +0000] "GET /v2/library/nginx/manifests/1.27?ns=docker.io HTTP/1.1" 200 1234 "-" "containerd/1.7.24" port=5000 cache=MISS',
    );
    expect(parseAccessLogLine(line)).toEqual(entry);
});

test("a log is read per port; anything that is not an access line is passed over", () => {
    const log = [
        formatAccessLogLine(entry),
        "2027/01/15 08:00:01 [notice] 1#1: signal process started",
        formatAccessLogLine({ ...entry, port: 5001 }),
    ].join("\n");
    expect(readAccessLog(log, 5000)).toEqual([entry]);
});

test("a content request names its repository, kind and reference, without containerd's ?ns=", () => {
    expect(contentRequest(entry)).toEqual({
        method: "GET",
        repository: "library/nginx",
        kind: "manifests",
        reference: "1.27",
    });
    expect(contentRequest({ ...entry, request: "GET /v2/ HTTP/1.1" })).toBeUndefined();
});
