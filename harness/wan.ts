/**
 * A simulated WAN link in user space (this kernel has no netem): a TCP proxy that carries every
 * connection over one shared link per direction, with a bandwidth limit and a fixed one-way delay
 * of half the round-trip time.
 *
 * What it models: serialisation at the link rate (FIFO across connections, so parallel downloads
 * share the bandwidth), propagation delay on every segment, and the handshake's round trip. What
 * it does not: loss, jitter, TCP slow start on the far side (each side's TCP sees a fast local
 * peer; the proxy paces delivery and pauses a sender whose queue is full).
 */
import { AddressInfo, Server, Socket, connect, createServer } from "node:net";

export interface WanOptions {
    /** Link rate in bits per second, each direction. */
    bitsPerSecond: number;
    roundTripMs: number;
}

/** One direction of the link: when the last byte queued so far leaves the sender. */
class Link {
    private busyUntil = 0;
    bytes = 0;

    constructor(private readonly bitsPerSecond: number) {}

    /** Departure time of a chunk queued now: after everything ahead of it on the link. */
    schedule(size: number): number {
        const now = performance.now();
        this.busyUntil = Math.max(now, this.busyUntil) + (size * 8 * 1000) / this.bitsPerSecond;
        this.bytes += size;
        return this.busyUntil;
    }

    /** Nothing queued from now on leaves before `ms` have passed: a link that stalls. */
    stall(ms: number): void {
        this.busyUntil = Math.max(performance.now(), this.busyUntil) + ms;
    }
}

/** Queued bytes per connection and direction before its sender is paused. */
const highWater = 1 << 20;
/** Largest piece put on the link at once, so connections interleave. */
const segment = 16 << 10;

/** One link, any number of routes across it: every route shares the bandwidth. */
export class SimulatedWan {
    private readonly servers: Server[] = [];
    private readonly sockets = new Set<Socket>();
    /** Toward the targets (requests). */
    readonly up: Link;
    /** From the targets (responses): what a download pays for. */
    readonly down: Link;
    private readonly oneWayMs: number;

    constructor(options: WanOptions) {
        this.up = new Link(options.bitsPerSecond);
        this.down = new Link(options.bitsPerSecond);
        this.oneWayMs = options.roundTripMs / 2;
    }

    /**
     * Listens on `listenHost` (an address the clients reach, e.g. a Docker network's gateway) and
     * carries each connection across the link to `targetHost:targetPort`.
     * @returns the port it listens on
     */
    async route(listenHost: string, targetHost: string, targetPort: number): Promise<number> {
        const server = createServer((client) =>
            this.carry(client, connect(targetPort, targetHost)),
        );
        this.servers.push(server);
        await new Promise<void>((resolve, reject) =>
            server.once("error", reject).listen(0, listenHost, resolve),
        );
        return (server.address() as AddressInfo).port;
    }

    /** Bytes carried from the targets so far. */
    get bytesDown(): number {
        return this.down.bytes;
    }

    private carry(client: Socket, target: Socket) {
        for (const socket of [client, target]) {
            this.sockets.add(socket);
            socket.on("close", () => this.sockets.delete(socket));
            socket.on("error", () => {
                client.destroy();
                target.destroy();
            });
        }
        // TCP's handshake costs a round trip before the client may send; its first bytes then
        // take one more way across, and nothing comes back sooner than two round trips.
        const now = performance.now();
        this.pipe(client, target, this.up, now + 3 * this.oneWayMs);
        this.pipe(target, client, this.down, now + 4 * this.oneWayMs);
    }

    /** Carries `from` → `to` in order: one queue per direction, drained by one timer. */
    private pipe(from: Socket, to: Socket, link: Link, notBefore: number) {
        const queue: { piece: Buffer | null; at: number }[] = [];
        let queuedBytes = 0;
        let lastArrival = notBefore;
        let timer: NodeJS.Timeout | undefined;
        const drain = () => {
            timer = undefined;
            while (queue.length > 0 && queue[0].at <= performance.now()) {
                const { piece } = queue.shift()!;
                if (piece === null) to.end();
                else {
                    queuedBytes -= piece.length;
                    if (!to.destroyed) to.write(piece);
                }
            }
            if (queuedBytes < highWater / 2 && from.isPaused()) from.resume();
            if (queue.length > 0)
                timer = setTimeout(drain, Math.max(0, queue[0].at - performance.now()));
        };
        const enqueue = (piece: Buffer | null, at: number) => {
            queue.push({ piece, at });
            if (!timer) timer = setTimeout(drain, Math.max(0, queue[0].at - performance.now()));
        };
        from.on("data", (chunk: Buffer) => {
            for (let offset = 0; offset < chunk.length; offset += segment) {
                const piece = chunk.subarray(offset, offset + segment);
                queuedBytes += piece.length;
                lastArrival = Math.max(lastArrival, link.schedule(piece.length) + this.oneWayMs);
                enqueue(piece, lastArrival);
            }
            if (queuedBytes > highWater) from.pause();
        });
        from.on("end", () => enqueue(null, lastArrival));
        to.on("close", () => clearTimeout(timer));
    }

    /** Breaks every connection in flight, as a dropped link does; new connections still pass. */
    cut(): void {
        for (const socket of this.sockets) socket.destroy();
    }

    async close(): Promise<void> {
        for (const socket of this.sockets) socket.destroy();
        await Promise.all(
            this.servers.map((server) => new Promise((resolve) => server.close(resolve))),
        );
    }
}
