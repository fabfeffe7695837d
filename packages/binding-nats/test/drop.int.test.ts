import { readdirSync, readFileSync } from "node:fs";
import { connect as connectV3 } from "@nats-io/transport-node";
import { type NatsConnectionLike, natsPublisher } from "@posthorn/binding-nats";
import { isPosthornError } from "@posthorn/core";
import {
  faultEvent,
  type LaunchedBroker,
  startNatsServer,
  watchTimerOverflows,
} from "@posthorn/testkit";
import { connect as connectV2 } from "nats";
import { afterEach, describe, expect, it } from "vitest";
import { unique } from "./nats-server.js";

// Core NATS is at-most-once: what sits in the client's buffer or the socket when the connection
// drops is gone. Against a nats-server of each test's own, which the test pauses (SIGSTOP, so it
// reads nothing more) and kills, the core publisher's flush() and close() must say so.

/** The members of a v2 or v3 connection these tests use besides the binding's. */
interface TestConnection extends NatsConnectionLike {
  status(): AsyncIterable<{ type: string }>;
  close(): Promise<void>;
}

const clients: Record<string, (url: string) => Promise<TestConnection>> = {
  "@nats-io/transport-node (v3)": (url) =>
    connectV3({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 }),
  "nats (v2)": (url) =>
    connectV2({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 }),
};

let server: LaunchedBroker | undefined;
let nc: TestConnection | undefined;

afterEach(async () => {
  await nc?.close().catch(() => undefined);
  await server?.stop();
  nc = undefined;
  server = undefined;
});

/** Resolves at the connection's next status event of `type`. */
function nextStatus(conn: TestConnection, type: string): Promise<void> {
  return (async () => {
    for await (const s of conn.status()) if (s.type === type) return;
  })();
}

/**
 * A server of the test's own and a connection that keeps reconnecting, with a subscription on it
 * that counts what the server routed back (the server answers a flush's PING after routing every
 * message published before it, so the count is exact once a flush resolves).
 */
async function setUp(client: string): Promise<{ subject: string; received: () => number }> {
  server = await startNatsServer();
  const conn = await (clients[client] as (url: string) => Promise<TestConnection>)(server.url);
  nc = conn;
  const subject = unique("drop");
  let received = 0;
  conn.subscribe(subject, { callback: () => void received++ });
  await conn.flush();
  return { subject, received: () => received };
}

