import type { AddressInfo } from "node:net";
import {
  connectWebSocket,
  DEFAULT_MAX_HELD_BYTES,
  DEFAULT_MAX_PENDING,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import { type Delivery, type EventFormat, ExtensionRegistry } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { nextDelivery, shutdownEvent } from "@posthorn/testkit";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { formats } from "./link.js";

const servers: WebSocketServer[] = [];
afterEach(async () => {
  for (const wss of servers.splice(0)) {
    for (const socket of wss.clients) socket.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});

async function pair(): Promise<{ client: WebSocket; server: WebSocket }> {
  const wss = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    ...webSocketServerOptions(formats),
  });
  servers.push(wss);
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const accepted = new Promise<WebSocket>((resolve) => wss.once("connection", resolve));
  const client = await connectWebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, {
    formats,
    WebSocket,
  });
  return { client, server: await accepted };
}

describe("webSocketSubscriber", () => {
  it("decodes with the format adapted to its registry: declared extensions get their types", async () => {
    const { client, server } = await pair();
    const registry = new ExtensionRegistry([
      { name: "priority", type: "Integer" },
      { name: "checksum", type: "Binary" },
    ]);
    // With the default json (core's registry); a second subscriber on a socket without one.
    const typed = webSocketSubscriber(server, { formats: [json], registry });
    const publisher = webSocketPublisher(client, { formats: [json] });
    const sent = shutdownEvent("websocket", 7).cloneWith({ priority: "-7", checksum: "AAH+/w==" });
    await publisher.publish(sent);
    const { value } = await typed[Symbol.asyncIterator]().next();
    expect(value?.event?.priority).toBe(-7);
    expect(value?.event?.checksum).toEqual(new Uint8Array([0, 1, 254, 255]));
    await typed.close();
    const plain = webSocketSubscriber(server, { formats: [json] });
    await publisher.publish(sent);
    const next = await plain[Symbol.asyncIterator]().next();
    expect(next.value?.event?.priority).toBe("-7");
    await plain.close();
    await publisher.close();
  });
  it("is ready at once: a frame sent after it resolves is delivered", async () => {
    const { client, server } = await pair();
    const subscriber = webSocketSubscriber(server, { formats });
    await expect(subscriber.ready).resolves.toBeUndefined();
    const publisher = webSocketPublisher(client, { formats });
    await publisher.publish(shutdownEvent("websocket", 1));
    const { value } = await subscriber[Symbol.asyncIterator]().next();
    expect(value?.event?.id).toBe(shutdownEvent("websocket", 1).id);
    await subscriber.close();
    await publisher.close();
  });
  it("closes when a for-await loop is left: its listeners go and the socket stays open", async () => {
    const { client, server } = await pair();
    const listeners = () => ["message", "close", "error"].map((e) => server.listenerCount(e));
    const before = listeners();
    const subscriber = webSocketSubscriber(server, { formats });
    // Its three, the 'error' listener every ws socket the binding touches keeps for good, and the
    // 'close' listener that stops the socket's heartbeat when it closes.
    const [message = 0, close = 0, error = 0] = before;
    const kept = [message, close + 1, error + 1];
    expect(listeners()).toEqual([message + 1, close + 2, error + 2]);
    const publisher = webSocketPublisher(client, { formats });
    await publisher.publish([shutdownEvent("websocket", 1), shutdownEvent("websocket", 2)]);
    const seen: string[] = [];
    for await (const delivery of subscriber) {
      seen.push(delivery.event?.id ?? "");
      break;
    }
    expect(seen).toEqual([shutdownEvent("websocket", 1).id]);
    expect(listeners()).toEqual(kept);
    expect(server.readyState).toBe(WebSocket.OPEN);
    // A new subscriber on the same socket gets what arrives next.
    const next = webSocketSubscriber(server, { formats });
    await publisher.publish(shutdownEvent("websocket", 3));
    const iterator = next[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.event?.id).toBe(shutdownEvent("websocket", 3).id);
    await next.close();
    await publisher.close();
  });
});

