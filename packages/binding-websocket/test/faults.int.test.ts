import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  connectWebSocket,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import { type CloudEvent, isPosthornError, type Publisher } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { DeliveryLedger, faultEvent, forEachConcurrently } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";

// WebSockets have no acknowledgement, so the binding is at-most-once: `publish` resolves when
// the whole frame was handed to the kernel, and a frame there when the connection dies can be lost
// (lost-frames.int.test.ts checks that a frame cut off halfway is never reported written).
// What the binding promises, and these tests check, is that nothing fails silently: a publish on a
// connection that is down (closing, closed, or dropped) rejects with a typed ConnectionFailed or
// Closed at once, so the application knows what to send again after it reconnects.
const EVENTS = Number(process.env.POSTHORN_FAULT_EVENTS ?? 10_000);
const formats = [json];

/** A ws server on a fixed port whose subscribers record every event in the ledger. */
async function startServer(port: number, ledger: DeliveryLedger): Promise<WebSocketServer> {
  const wss = new WebSocketServer({ port, host: "127.0.0.1", ...webSocketServerOptions(formats) });
  await new Promise<void>((resolve, reject) => {
    wss.once("listening", () => resolve());
    wss.once("error", reject);
  });
  wss.on("connection", (socket) => {
    void (async () => {
      for await (const d of webSocketSubscriber(socket, { formats })) {
        if (d.event) ledger.received(d.event.id);
      }
    })().catch(() => undefined);
  });
  return wss;
}

async function stopServer(wss: WebSocketServer, how: "close" | "crash"): Promise<void> {
  for (const client of wss.clients) {
    if (how === "close") client.close(1001, "going away");
    else client.terminate();
  }
  await new Promise<void>((resolve) => wss.close(() => resolve()));
  // ws 8 leaves its HTTP server's own connections; none are open here.
  (wss as unknown as { _server?: Server })._server?.closeAllConnections?.();
}

/** Publishes every event, reconnecting and sending again whatever failed with a typed error. */
async function publishThroughFaults(
  url: string,
  events: readonly CloudEvent[],
  ledger: DeliveryLedger,
): Promise<{ failures: Record<string, number>; untyped: unknown[]; connections: number }> {
  const failures: Record<string, number> = {};
  const untyped: unknown[] = [];
  let connections = 0;
  let current: Promise<{ socket: WebSocket; publisher: Publisher }> | undefined;
  const connection = () => {
    current ??= (async () => {
      for (;;) {
        try {
          const socket = await connectWebSocket(url, {
            formats,
            WebSocket,
            timeoutMs: 2000,
          });
          connections++;
          return { socket, publisher: webSocketPublisher(socket, { formats }) };
        } catch (err) {
          if (!isPosthornError(err) || !err.retryable) throw err;
          await new Promise((r) => setTimeout(r, 25));
        }
      }
    })();
    return current;
  };
  await forEachConcurrently(events, 8, async (e) => {
    for (;;) {
      const link = await connection();
      try {
        await link.publisher.publish(e);
        ledger.sent(e.id);
        // Paced (about 8 events a millisecond), so the fault meets a stream, not a backlog:
        // unpaced, ws writes all 10,000 frames into the socket before the server reads one.
        await new Promise((r) => setTimeout(r, 1));
        return;
      } catch (err) {
        if (!isPosthornError(err) || (err.code !== "ConnectionFailed" && err.code !== "Closed")) {
          untyped.push(err);
          return;
        }
        failures[err.code] = (failures[err.code] ?? 0) + 1;
        // The connection is gone: the next attempt makes a new one (once, for all workers).
        const dead = current;
        await new Promise((r) => setTimeout(r, 10));
        if (current === dead) current = undefined;
      }
    }
  });
  const last = await current;
  last?.socket.close();
  return { failures, untyped, connections };
}

describe("WebSocket under server faults (at-most-once, no silent failure)", () => {
  for (const how of ["close", "crash"] as const) {
    const what =
      how === "close"
        ? "the server goes away (close 1001) and comes back"
        : "the server crashes (connections destroyed) and comes back";
    it(`${what} mid-stream of ${EVENTS} events: publishes on the dead connection fail typed`, {
      timeout: 60_000,
    }, async () => {
      const ledger = new DeliveryLedger(`websocket (${how})`);
      // Port 0 for the first start (nothing can take it between a choice and the bind); the
      // restart needs the same port, which another process could take while it is down.
      let wss = await startServer(0, ledger);
      const port = (wss.address() as AddressInfo).port;
      const events = Array.from({ length: EVENTS }, (_, i) =>
        faultEvent("websocket", i, "ws-fault"),
      );
      const publishing = publishThroughFaults(`ws://127.0.0.1:${port}`, events, ledger);
      await ledger.waitForSent(Math.floor(EVENTS / 3), 30_000);
      const before = ledger.deliveryCount;
      await stopServer(wss, how);
      await new Promise((r) => setTimeout(r, 300));
      wss = await startServer(port, ledger);
      const result = await publishing;
      // Frames still on their way when the test ends are given a moment.
      await ledger.waitForAll(how === "close" ? 10_000 : 1000);
      const counts = ledger.counts();
      console.log(
        `${ledger.summary()} [server ${how} after ${before} deliveries; publishes failed typed ${JSON.stringify(result.failures)} and were sent again; ${result.connections} connections]`,
      );
      await stopServer(wss, "close");

      expect(result.untyped).toEqual([]);
      expect(counts.sent).toBe(EVENTS);
      // Failures were reported, not swallowed: the connection did drop under the publishers.
      expect(Object.values(result.failures).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
      if (how === "close") {
        // A closing handshake lets every written frame arrive: nothing resolved was lost.
        expect(counts.lost).toBe(0);
      } else {
        // A crash can lose frames already written (at-most-once): never more than were in
        // flight, which the 8 paced publishers bound together with the socket buffers.
        expect(counts.lost).toBeLessThan(EVENTS / 10);
      }
    });
  }
});