/** Stops the server (SIGSTOP) and resolves once every thread of it is stopped, reading nothing. */
async function pause(own: LaunchedBroker): Promise<void> {
  const pid = own.process.pid as number;
  own.process.kill("SIGSTOP");
  const stopped = () =>
    readdirSync(`/proc/${pid}/task`).every((t) =>
      /^\d+ \(.*\) [Tt] /.test(readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8")),
    );
  while (!stopped()) await new Promise((resolve) => setTimeout(resolve, 5));
}

/**
 * The server stops reading, `count` events are published (nats.js writes them into a socket
 * the server never reads), then it is killed and restarted; resolves once the client is back.
 */
async function publishIntoDrop(
  publisher: ReturnType<typeof natsPublisher>,
  from: number,
  count: number,
): Promise<void> {
  const own = server as LaunchedBroker;
  const conn = nc as TestConnection;
  await pause(own);
  await publisher.publish(Array.from({ length: count }, (_, i) => faultEvent("nats", from + i)));
  await new Promise((resolve) => setTimeout(resolve, 50));
  const reconnected = nextStatus(conn, "reconnect");
  await own.kill();
  await own.restart();
  await reconnected;
}

for (const client of Object.keys(clients)) {
  describe(`natsPublisher when the connection drops, with ${client}`, () => {
    it("close() rejects with ConnectionFailed naming the messages published since the last confirmed flush", {
      timeout: 15_000,
    }, async () => {
      const { subject, received } = await setUp(client);
      const publisher = natsPublisher(nc as TestConnection, { subject, closeTimeoutMs: 8000 });
      await publisher.publish([0, 1, 2, 3, 4].map((i) => faultEvent("nats", i)));
      await publisher.flush();
      expect(received()).toBe(5);
      await publishIntoDrop(publisher, 5, 20);

      const err = await publisher.close().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isPosthornError(err, "ConnectionFailed")).toBe(true);
      expect((err as Error).message).toMatch(
        /^20 messages published since the last confirmed flush may be lost/,
      );
      expect((err as { retryable?: boolean }).retryable).toBe(false);
      // They were lost: the server never read them, and close()'s round trip came back after
      // the reconnection without them.
      expect(received()).toBe(5);
      // Told once: close() again gives the same answer, not a new one.
      await expect(publisher.close()).rejects.toBe(err);
    });

    it("flush() rejects once for the drop, then resolves again, and close() resolves", {
      timeout: 15_000,
    }, async () => {
      const { subject, received } = await setUp(client);
      const publisher = natsPublisher(nc as TestConnection, { subject, closeTimeoutMs: 8000 });
      await publishIntoDrop(publisher, 0, 3);
      // Published after the reconnection, before the flush: the flush confirms these.
      await publisher.publish([10, 11].map((i) => faultEvent("nats", i)));

      const err = await publisher.flush().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isPosthornError(err, "ConnectionFailed")).toBe(true);
      expect((err as Error).message).toMatch(
        /^3 messages published since the last confirmed flush may be lost/,
      );
      expect(received()).toBe(2);
      await publisher.publish(faultEvent("nats", 12));
      await expect(publisher.flush()).resolves.toBeUndefined();
      await expect(publisher.close()).resolves.toBeUndefined();
      expect(received()).toBe(3);
    });

    it("publishers made per event share the connection's one status watcher, and still tell a drop", {
      timeout: 15_000,
    }, async () => {
      const { subject, received } = await setUp(client);
      const conn = nc as TestConnection;
      // nats.js keeps each status() iterator in a list: on the connection (v2) or its protocol (v3).
      const watchers = () => {
        const c = conn as unknown as {
          listeners?: unknown[];
          protocol?: { listeners?: unknown[] };
        };
        return (c.listeners ?? c.protocol?.listeners ?? []).length;
      };
      const before = watchers();
      for (let i = 0; i < 200; i++) {
        await natsPublisher(conn, { subject }).publish(faultEvent("nats", i));
      }
      // One per connection, however many publishers (there was one per publisher, kept until its
      // close(), which a publisher made per event never gets).
      expect(watchers() - before).toBeLessThanOrEqual(1);
      const kept = natsPublisher(conn, { subject, closeTimeoutMs: 8000 });
      await kept.flush();
      expect(received()).toBe(200);
      await publishIntoDrop(kept, 200, 4);
      await expect(kept.close()).rejects.toThrow(
        /^4 messages published since the last confirmed flush may be lost/,
      );
    });

    it("a drop after everything was confirmed: flush() and close() resolve", {
      timeout: 15_000,
    }, async () => {
      const { subject, received } = await setUp(client);
      const publisher = natsPublisher(nc as TestConnection, { subject, closeTimeoutMs: 8000 });
      await publisher.publish([0, 1, 2].map((i) => faultEvent("nats", i)));
      await publisher.flush();
      await publishIntoDrop(publisher, 3, 0);
      await expect(publisher.flush()).resolves.toBeUndefined();
      await expect(publisher.close()).resolves.toBeUndefined();
      expect(received()).toBe(3);
    });

    it("flush() gives up after timeoutMs while the server does not answer; a later flush confirms", {
      timeout: 15_000,
    }, async () => {
      const { subject, received } = await setUp(client);
      const own = server as LaunchedBroker;
      const publisher = natsPublisher(nc as TestConnection, { subject });
      await pause(own);
      try {
        await publisher.publish([0, 1, 2].map((i) => faultEvent("nats", i)));
        const started = Date.now();
        const err = await publisher.flush({ timeoutMs: 300 }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(Date.now() - started).toBeLessThan(2000);
        expect(isPosthornError(err, "Timeout")).toBe(true);
        expect((err as Error).message).toMatch(/within 300 ms; 3 messages .* are not confirmed/);
        expect((err as { retryable?: boolean }).retryable).toBe(true);
      } finally {
        own.process.kill("SIGCONT");
      }
      // Nothing was counted as lost: the server had them all along.
      await expect(publisher.flush()).resolves.toBeUndefined();
      expect(received()).toBe(3);
      await expect(publisher.close()).resolves.toBeUndefined();
    });

    it("closeTimeoutMs Infinity waits for the answer with no timer (one never fired at once)", {
      timeout: 15_000,
    }, async () => {
      const { subject, received } = await setUp(client);
      const own = server as LaunchedBroker;
      const publisher = natsPublisher(nc as TestConnection, { subject, closeTimeoutMs: Infinity });
      const overflows = watchTimerOverflows();
      try {
        await pause(own);
        await publisher.publish([0, 1].map((i) => faultEvent("nats", i)));
        let settled = false;
        const closing = publisher.close().finally(() => {
          settled = true;
        });
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(settled).toBe(false);
        own.process.kill("SIGCONT");
        await expect(closing).resolves.toBeUndefined();
        expect(received()).toBe(2);
        expect(overflows.count()).toBe(0);
      } finally {
        own.process.kill("SIGCONT");
        overflows.stop();
      }
    });
  });
}