describe("connectWebSocket", () => {
  it("rejects, rather than throws, for a format with no WebSockets subprotocol", async () => {
    const noSubprotocol: EventFormat = {
      ...json,
      name: "xml",
      contentType: "application/cloudevents+xml",
    };
    let thrown: unknown;
    let result: Promise<unknown> | undefined;
    try {
      result = connectWebSocket("ws://127.0.0.1:9", { formats: [noSubprotocol], WebSocket });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeUndefined();
    await expect(result).rejects.toMatchObject({ name: "PosthornError", code: "NotSupported" });
  });
});

describe("a connectWebSocket socket whose server sends at once", () => {
  it("holds what arrived before the first subscriber and hands it over first, in order", async () => {
    const wss = new WebSocketServer({
      port: 0,
      host: "127.0.0.1",
      ...webSocketServerOptions(formats),
    });
    servers.push(wss);
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
    // A server that greets every client as it connects: its frames share a read with the 101.
    wss.on("connection", (socket) => {
      const replies = webSocketPublisher(socket, { formats });
      replies.publish([1, 2, 3].map((n) => shutdownEvent("welcome", n))).catch(() => undefined);
      webSocketSubscriber(socket, { formats }); // takes the client's publish, unread
    });
    const client = await connectWebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, {
      formats,
      WebSocket,
    });
    // As the docs' client does: publish, then subscribe.
    await webSocketPublisher(client, { formats }).publish(shutdownEvent("client", 1));
    const subscriber = webSocketSubscriber(client, { formats });
    for (const socket of wss.clients) {
      await webSocketPublisher(socket, { formats }).publish(shutdownEvent("welcome", 4));
    }
    const iterator = subscriber[Symbol.asyncIterator]();
    const ids: (string | undefined)[] = [];
    for (let i = 0; i < 4; i++) ids.push((await nextDelivery(iterator, 5000)).event?.id);
    // Before, ws emitted the three greetings before the await resumed, to no listener: lost.
    expect(ids).toEqual([1, 2, 3, 4].map((n) => shutdownEvent("welcome", n).id));
    // Only the first subscriber gets them: a second one sees what comes after it.
    const second = webSocketSubscriber(client, { formats });
    await subscriber.close();
    for (const socket of wss.clients) {
      await webSocketPublisher(socket, { formats }).publish(shutdownEvent("welcome", 5));
    }
    const next = await nextDelivery(second[Symbol.asyncIterator](), 5000);
    expect(next.event?.id).toBe(shutdownEvent("welcome", 5).id);
    await second.close();
    client.close();
  });
});

