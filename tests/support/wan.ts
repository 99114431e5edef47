/**
 * A simulated WAN link in user space (this kernel has no netem): a TCP proxy that carries every
 * connection over one shared link per direction, with a bandwidth limit and a fixed one-way delay
 * of half the round-trip time.
 *
 * What it models: serialisation at the link rate (FIFO across connections, so parallel downloads
 * share the bandwidth) and propagation delay on every segment, connection set-up included. What
 * it does not: loss, jitter, TCP slow start on the far side (each side's TCP sees a fast local
 * peer; the proxy paces delivery and pauses a sender whose queue is full).
 */
import { AddressInfo, Server, Socket, connect, createServer } from "node:net";

export interface WanOptions {
    /** Where the proxy listens: an address containers can reach, e.g. a Docker network's gateway. */
    listenHost: string;
    targetHost: string;
    targetPort: number;
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
}

/** Queued bytes per connection and direction before its sender is paused. */
const highWater = 1 << 20;
/** Largest piece put on the link at once, so connections interleave. */
const segment = 16 << 10;

export class SimulatedWan {
    private readonly sockets = new Set<Socket>();

    private constructor(
        private readonly server: Server,
        /** Toward the target (requests). */
        readonly up: Link,
        /** From the target (responses): what a download pays for. */
        readonly down: Link,
        private readonly oneWayMs: number,
    ) {}

    static async start(options: WanOptions): Promise<SimulatedWan> {
        const up = new Link(options.bitsPerSecond);
        const down = new Link(options.bitsPerSecond);
        let wan: SimulatedWan | undefined;
        const server = createServer((client) => wan!.carry(client, connect(options.targetPort, options.targetHost)));
        wan = new SimulatedWan(server, up, down, options.roundTripMs / 2);
        await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, options.listenHost, resolve));
        return wan;
    }

    get port(): number {
        return (this.server.address() as AddressInfo).port;
    }

    /** Bytes carried from the target so far. */
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
        // The connection's set-up crosses the link too: the first byte waits a round trip.
        const connected = performance.now() + 2 * this.oneWayMs;
        this.pipe(client, target, this.up, connected);
        this.pipe(target, client, this.down, connected);
    }

    private pipe(from: Socket, to: Socket, link: Link, notBefore: number) {
        let queued = 0;
        let lastArrival = notBefore;
        let ended = false;
        const deliver = (action: () => void, at: number) => setTimeout(action, Math.max(0, at - performance.now()));
        from.on("data", (chunk: Buffer) => {
            for (let offset = 0; offset < chunk.length; offset += segment) {
                const piece = chunk.subarray(offset, offset + segment);
                queued += piece.length;
                lastArrival = Math.max(lastArrival, link.schedule(piece.length) + this.oneWayMs);
                deliver(() => {
                    queued -= piece.length;
                    if (!to.destroyed) to.write(piece);
                    if (queued < highWater / 2 && from.isPaused()) from.resume();
                }, lastArrival);
            }
            if (queued > highWater) from.pause();
        });
        from.on("end", () => {
            if (!ended) deliver(() => to.end(), lastArrival);
            ended = true;
        });
    }

    async close(): Promise<void> {
        for (const socket of this.sockets) socket.destroy();
        await new Promise((resolve) => this.server.close(resolve));
    }
}
