import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  createNodeHandler,
  type HttpReceiver,
  httpPublisher,
  httpReceiver,
} from "@posthorn/binding-http";
import { json } from "@posthorn/format-json";
import {
  DeliveryLedger,
  expectEverySentEventReceived,
  faultEvent,
  publishEachWithRetry,
} from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { SENDERS } from "./servers.js";

// The receiver's server goes away mid-stream (its receiver closed, its connections cut, its port
// closed) and comes back on the same port while the publisher sends 10,000 events with retries.
// HTTP is at-least-once through the sender: a publish resolves only on a 2xx, which the receiver
// sends after the handler accepted the event, so every event reported as sent was received.
const EVENTS = Number(process.env.POSTHORN_FAULT_EVENTS ?? 10_000);

async function listen(port: number, receiver: HttpReceiver): Promise<Server> {
  const server = createServer(createNodeHandler(receiver));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return server;
}

async function shutDown(server: Server, receiver: HttpReceiver): Promise<void> {
  // Requests waiting for settlement are answered 503 + Retry-After; then every connection is cut,
  // so requests on the wire fail as connection errors.
  await receiver.close();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

describe.each(SENDERS)("over $name", ({ options: sender }) => {
  describe("HTTP under receiver faults", () => {
    it(`a receiver restart mid-stream of ${EVENTS} events: every event reported as sent was received`, {
      timeout: 60_000,
    }, async () => {
      const ledger = new DeliveryLedger("http");
      const makeReceiver = () =>
        httpReceiver({
          formats: [json],
          defaultRetryAfterMs: 200,
          // Some work before accepting, so requests are in the handler when the server goes down.
          onDelivery: async (d) => {
            if (d.event) ledger.received(d.event.id);
            await new Promise((r) => setTimeout(r, 2));
          },
        });
      let receiver = makeReceiver();
      // Port 0 for the first start (nothing can take it between a choice and the bind); the
      // restart needs the same port, which another process could take while it is down.
      let server = await listen(0, receiver);
      const port = (server.address() as AddressInfo).port;
      const publisher = httpPublisher({
        ...sender,
        url: `http://127.0.0.1:${port}/events`,
        timeoutMs: 5000,
        retry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 1000 },
      });
      const events = Array.from({ length: EVENTS }, (_, i) => faultEvent("http", i));
      const publishing = publishEachWithRetry(events, 32, (e) => publisher.publish(e), ledger, {
        delayMs: 50,
      });

      await ledger.waitForSent(Math.floor(EVENTS / 3), 30_000);
      const before = ledger.deliveryCount;
      await shutDown(server, receiver);
      // Down long enough for publishes to meet a refused connection and retry.
      await new Promise((r) => setTimeout(r, 500));
      receiver = makeReceiver();
      server = await listen(port, receiver);
      await publishing;
      const complete = await ledger.waitForAll(10_000);
      console.log(`${ledger.summary()} [receiver down for 500 ms after ${before} deliveries]`);
      await publisher.close();
      await shutDown(server, receiver);

      const counts = ledger.counts();
      expect(counts.retries).toBeGreaterThan(0);
      expectEverySentEventReceived(ledger, { sent: EVENTS, complete });
    });
  });
});
