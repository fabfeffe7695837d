import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import {
  connectWebSocket,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import type { Delivery } from "@posthorn/core";
import { nextDelivery, shutdownEvent } from "@posthorn/testkit";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { formats } from "./link.js";

const require = createRequire(import.meta.url);

const servers: WebSocketServer[] = [];
const warnings: Error[] = [];
const onWarning = (warning: Error): void => {
  warnings.push(warning);
};
process.on("warning", onWarning);
afterEach(async () => {
  for (const wss of servers.splice(0)) {
    for (const socket of wss.clients) socket.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});

/** The binding's warnings that a server's socket holds nothing (see warnNoHold). */
const noHoldWarnings = () =>
  warnings.filter((w) => (w as { code?: unknown }).code === "POSTHORN_WS_NO_HOLD");

/**
 * A server whose application subscribes only once the client's ping, sent after its publishes,
 * has arrived; `hide` makes the accepted connection not name its ws socket to the binding, as a
 * `ws` other than 8.x would not.
 */
async function lateServer(hide: boolean) {
  const ce = webSocketServerOptions(formats);
  const wss = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    ...ce,
    handleProtocols(protocols: Set<string>, request: { socket: NodeJS.EventEmitter }) {
      const picked = ce.handleProtocols(protocols, request);
      if (hide) {
        // Runs at the first bytes, before the binding's listener (prepended) and once ws has set
        // its symbol: the binding's one read of it finds nothing; ws's own reads find its socket.
        request.socket.prependOnceListener("data", () => {
          const tcp = request.socket as unknown as Record<symbol, unknown>;
          const key = Object.getOwnPropertySymbols(tcp).find((k) => k.description === "websocket");
          if (key === undefined)
            throw new Error("ws 8.x names its socket: the test is out of date");
          let value = tcp[key];
          let reads = 0;
          Object.defineProperty(tcp, key, {
            configurable: true,
            get: () => (reads++ === 0 ? undefined : value),
            set: (v: unknown) => {
              value = v;
            },
          });
        });
      }
      return picked;
    },
  });
  servers.push(wss);
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const subscribed = new Promise<AsyncIterator<Delivery>>((resolve) =>
    wss.once("connection", (socket: WebSocket) => {
      socket.once("ping", () =>
        resolve(webSocketSubscriber(socket, { formats })[Symbol.asyncIterator]()),
      );
    }),
  );
  const client = await connectWebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, {
    formats,
    WebSocket,
  });
  return { client, subscribed };
}

/** Publishes 1..3, pings, then publishes 4 once the server subscribed; the ids it received. */
async function sendEarly(name: string, hide: boolean): Promise<(string | undefined)[]> {
  const { client, subscribed } = await lateServer(hide);
  const publisher = webSocketPublisher(client, { formats });
  await publisher.publish([1, 2, 3].map((n) => shutdownEvent(name, n)));
  client.ping();
  const iterator = await subscribed;
  await publisher.publish(shutdownEvent(name, 4));
  const ids: (string | undefined)[] = [];
  for (;;) {
    const delivery = await nextDelivery(iterator, 5000);
    ids.push(delivery.event?.id ?? delivery.error?.code);
    if (delivery.event?.id === shutdownEvent(name, 4).id) break;
  }
  client.close();
  return ids;
}

describe("the ws versions the binding's server-side hold works with", () => {
  it("the installed ws is within the peer range, names the accepted connection's socket, and the hold works with no warning", async () => {
    const installed: string = require("ws/package.json").version;
    const range: string = require("../package.json").peerDependencies.ws;
    // 8.3.0 brought pause() and resume(), which the subscriber's back-pressure needs.
    expect(range).toBe("^8.3.0");
    const [major, minor] = installed.split(".").map(Number);
    expect(major).toBe(8);
    expect(minor).toBeGreaterThanOrEqual(3);
    const ids = await sendEarly("installed", false);
    expect(ids).toEqual([1, 2, 3, 4].map((n) => shutdownEvent("installed", n).id));
    // A warning is emitted on a later tick: one more round trip lets it through.
    await new Promise((resolve) => setImmediate(resolve));
    expect(noHoldWarnings()).toEqual([]);
  });

  it("where the connection does not name its ws socket: nothing is held, as documented, and a warning says so once", async () => {
    const first = await sendEarly("hidden-1", true);
    const second = await sendEarly("hidden-2", true);
    // The documented fallback, ws's own behaviour: what came before the subscriber is dropped
    // without a word (no PayloadTooLarge delivery: nothing listened to count it).
    expect(first).toEqual([shutdownEvent("hidden-1", 4).id]);
    expect(second).toEqual([shutdownEvent("hidden-2", 4).id]);
    await new Promise((resolve) => setImmediate(resolve));
    const told = noHoldWarnings();
    expect(told).toHaveLength(1);
    expect(told[0]?.name).toBe("PosthornWarning");
    expect(told[0]?.message).toContain("could not find the ws socket of an accepted connection");
    process.off("warning", onWarning);
  });
});
