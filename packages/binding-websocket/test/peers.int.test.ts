import type { AddressInfo } from "node:net";
import {
  connectWebSocket,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import { type Delivery, isPosthornError } from "@posthorn/core";
import { avro } from "@posthorn/format-avro";
import { nextDelivery, settledWithin, shutdownEvent } from "@posthorn/testkit";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { type ServerOptions, WebSocketServer } from "ws";
import { FORMATS } from "./formats.js";
import { bigEvent, congest, formats, type Link, link, nextId } from "./link.js";

// Misbehaving peers over real ws connections: whatever the peer does, the other side gets a typed
// error or an ended iteration, never a crash (an 'error' event nobody listens to is thrown by
// Node) and never a promise pending forever.

const links: Link[] = [];
const servers: WebSocketServer[] = [];
const open = async (): Promise<Link> => {
  const l = await link();
  links.push(l);
  return l;
};

afterEach(async () => {
  for (const l of links.splice(0)) await l.stop();
  for (const wss of servers.splice(0)) {
    for (const socket of wss.clients) socket.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});

/** A ws server on a free port with these options, and its next connection. */
async function serve(
  options: ServerOptions,
): Promise<{ url: string; accepted: Promise<WebSocket> }> {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1", ...options });
  servers.push(wss);
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    accepted: new Promise((resolve) => wss.once("connection", resolve)),
  };
}

function closed(socket: WebSocket): Promise<number> {
  if (socket.readyState === WebSocket.CLOSED) return Promise.resolve(-1);
  return new Promise((resolve) => socket.once("close", (code) => resolve(code)));
}

/** A text frame whose payload is not UTF-8 (RFC 6455 8.1): ws fails the connection with 1007. */
function sendInvalidText(socket: WebSocket): void {
  socket.send(Buffer.from([0x7b, 0xc0, 0xa0, 0x7d]), { binary: false });
}

async function pull(iterator: AsyncIterator<Delivery>): Promise<unknown> {
  try {
    const r = await iterator.next();
    return r.done ? "ended" : r.value;
  } catch (err) {
    return err;
  }
}

describe("connectWebSocket against a server that negotiates no CloudEvents subprotocol", () => {
  it("fails with ConnectionFailed, not retryable, when the server answers without a subprotocol", async () => {
    const { url } = await serve({ handleProtocols: () => false });
    const err = await connectWebSocket(url, { formats, WebSocket }).catch((e: unknown) => e);
    expect(err).toMatchObject({
      name: "PosthornError",
      code: "ConnectionFailed",
      retryable: false,
    });
    expect(String((err as Error).message)).toMatch(/no subprotocol/);
  });

  it("fails with NotSupported, and closes with 1002, when the server picks another subprotocol the socket offered", async () => {
    const { url, accepted } = await serve({
      handleProtocols: (offered) => (offered.has("chat.v1") ? "chat.v1" : false),
    });
    // As the docs' subclass pattern allows: a socket that offers a protocol of its own too.
    class OfferingAlso extends WebSocket {
      constructor(address: string, protocols?: string | string[]) {
        super(address, [
          ...(typeof protocols === "string" ? [protocols] : (protocols ?? [])),
          "chat.v1",
        ]);
      }
    }
    const settled = settledWithin(
      connectWebSocket(url, { formats, WebSocket: OfferingAlso }),
      2000,
    );
    const code = closed(await accepted);
    expect(await settled).toMatchObject({
      rejected: { code: "NotSupported", message: expect.stringMatching(/subprotocol chat\.v1/) },
    });
    expect(await code).toBe(1002);
  });

  it("fails with ConnectionFailed, not retryable, when the server picks a subprotocol not offered", async () => {
    const { url } = await serve({ handleProtocols: () => "chat" });
    const err = await connectWebSocket(url, { formats, WebSocket }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ConnectionFailed", retryable: false });
  });
});

describe("a peer that sends what ws refuses, to a side that only publishes", () => {
  it("a client socket from connectWebSocket with a publisher only: no crash, and publish fails typed", async () => {
    const { url, accepted } = await serve(webSocketServerOptions(formats));
    const client = await connectWebSocket(url, { formats, WebSocket });
    const publisher = webSocketPublisher(client, { formats });
    const peer = await accepted;
    const failed = closed(client);
    const code = closed(peer);
    sendInvalidText(peer);
    // ws fails the connection (1007 to the peer) and emits 'error'; unheard, Node threw it
    // (vitest reports an unhandled error and fails the run).
    expect(await code).toBe(1007);
    await failed;
    await expect(publisher.publish(shutdownEvent("ws", 1))).rejects.toMatchObject({
      code: "ConnectionFailed",
    });
    await expect(publisher.close()).resolves.toBeUndefined();
  });

  it("a client socket from connectWebSocket that nothing uses yet: no crash", async () => {
    const { url, accepted } = await serve(webSocketServerOptions(formats));
    const client = await connectWebSocket(url, { formats, WebSocket });
    const peer = await accepted;
    const failed = closed(client);
    const code = closed(peer);
    sendInvalidText(peer);
    expect(await code).toBe(1007);
    await failed;
  });

  it("a server's socket with a publisher only: a message past maxPayload closes it with 1009, no crash", async () => {
    const { url, accepted } = await serve(
      webSocketServerOptions(formats, { maxPayloadBytes: 100 }),
    );
    const client = await connectWebSocket(url, { formats, WebSocket });
    const server = await accepted;
    const replies = webSocketPublisher(server, { formats });
    const failed = closed(server);
    const code = closed(client);
    client.send("x".repeat(1000));
    expect(await code).toBe(1009);
    await failed;
    await expect(replies.publish(shutdownEvent("ws", 1))).rejects.toMatchObject({
      code: "ConnectionFailed",
    });
  });

  it("a server's socket whose subscriber was closed: a bad frame afterwards crashes nothing", async () => {
    const { url, accepted } = await serve(webSocketServerOptions(formats));
    const client = await connectWebSocket(url, { formats, WebSocket });
    const server = await accepted;
    const subscriber = webSocketSubscriber(server, { formats });
    await subscriber.close();
    await subscriber.close();
    const failed = closed(server);
    const code = closed(client);
    sendInvalidText(client);
    expect(await code).toBe(1007);
    await failed;
  });
});

describe("webSocketSubscriber on a socket that already closed", () => {
  it("ends iteration at once instead of waiting for a close event that already happened", async () => {
    const l = await open();
    const code = closed(l.server);
    l.client.close(1000, "done");
    expect(await code).toBe(1000);
    expect(l.server.readyState).toBe(WebSocket.CLOSED);
    const iterator = webSocketSubscriber(l.server, { formats })[Symbol.asyncIterator]();
    expect(await settledWithin(iterator.next(), 2000)).toEqual({
      resolved: { value: undefined, done: true },
    });
  });
  it("fails iteration at once with ConnectionFailed when that close was abnormal (1006)", async () => {
    const l = await open();
    const code = closed(l.server);
    l.client.terminate();
    expect(await code).toBe(1006);
    // The binding watched the socket (the link's subscriber), so it knows how it closed.
    const iterator = webSocketSubscriber(l.server, { formats })[Symbol.asyncIterator]();
    expect(await settledWithin(iterator.next(), 2000)).toMatchObject({
      rejected: { name: "PosthornError", code: "ConnectionFailed", protocolCode: 1006 },
    });
  });
});

describe("a peer that stops reading", () => {
  it("publisher.close() rejects with Timeout after closeTimeoutMs instead of waiting forever", {
    timeout: 20_000,
  }, async () => {
    const l = await open();
    const publisher = webSocketPublisher(l.client, { formats, closeTimeoutMs: 200 });
    const backlog = await congest(l, (e) => publisher.publish(e));
    const closing = publisher.close();
    expect(await settledWithin(closing, 5000)).toMatchObject({
      rejected: { name: "PosthornError", code: "Timeout" },
    });
    expect(await settledWithin(publisher.close(), 100)).toMatchObject({
      rejected: { code: "Timeout" },
    });
    // The frames are still the socket's: once the peer reads again they go out.
    l.server.resume();
    await Promise.all(backlog);
    for (let i = 0; i < backlog.length; i++) expect(await nextId(l, 10_000)).toBe(`backlog-${i}`);
  });

  it("publish() refuses with PublishRejected (retryable) past maxBufferedBytes, and sends again once the peer reads", {
    timeout: 20_000,
  }, async () => {
    const l = await open();
    const limit = 8 * 1024 * 1024;
    const publisher = webSocketPublisher(l.client, { formats, maxBufferedBytes: limit });
    const backlog = await congest(l, (e) => publisher.publish(e));
    // The old publisher took all 64 (64 MiB queued in ws for a peer that reads nothing).
    let refusal: unknown;
    let bufferedAtRefusal = 0;
    for (let i = 0; i < 64 && refusal === undefined; i++) {
      // What the publisher reads, synchronously, before it decides.
      bufferedAtRefusal = l.client.bufferedAmount;
      const call = publisher.publish(bigEvent(`more-${i}`, 1024 * 1024));
      const early = await settledWithin(call, 0);
      if (early !== "pending" && "rejected" in early) refusal = early.rejected;
      else backlog.push(call);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(refusal).toMatchObject({
      name: "PosthornError",
      code: "PublishRejected",
      retryable: true,
    });
    expect(bufferedAtRefusal).toBeGreaterThan(limit);
    expect(bufferedAtRefusal).toBeLessThan(limit + 2 * 1024 * 1024);
    l.server.resume();
    await Promise.all(backlog);
    await publisher.publish(shutdownEvent("ws", 2));
    for (let i = 0; i < backlog.length; i++) await nextDelivery(l.received, 10_000);
    expect(await nextId(l)).toBe("shutdown-2");
  });
});

describe("a peer that sends faster than the application pulls", () => {
  // Without link()'s own subscriber: a second subscriber that nobody pulls would pause the
  // socket too, and hold it paused.
  const open = async (): Promise<{ client: WebSocket; server: WebSocket }> => {
    const { url, accepted } = await serve(webSocketServerOptions(formats));
    const client = await connectWebSocket(url, { formats, WebSocket });
    return { client, server: await accepted };
  };
  /** Publishes `count` events of 16 KiB from the client without waiting. */
  const flood = (l: { client: WebSocket }, count: number): Promise<void>[] => {
    const publisher = webSocketPublisher(l.client, { formats });
    return Array.from({ length: count }, (_, i) =>
      publisher.publish(bigEvent(`flood-${i}`, 16_384)),
    );
  };
  /** Waits until `done()` holds, up to 10 s. */
  const until = async (done: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 50));
  };

  it("pauses the ws socket past maxPending waiting deliveries, so TCP holds the peer back, and loses nothing", {
    timeout: 30_000,
  }, async () => {
    const l = await open();
    const subscriber = webSocketSubscriber(l.server, { formats, maxPending: 16 });
    const count = 2000;
    let written = 0;
    const publishes = flood(l, count).map((p) => p.then(() => void written++));
    // The old subscriber read all 32 MiB into its queue: every publish resolved, nothing paused.
    await until(() => l.server.isPaused || written === count);
    expect(l.server.isPaused).toBe(true);
    const iterator = subscriber[Symbol.asyncIterator]();
    for (let i = 0; i < count; i++) {
      expect((await nextDelivery(iterator, 10_000)).event?.id).toBe(`flood-${i}`);
    }
    await Promise.all(publishes);
    expect(l.server.isPaused).toBe(false);
    await subscriber.close();
  });

  it("refuses a maxPending below 1 with NotSupported", async () => {
    const { server } = await open();
    for (const maxPending of [0, -1, Number.NaN]) {
      expect(() => webSocketSubscriber(server, { formats, maxPending })).toThrow(
        expect.objectContaining({ name: "PosthornError", code: "NotSupported" }),
      );
    }
  });

  it("two subscribers on one socket: one that drains does not resume a socket the other still holds paused", {
    timeout: 30_000,
  }, async () => {
    const l = await open();
    // Every message goes to both; `held` is never pulled, `pulled` is.
    const held = webSocketSubscriber(l.server, { formats, maxPending: 4 });
    const pulled = webSocketSubscriber(l.server, { formats, maxPending: 4 })[
      Symbol.asyncIterator
    ]();
    const publishes = flood(l, 2000);
    await until(() => l.server.isPaused);
    expect(l.server.isPaused).toBe(true);
    // `held` holds `pulled` up: it gets what arrived before the pause, then nothing. Before,
    // each time `pulled` drained below half it resumed the socket (ws's pause is one flag), so it
    // got all 2,000 while `held`'s queue grew to 2,000 events of 16 KiB, never pulled.
    let got = 0;
    let waiting = pulled.next();
    for (;;) {
      const next = await settledWithin(waiting, 300);
      if (next === "pending") break;
      expect(next).toMatchObject({ resolved: { value: { event: { id: `flood-${got}` } } } });
      got++;
      waiting = pulled.next();
    }
    expect(got).toBeGreaterThanOrEqual(4);
    expect(got).toBeLessThan(100);
    expect(l.server.isPaused).toBe(true);
    // Once `held` lets go, the socket reads again and `pulled` gets the rest in order, the first
    // through the pull still waiting.
    await held.close();
    expect((await waiting).value?.event?.id).toBe(`flood-${got}`);
    for (let i = got + 1; i < 2000; i++) {
      expect((await nextDelivery(pulled, 10_000)).event?.id).toBe(`flood-${i}`);
    }
    await Promise.all(publishes);
    expect(l.server.isPaused).toBe(false);
  });

  it("closing a paused subscriber resumes the socket: a new subscriber gets what follows", {
    timeout: 30_000,
  }, async () => {
    const l = await open();
    const first = webSocketSubscriber(l.server, { formats, maxPending: 4 });
    const publishes = flood(l, 2000);
    await until(() => l.server.isPaused);
    expect(l.server.isPaused).toBe(true);
    await first.close();
    expect(l.server.isPaused).toBe(false);
    const next = webSocketSubscriber(l.server, { formats })[Symbol.asyncIterator]();
    const id = (await nextDelivery(next, 10_000)).event?.id ?? "";
    expect(Number(id.replace("flood-", ""))).toBeGreaterThan(0);
    // What was queued in the first one went with it (at-most-once); the rest arrives in order.
    let last = id;
    while (last !== "flood-1999") {
      const following = (await nextDelivery(next, 10_000)).event?.id ?? "";
      expect(Number(following.replace("flood-", ""))).toBe(Number(last.replace("flood-", "")) + 1);
      last = following;
    }
    await Promise.all(publishes);
  });
});

describe("a peer that goes away", () => {
  it("publishes held in ws's buffers settle with ConnectionFailed when the peer goes away, and close() resolves", {
    timeout: 20_000,
  }, async () => {
    const l = await open();
    const publisher = webSocketPublisher(l.client, { formats });
    const backlog = await congest(l, (e) => publisher.publish(e));
    const held = publisher.publish(shutdownEvent("ws", 1));
    l.server.terminate();
    const outcomes = await Promise.allSettled([...backlog, held]);
    expect(outcomes.at(-1)).toMatchObject({
      status: "rejected",
      reason: { code: "ConnectionFailed" },
    });
    for (const o of outcomes) {
      if (o.status === "rejected") expect(isPosthornError(o.reason, "ConnectionFailed")).toBe(true);
    }
    expect(await settledWithin(publisher.close(), 5000)).toEqual({ resolved: undefined });
  });
});

describe("frames a subscriber gets", () => {
  it("a fragmented message arrives as one event", async () => {
    const l = await open();
    const text = JSON.stringify(shutdownEvent("ws", 7));
    const cut = Math.floor(text.length / 3);
    l.client.send(text.slice(0, cut), { fin: false });
    l.client.send(text.slice(cut, 2 * cut), { fin: false });
    l.client.send(text.slice(2 * cut), { fin: true });
    expect(await nextId(l)).toBe("shutdown-7");
  });

  it("a fragmented message past maxPayload closes the connection with 1009: PayloadTooLarge", async () => {
    const { url, accepted } = await serve(
      webSocketServerOptions(formats, { maxPayloadBytes: 100 }),
    );
    const client = await connectWebSocket(url, { formats, WebSocket });
    const iterator = webSocketSubscriber(await accepted, { formats })[Symbol.asyncIterator]();
    const code = closed(client);
    for (let i = 0; i < 5; i++) client.send("x".repeat(30), { fin: i === 4 });
    expect(isPosthornError(await pull(iterator), "PayloadTooLarge")).toBe(true);
    expect(await code).toBe(1009);
  });

  it("a binary frame on cloudevents.json and a text frame on cloudevents.avro decode by the format", async () => {
    const l = await open();
    l.client.send(Buffer.from(JSON.stringify(shutdownEvent("ws", 3))), { binary: true });
    expect(await nextId(l)).toBe("shutdown-3");

    const { url, accepted } = await serve(webSocketServerOptions(FORMATS));
    const client = await connectWebSocket(url, { formats: [avro], WebSocket });
    const iterator = webSocketSubscriber(await accepted, { formats: FORMATS })[
      Symbol.asyncIterator
    ]();
    client.send("not avro at all");
    const got = (await pull(iterator)) as Delivery;
    expect(got.event).toBeUndefined();
    expect(isPosthornError(got.error)).toBe(true);
    client.close();
  });

  for (const [label, frame] of [
    [
      "a JSON array (a batch: the WebSockets binding has none)",
      `[${JSON.stringify(shutdownEvent("ws", 1))},{"id":"2"}]`,
    ],
    ["a JSON array of valid events", `[${JSON.stringify(shutdownEvent("ws", 1))}]`],
    ["a JSON number", "42"],
    ["a JSON string", '"an event"'],
    ["JSON null", "null"],
    ["an empty object", "{}"],
    ["an event missing source", '{"specversion":"1.0","id":"1","type":"t"}'],
    ["an empty text frame", ""],
  ] as const) {
    it(`${label}: a delivery with a typed error and no event; the connection stays`, async () => {
      const l = await open();
      l.client.send(frame);
      const got = await nextDelivery(l.received, 5000);
      expect(got.event).toBeUndefined();
      expect(["MalformedInput", "InvalidEvent"]).toContain(got.error?.code);
      await webSocketPublisher(l.client, { formats }).publish(shutdownEvent("ws", 9));
      expect(await nextId(l)).toBe("shutdown-9");
    });
  }
});

describe("closing the subscriber", () => {
  it("while a delivery is held and a pull waits: the pull ends, the held delivery still accepts", async () => {
    const l = await open();
    const subscriber = webSocketSubscriber(l.server, { formats });
    const iterator = subscriber[Symbol.asyncIterator]();
    await webSocketPublisher(l.client, { formats }).publish(shutdownEvent("ws", 1));
    const held = (await iterator.next()).value as Delivery;
    const waiting = iterator.next();
    await Promise.all([subscriber.close(), subscriber.close()]);
    expect(await settledWithin(waiting, 2000)).toEqual({
      resolved: { value: undefined, done: true },
    });
    await expect(held.accept()).resolves.toBeUndefined();
  });
});
