/** The simulated WAN the bench and a prewarm test run over: bytes intact and in order, at the link's pace. */
import { createHash, randomBytes } from "node:crypto";
import { AddressInfo, connect, createServer } from "node:net";
import { SimulatedWan } from "../../harness/wan";

test("two downloads share the link: every byte arrives intact, no sooner than rate and round trip allow", async () => {
    const payload = randomBytes(1 << 20);
    const source = createServer((socket) => socket.end(payload));
    await new Promise<void>((resolve) => source.listen(0, "127.0.0.1", resolve));
    const wan = new SimulatedWan({ bitsPerSecond: 40e6, roundTripMs: 50 });
    try {
        const port = await wan.route(
            "127.0.0.1",
            "127.0.0.1",
            (source.address() as AddressInfo).port,
        );
        const started = performance.now();
        const download = () =>
            new Promise<{ digest: string; firstByteMs: number }>((resolve, reject) => {
                const hash = createHash("sha256");
                let firstByteMs = 0;
                connect(port, "127.0.0.1")
                    .on("data", (chunk) => {
                        firstByteMs ||= performance.now() - started;
                        hash.update(chunk);
                    })
                    .on("end", () => resolve({ digest: hash.digest("hex"), firstByteMs }))
                    .on("error", reject);
            });
        const results = await Promise.all([download(), download()]);
        const seconds = (performance.now() - started) / 1000;
        const expected = createHash("sha256").update(payload).digest("hex");
        expect(results.map((result) => result.digest)).toEqual([expected, expected]);
        // 2 MiB at 40 Mbit/s is 0.42 s; nothing comes back before two round trips (handshake, data).
        expect(seconds).toBeGreaterThanOrEqual((2 * payload.length * 8) / 40e6);
        for (const { firstByteMs } of results) expect(firstByteMs).toBeGreaterThanOrEqual(100);
        expect(wan.bytesDown).toBe(2 * payload.length);
    } finally {
        await wan.close();
        source.close();
    }
});