describe("a server's socket whose client sends before the application subscribes", () => {
  /**
   * A server whose application makes its subscriber only once the client's ping, sent after its
   * publishes, has arrived (as one that awaits a lookup on `connection` would, later): the frames
   * before it were read with no subscriber listening.
   */
  async function lateServer(options: Parameters<typeof webSocketServerOptions>[1] = {}) {
    const wss = new WebSocketServer({
      port: 0,
      host: "127.0.0.1",
      ...webSocketServerOptions(formats, options),
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

  it("holds them for the first subscriber, which hands them out first, in order", async () => {
    const { client, subscribed } = await lateServer();
    const publisher = webSocketPublisher(client, { formats });
    await publisher.publish([1, 2, 3].map((n) => shutdownEvent("early", n)));
    client.ping();
    const iterator = await subscribed;
    await publisher.publish(shutdownEvent("early", 4));
    const ids: (string | undefined)[] = [];
    for (let i = 0; i < 4; i++) ids.push((await nextDelivery(iterator, 5000)).event?.id);
    // Before, ws emitted the first three to no listener: lost, though their publishes resolved.
    expect(ids).toEqual([1, 2, 3, 4].map((n) => shutdownEvent("early", n).id));
    client.close();
  });

  it("holds DEFAULT_MAX_PENDING, and tells the subscriber with a PayloadTooLarge delivery how many it dropped", async () => {
    const { client, subscribed } = await lateServer();
    const publisher = webSocketPublisher(client, { formats });
    const sent = DEFAULT_MAX_PENDING + 44;
    await publisher.publish(Array.from({ length: sent }, (_, n) => shutdownEvent("flood", n)));
    client.ping();
    const iterator = await subscribed;
    for (let n = 0; n < DEFAULT_MAX_PENDING; n++) {
      expect((await nextDelivery(iterator, 5000)).event?.id).toBe(shutdownEvent("flood", n).id);
    }
    const dropped = await nextDelivery(iterator, 5000);
    expect(dropped.event).toBeUndefined();
    expect(dropped.error?.code).toBe("PayloadTooLarge");
    expect(dropped.error?.message).toContain("44 WebSocket message(s)");
    // The socket reads on: what comes once the subscriber listens arrives as usual.
    await publisher.publish(shutdownEvent("flood", sent));
    expect((await nextDelivery(iterator, 5000)).event?.id).toBe(shutdownEvent("flood", sent).id);
    client.close();
  });

  it("holds at most DEFAULT_MAX_HELD_BYTES (1 MiB): from the first message past it on, they are dropped and counted", async () => {
    expect(DEFAULT_MAX_HELD_BYTES).toBe(1024 * 1024);
    const { client, subscribed } = await lateServer();
    const publisher = webSocketPublisher(client, { formats });
    // 300 KiB each: three fit in 1 MiB, the fourth does not, nor (once one was dropped) the small
    // one after it, so what is held is what came first, with no gap.
    const big = (n: number) => ({ ...shutdownEvent("bytes", n), data: "x".repeat(300 * 1024) });
    await publisher.publish([big(0), big(1), big(2), big(3), shutdownEvent("bytes", 4)]);
    client.ping();
    const iterator = await subscribed;
    for (let n = 0; n < 3; n++) {
      expect((await nextDelivery(iterator, 5000)).event?.id).toBe(big(n).id);
    }
    // Before, all five were held: up to 256 messages of any size (1 GiB at 4 MiB each).
    const dropped = await nextDelivery(iterator, 5000);
    expect(dropped.event).toBeUndefined();
    expect(dropped.error?.code).toBe("PayloadTooLarge");
    expect(dropped.error?.message).toMatch(
      /^2 WebSocket message\(s\) .* past the 3 \(\d+ bytes\) held/,
    );
    expect(dropped.error?.message).toContain("maxHeldBytes, 1048576 bytes");
    await publisher.publish(shutdownEvent("bytes", 5));
    expect((await nextDelivery(iterator, 5000)).event?.id).toBe(shutdownEvent("bytes", 5).id);
    client.close();
  });

  it("maxHeldBytes 0 holds nothing (a socket that only publishes), and still tells the first subscriber how many were dropped", async () => {
    const { client, subscribed } = await lateServer({ maxHeldBytes: 0 });
    const publisher = webSocketPublisher(client, { formats });
    await publisher.publish([1, 2, 3].map((n) => shutdownEvent("nohold", n)));
    client.ping();
    const iterator = await subscribed;
    const dropped = await nextDelivery(iterator, 5000);
    expect(dropped.event).toBeUndefined();
    expect(dropped.error?.code).toBe("PayloadTooLarge");
    expect(dropped.error?.message).toMatch(
      /^3 WebSocket message\(s\) .* past the 0 \(0 bytes\) held/,
    );
    await publisher.publish(shutdownEvent("nohold", 4));
    expect((await nextDelivery(iterator, 5000)).event?.id).toBe(shutdownEvent("nohold", 4).id);
    client.close();
  });

  it("counts a Blob (binaryType blob) by its size: held, not dropped", async () => {
    const wss = new WebSocketServer({
      port: 0,
      host: "127.0.0.1",
      ...webSocketServerOptions(formats),
    });
    servers.push(wss);
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
    const subscribed = new Promise<AsyncIterator<Delivery>>((resolve) =>
      wss.once("connection", (socket: WebSocket) => {
        // ws 8.18 and later emit binary messages as Blobs so.
        socket.binaryType = "blob" as WebSocket["binaryType"];
        socket.once("ping", () =>
          resolve(webSocketSubscriber(socket, { formats })[Symbol.asyncIterator]()),
        );
      }),
    );
    const client = await connectWebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, {
      formats,
      WebSocket,
    });
    client.send(new Uint8Array([1, 2, 3]));
    client.send(new Uint8Array([4, 5, 6]));
    client.ping();
    const iterator = await subscribed;
    // Before, a Blob's byteLength (undefined) failed the byte bound: both were dropped, counted.
    for (let i = 0; i < 2; i++) {
      const delivery = await nextDelivery(iterator, 5000);
      expect(delivery.error?.code).toBe("MalformedInput");
      expect(delivery.error?.message).toContain("binaryType");
    }
    client.close();
  });

  it("a connectWebSocket socket takes maxHeldBytes too", async () => {
    const wss = new WebSocketServer({
      port: 0,
      host: "127.0.0.1",
      ...webSocketServerOptions(formats),
    });
    servers.push(wss);
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
    // The server greets with two events at once, before the client's application subscribes.
    wss.on("connection", (socket: WebSocket) => {
      void webSocketPublisher(socket, { formats }).publish(
        [1, 2].map((n) => shutdownEvent("greet", n)),
      );
    });
    const client = await connectWebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, {
      formats,
      WebSocket,
      maxHeldBytes: 0,
    });
    // The server's pong comes after its greeting: both were read once it is here.
    client.ping();
    await new Promise((resolve) => client.once("pong", resolve));
    const iterator = webSocketSubscriber(client, { formats })[Symbol.asyncIterator]();
    const dropped = await nextDelivery(iterator, 5000);
    expect(dropped.error?.code).toBe("PayloadTooLarge");
    expect(dropped.error?.message).toMatch(/^2 WebSocket message\(s\)/);
    client.close();
  });
});

describe("webSocketPublisher maxPayloadBytes", () => {
  it("refuses an event larger than the limit before sending it, so the connection stays up", async () => {
    const { client, server } = await pair();
    const subscriber = webSocketSubscriber(server, { formats, maxPayloadBytes: 4096 });
    const publisher = webSocketPublisher(client, { formats, maxPayloadBytes: 4096 });
    const big = { ...shutdownEvent("websocket", 1), data: "x".repeat(8192) };
    await expect(publisher.publish(big)).rejects.toMatchObject({ code: "PayloadTooLarge" });
    await expect(publisher.publish([shutdownEvent("websocket", 2), big])).rejects.toMatchObject({
      code: "PayloadTooLarge",
    });
    // Nothing of either call went out, and the connection is still there for the next event.
    await publisher.publish(shutdownEvent("websocket", 3));
    const iterator = subscriber[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.event?.id).toBe(shutdownEvent("websocket", 3).id);
    expect(client.readyState).toBe(WebSocket.OPEN);
    await subscriber.close();
    await publisher.close();
  });

  it("defaults to the limit the socket was made with, on either side", async () => {
    const limit = 6 * 1024 * 1024;
    const wss = new WebSocketServer({
      port: 0,
      host: "127.0.0.1",
      ...webSocketServerOptions(formats, { maxPayloadBytes: limit }),
    });
    servers.push(wss);
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
    const accepted = new Promise<WebSocket>((resolve) => wss.once("connection", resolve));
    const client = await connectWebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, {
      formats,
      WebSocket,
      maxPayloadBytes: limit,
    });
    const server = await accepted;
    // 5 MiB: past the 4 MiB DEFAULT_MAX_PAYLOAD_BYTES, within the sockets' own limit.
    const big = { ...shutdownEvent("raised", 1), data: "x".repeat(5 * 1024 * 1024) };
    for (const [from, to] of [
      [client, server],
      [server, client],
    ] as const) {
      const subscriber = webSocketSubscriber(to, { formats });
      const publisher = webSocketPublisher(from, { formats });
      // Before, the publisher refused it against 4 MiB (PayloadTooLarge), though both sockets take it.
      await publisher.publish(big);
      const delivery = await nextDelivery(subscriber[Symbol.asyncIterator](), 5000);
      expect(delivery.event?.id).toBe(big.id);
      // Past the socket's own limit it is still refused before anything is sent.
      const bigger = { ...big, data: "x".repeat(limit + 1) };
      await expect(publisher.publish(bigger)).rejects.toMatchObject({ code: "PayloadTooLarge" });
      expect(from.readyState).toBe(WebSocket.OPEN);
      await subscriber.close();
      await publisher.close();
    }
    client.close();
  });
});
