import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { brokerUrl, requireBroker } from "@posthorn/testkit";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, startCli, unique } from "./run-cli.js";

// Ctrl-C on receive and bridge: what is held is settled or released, and the command exits at
// once, with its summary, instead of being ended by the 3 s fallback.
const amqpOk = await requireBroker("amqp");
const amqpBase = (brokerUrl("amqp") ?? "").replace(/\/+$/, "");

/** Sends SIGINT once `ready:` is on stderr and returns the result and how long the exit took. */
async function interrupt(args: string[], before?: () => Promise<void>) {
  const running = startCli(args);
  await running.waitFor("ready:");
  await before?.();
  const sent = Date.now();
  running.child.kill("SIGINT");
  const result = await running.done;
  return { ...result, exitMs: Date.now() - sent };
}

describe("Ctrl-C (spawned)", () => {
  it("receive stops and exits at once, 0, when nothing is held", async () => {
    // Port 0: the system picks a free port, which no other process can take first.
    const url = `http://127.0.0.1:0/${unique("events")}`;
    const r = await interrupt(["receive", url]);
    expect(r.code, r.stderr).toBe(0);
    // The unreferenced fallback kept the process alive 2 s after a clean stop.
    expect(r.exitMs).toBeLessThan(1500);
  });

  describe.skipIf(!amqpOk)(
    "bridge amqp -> a downstream that never answers (skipped: no broker outside CI)",
    () => {
      const requests: ServerResponse[] = [];
      const silent = createServer((_req: IncomingMessage, res: ServerResponse) => {
        requests.push(res);
      });
      afterAll(async () => {
        for (const res of requests) res.destroy();
        await new Promise<void>((resolve) => silent.close(() => resolve()));
      });

      it("releases the deliveries whose publish was waiting, prints its summary, exits at once", {
        timeout: 60_000,
      }, async () => {
        await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
        const port = (silent.address() as AddressInfo).port;
        const queue = `${amqpBase}/queue/${unique("posthorn-cli-int")}`;
        for (const n of ["1", "2"]) {
          const sent = await runCli(["send", queue, "--type", "t", "--source", "/s", "--id", n]);
          expect(sent.code, sent.stderr).toBe(0);
        }
        const r = await interrupt(
          ["bridge", queue, `http://127.0.0.1:${port}/never`, "--json"],
          async () => {
            while (requests.length < 2) await new Promise((resolve) => setTimeout(resolve, 50));
          },
        );
        // Before: ended by the 3 s fallback with 130, nothing on stdout, nothing released.
        expect(r.code, r.stderr).toBe(0);
        expect(r.exitMs).toBeLessThan(2500);
        expect(JSON.parse(r.stdout)).toMatchObject({ moved: 0, released: 2, lost: 0 });
        // Both wait in the queue again, each delivered once before.
        const again = await runCli([
          "receive",
          queue,
          "--count",
          "2",
          "--json",
          "--timeout",
          "20000",
        ]);
        expect(again.code, again.stderr).toBe(0);
        const lines = again.stdout
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as { event: { id: string } });
        expect(lines.map((l) => l.event.id).sort()).toEqual(["1", "2"]);
      });
    },
  );
});

describe("Ctrl-C on send (spawned)", () => {
  it("starts no more publishes, waits for the one under way, says how many were sent, exits 1", {
    timeout: 60_000,
  }, async () => {
    // Each request answered 200 after 400 ms: one at a time (--concurrency 1), 20 events take 8 s.
    const arrived: string[] = [];
    const slow = createServer((req: IncomingMessage, res: ServerResponse) => {
      arrived.push(String(req.headers["ce-id"]));
      req.resume();
      setTimeout(() => res.writeHead(200).end(), 400);
    });
    await new Promise<void>((resolve) => slow.listen(0, "127.0.0.1", resolve));
    try {
      const port = (slow.address() as AddressInfo).port;
      const lines = Array.from({ length: 20 }, (_, i) =>
        JSON.stringify({ specversion: "1.0", id: `e${i}`, source: "/s", type: "t" }),
      ).join("\n");
      const running = startCli(
        ["send", `http://127.0.0.1:${port}/in`, "--concurrency", "1", "--json"],
        { stdin: lines },
      );
      while (arrived.length < 2) await new Promise((resolve) => setTimeout(resolve, 20));
      const at = Date.now();
      running.child.kill("SIGINT");
      const r = await running.done;
      // Before: it went on sending until the 3 s fallback ended it with 130 and no summary.
      expect(Date.now() - at).toBeLessThan(2500);
      expect(r.code, r.stderr).toBe(1);
      const summary = JSON.parse(r.stdout) as { sent: number; unsent: number };
      expect(summary.sent + summary.unsent).toBe(20);
      // Every publish started was acknowledged: none left unknown.
      expect(summary.sent).toBe(arrived.length);
      expect(summary.unsent).toBeGreaterThan(10);
      expect(r.stderr).toContain(`interrupted: sent ${summary.sent} of 20 events`);
    } finally {
      await new Promise<void>((resolve) => slow.close(() => resolve()));
    }
  });
});
