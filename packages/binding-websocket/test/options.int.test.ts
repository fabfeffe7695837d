import type { AddressInfo } from "node:net";
import {
  connectWebSocket,
  MIN_HEARTBEAT_MS,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import { nextDelivery, refusedOption, shutdownEvent } from "@posthorn/testkit";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { formats, type Link, link } from "./link.js";

// Numeric options are checked where the publisher, subscriber, socket or server options are
// made, on real ws sockets.

const refused = refusedOption;

const NaN_ = Number.NaN;
const links: Link[] = [];
const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const l of links.splice(0)) await l.stop();
  for (const stop of stops.splice(0)) await stop();
});

describe("WebSocket numeric options", () => {
  it("webSocketPublisher refuses NaN, negatives and fractions, and a bad per-call timeoutMs", async () => {
    const l = await link();
    links.push(l);
    const cases: [object, string, string][] = [
      [{ maxPayloadBytes: NaN_ }, "maxPayloadBytes", "NaN"],
      [{ maxPayloadBytes: -1 }, "maxPayloadBytes", "-1"],
      // NaN and negatives stopped the heartbeat without a word.
      [{ heartbeatMs: NaN_ }, "heartbeatMs", "NaN"],
      [{ heartbeatMs: -1 }, "heartbeatMs", "-1"],
      [{ closeTimeoutMs: NaN_ }, "closeTimeoutMs", "NaN"],
      // bufferedAmount > NaN never held: no publish was ever refused.
      [{ maxBufferedBytes: NaN_ }, "maxBufferedBytes", "NaN"],
      [{ maxBufferedBytes: 0.5 }, "maxBufferedBytes", "0.5"],
    ];
    for (const [options, option, shown] of cases) {
      expect(() => webSocketPublisher(l.client, { formats, ...options })).toThrow(
        refused(option, shown),
      );
    }
    const publisher = webSocketPublisher(l.client, { formats });
    // NaN made a timer that fired at once: Timeout, with the frame sent anyway.
    await expect(publisher.publish(shutdownEvent("ws", 0), { timeoutMs: NaN_ })).rejects.toEqual(
      refused("timeoutMs", "NaN"),
    );
    await publisher.publish(shutdownEvent("ws", 1));
    expect((await nextDelivery(l.received, 2000)).event?.id).toBe(shutdownEvent("ws", 1).id);
    await publisher.close();
  });

  it("webSocketSubscriber refuses a maxPending that is not a whole number of 1 or more", async () => {
    const l = await link();
    links.push(l);
    const cases: [object, string, string][] = [
      [{ maxPending: 0 }, "maxPending", "0"],
      [{ maxPending: 2.5 }, "maxPending", "2.5"],
      [{ maxPayloadBytes: NaN_ }, "maxPayloadBytes", "NaN"],
      [{ heartbeatMs: -5 }, "heartbeatMs", "-5"],
    ];
    for (const [options, option, shown] of cases) {
      expect(() => webSocketSubscriber(l.client, { formats, ...options })).toThrow(
        refused(option, shown),
      );
    }
  });

  it("connectWebSocket rejects bad values before it connects; ws's maxPayload never takes 0", async () => {
    const url = "ws://127.0.0.1:9/";
    const cases: [object, string, string][] = [
      [{ timeoutMs: NaN_ }, "timeoutMs", "NaN"],
      [{ heartbeatMs: -1 }, "heartbeatMs", "-1"],
      // ws takes a maxPayload of 0 for no limit.
      [{ maxPayloadBytes: 0 }, "maxPayloadBytes", "0"],
      [{ maxPayloadBytes: NaN_ }, "maxPayloadBytes", "NaN"],
      [{ maxHeldBytes: -1 }, "maxHeldBytes", "-1"],
      [{ maxHeldBytes: 0.5 }, "maxHeldBytes", "0.5"],
    ];
    for (const [options, option, shown] of cases) {
      await expect(connectWebSocket(url, { formats, WebSocket, ...options })).rejects.toEqual(
        refused(option, shown),
      );
    }
    expect(() => webSocketServerOptions(formats, { maxPayloadBytes: 0 })).toThrow(
      refused("maxPayloadBytes", "0"),
    );
    expect(webSocketServerOptions(formats, { maxPayloadBytes: Infinity }).maxPayload).toBe(0);
    expect(() => webSocketServerOptions(formats, { maxHeldBytes: NaN_ })).toThrow(
      refused("maxHeldBytes", "NaN"),
    );
  });

  it("heartbeatMs other than 0 is refused below MIN_HEARTBEAT_MS (100 ms), naming the floor, everywhere it is taken", async () => {
    expect(MIN_HEARTBEAT_MS).toBe(100);
    const l = await link();
    links.push(l);
    // 1 ms pinged a thousand times a second and gave an idle peer over loopback up within a few
    // hundred ms; 0.5 was the same 1 ms timer; 5 and 30 (seconds written as ms) gave up a peer
    // whose event loop was busy for 30 ms.
    const floor = /^heartbeatMs must be 0 \(no heartbeat\) or 100 or more /;
    for (const heartbeatMs of [0.5, 1, 5, 30, 99.9]) {
      const refusal = refused("heartbeatMs", String(heartbeatMs));
      const made = [
        () => webSocketPublisher(l.client, { formats, heartbeatMs }),
        () => webSocketSubscriber(l.client, { formats, heartbeatMs }),
      ];
      for (const make of made) {
        expect(make).toThrow(refusal);
        expect(make).toThrow(floor);
      }
      const connecting = connectWebSocket("ws://127.0.0.1:9/", { formats, WebSocket, heartbeatMs });
      await expect(connecting).rejects.toEqual(refusal);
      await expect(connecting).rejects.toThrow(floor);
    }
    // 0, the floor itself and Infinity are taken.
    for (const heartbeatMs of [0, MIN_HEARTBEAT_MS, Infinity]) {
      expect(() => webSocketPublisher(l.client, { formats, heartbeatMs })).not.toThrow();
    }
  });

  it("a maxPayloadBytes past 32 bits is no limit, not what ws's 32-bit truncation leaves", async () => {
    // ws truncates maxPayload with `| 0`: 2 ** 32 + 5 was a limit of 5 bytes.
    const wss = new WebSocketServer({
      port: 0,
      host: "127.0.0.1",
      ...webSocketServerOptions(formats, { maxPayloadBytes: 2 ** 32 + 5 }),
    });
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
    stops.push(async () => {
      for (const socket of wss.clients) socket.terminate();
      await new Promise((resolve) => wss.close(resolve));
    });
    const accepted = new Promise<WebSocket>((resolve) => wss.once("connection", resolve));
    const client = await connectWebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, {
      formats,
      WebSocket,
    });
    const server = await accepted;
    const subscriber = webSocketSubscriber(server, { formats, maxPayloadBytes: Infinity });
    const publisher = webSocketPublisher(client, { formats });
    await publisher.publish(shutdownEvent("ws", 2));
    const delivery = await nextDelivery(subscriber[Symbol.asyncIterator](), 2000);
    expect(delivery.event?.id).toBe(shutdownEvent("ws", 2).id);
    await publisher.close();
    await subscriber.close();
    client.terminate();
  });
});
