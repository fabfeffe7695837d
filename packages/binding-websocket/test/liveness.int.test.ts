import type { AddressInfo } from "node:net";
import {
  connectWebSocket,
  DEFAULT_HEARTBEAT_MS,
  type WebSocketEventLike,
  type WebSocketLike,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import type { Delivery } from "@posthorn/core";
import { nextDelivery, settledWithin, shutdownEvent } from "@posthorn/testkit";
import { afterEach, describe, expect, it, vi } from "vitest";
import WebSocket, { type ServerOptions, WebSocketServer } from "ws";
import { bigEvent, congest, formats, type Link, link, nextId } from "./link.js";

// How a connection's loss is told from its clean end, over real ws connections: the heartbeat
// notices a peer that went silent without closing anything, and a subscriber's iteration fails
// with ConnectionFailed when the connection was lost, where it ends quietly on a clean close.

const links: Link[] = [];
const servers: WebSocketServer[] = [];
const open = async (): Promise<Link> => {
  const l = await link();
  links.push(l);
  return l;
};

afterEach(async () => {
  vi.restoreAllMocks();
  for (const l of links.splice(0)) await l.stop();
  for (const wss of servers.splice(0)) {
    for (const socket of wss.clients) socket.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});

/** A ws server on a free port with these options, its next connection, and its pings heard. */
async function serve(options: ServerOptions = {}) {
  const wss = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    ...webSocketServerOptions(formats),
    ...options,
  });
  servers.push(wss);
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const heard = { pings: 0 };
  const accepted = new Promise<WebSocket>((resolve) =>
    wss.once("connection", (socket) => {
      socket.on("ping", () => heard.pings++);
      resolve(socket);
    }),
  );
  return { url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, accepted, heard };
}

function closed(socket: WebSocket): Promise<number> {
  if (socket.readyState === WebSocket.CLOSED) return Promise.resolve(-1);
  return new Promise((resolve) => socket.once("close", (code) => resolve(code)));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How the next pull of `iterator` settles, and how long after `since` it did. */
async function pullOutcome(iterator: AsyncIterator<Delivery>, since: number, ms = 3000) {
  const outcome = await settledWithin(iterator.next(), ms);
  return { outcome, after: Date.now() - since };
}

const HEARTBEAT_MS = 150;
// Detected within two intervals (a ping, then a tick with nothing heard), give or take timers.
const DETECTED_BY = 2 * HEARTBEAT_MS + 300;

describe("heartbeat (heartbeatMs)", () => {
  it("connectWebSocket's socket gives up on a server that stops answering pings within about two intervals: its subscriber fails with ConnectionFailed, and so does a later publish", async () => {
    const { url, accepted, heard } = await serve({ autoPong: false });
    const client = await connectWebSocket(url, { formats, WebSocket, heartbeatMs: HEARTBEAT_MS });
    const server = await accepted;
    const started = Date.now();
    const serverSaw = closed(server);
    const iterator = webSocketSubscriber(client, { formats })[Symbol.asyncIterator]();
    const { outcome, after } = await pullOutcome(iterator, started);
    expect(outcome).toMatchObject({
      rejected: { name: "PosthornError", code: "ConnectionFailed", retryable: true },
    });
    expect(String((outcome as { rejected: Error }).rejected.message)).toMatch(
      /no ping within heartbeatMs \(150 ms\)/,
    );
    // Not before a ping could have been answered, and not much after the second tick.
    expect(after).toBeGreaterThanOrEqual(HEARTBEAT_MS - 50);
    expect(after).toBeLessThan(DETECTED_BY);
    expect(heard.pings).toBeGreaterThanOrEqual(1);
    expect(client.readyState).toBe(WebSocket.CLOSED);
    // Terminated, not closed with a handshake: the server sees the TCP connection go.
    expect(await serverSaw).toBe(1006);
    const late = await webSocketPublisher(client, { formats })
      .publish(shutdownEvent("ws", 1))
      .catch((e: unknown) => e);
    expect(late).toMatchObject({ code: "ConnectionFailed", retryable: true });
    expect(String((late as Error).message)).toMatch(/not open: .*no ping within heartbeatMs/);
  });

  it("a subscriber on a WebSocketServer's socket gives up on a client that stops answering pings", async () => {
    const { url, accepted } = await serve();
    const client = new WebSocket(url, ["cloudevents.json"], { autoPong: false });
    await new Promise((resolve) => client.once("open", resolve));
    const clientSaw = closed(client);
    const server = await accepted;
    const started = Date.now();
    const iterator = webSocketSubscriber(server, { formats, heartbeatMs: HEARTBEAT_MS })[
      Symbol.asyncIterator
    ]();
    const { outcome, after } = await pullOutcome(iterator, started);
    expect(outcome).toMatchObject({ rejected: { code: "ConnectionFailed", retryable: true } });
    expect(after).toBeGreaterThanOrEqual(2 * HEARTBEAT_MS - 50);
    expect(after).toBeLessThan(DETECTED_BY);
    expect(await clientSaw).toBe(1006);
  });

  it("publishes waiting in ws's buffers when the heartbeat gives up fail with ConnectionFailed naming it, and close() resolves", {
    timeout: 20_000,
  }, async () => {
    const l = await open();
    // The link's client came with the default heartbeat: a publisher's own heartbeatMs sets it
    // anew.
    const publisher = webSocketPublisher(l.client, { formats, heartbeatMs: HEARTBEAT_MS });
    // The server stops reading: it takes neither the frames nor the pings any more. What is
    // published next waits in ws's buffers behind the backlog.
    const backlog = await congest(l, (e) => publisher.publish(e));
    const gone = closed(l.client);
    const started = Date.now();
    const held = [1, 2, 3].map((i) => publisher.publish(shutdownEvent("ws", i)));
    const outcomes = await Promise.allSettled(held);
    const after = Date.now() - started;
    for (const o of outcomes) {
      expect(o).toMatchObject({ status: "rejected", reason: { code: "ConnectionFailed" } });
      expect(String((o as PromiseRejectedResult).reason.message)).toMatch(
        /no ping within heartbeatMs/,
      );
    }
    expect(after).toBeLessThan(DETECTED_BY);
    expect(await gone).toBe(1006);
    // The backlog's frames settle too, written or failed: nothing is left pending.
    expect(await settledWithin(Promise.allSettled(backlog), 1000)).not.toBe("pending");
    expect(await settledWithin(publisher.close(), 1000)).toEqual({ resolved: undefined });
  });

  it("keeps a connection whose peer answers the pings, over many intervals", async () => {
    const { url, accepted, heard } = await serve();
    const client = await connectWebSocket(url, { formats, WebSocket, heartbeatMs: 100 });
    const server = await accepted;
    const iterator = webSocketSubscriber(server, { formats })[Symbol.asyncIterator]();
    await sleep(800);
    expect(heard.pings).toBeGreaterThanOrEqual(5);
    expect(client.readyState).toBe(WebSocket.OPEN);
    await webSocketPublisher(client, { formats }).publish(shutdownEvent("ws", 1));
    expect((await nextDelivery(iterator)).event?.id).toBe("shutdown-1");
    client.close(1000);
  });

  it("counts any frame from the peer as a sign of life, not just a pong", async () => {
    const { url, accepted } = await serve({ autoPong: false });
    const client = await connectWebSocket(url, { formats, WebSocket, heartbeatMs: 100 });
    const server = await accepted;
    // The server answers no ping, but keeps talking.
    const talking = setInterval(() => server.send(JSON.stringify(shutdownEvent("ws", 0))), 20);
    try {
      const iterator = webSocketSubscriber(client, { formats })[Symbol.asyncIterator]();
      await sleep(600);
      expect(client.readyState).toBe(WebSocket.OPEN);
      expect((await nextDelivery(iterator)).event?.id).toBe("shutdown-0");
    } finally {
      clearInterval(talking);
    }
    // Once it falls silent, the heartbeat notices.
    expect(await settledWithin(closed(client), 1000)).toEqual({ resolved: 1006 });
  });

  it("takes no silence for a lost peer while the subscriber has paused the socket (flow control)", async () => {
    const { url, accepted } = await serve();
    const client = await connectWebSocket(url, { formats, WebSocket, heartbeatMs: 100 });
    const server = await accepted;
    const subscriber = webSocketSubscriber(client, { formats, maxPending: 2 });
    const iterator = subscriber[Symbol.asyncIterator]();
    // 16 MiB: more than the client's stream buffer and both kernels' hold, so once paused the
    // client reads nothing more, the server's pongs included.
    const count = 64;
    for (let i = 0; i < count; i++) server.send(JSON.stringify(bigEvent(`big-${i}`, 256 * 1024)));
    await sleep(100);
    expect(client.isPaused).toBe(true);
    expect(server.bufferedAmount).toBeGreaterThan(0);
    // Silence for several intervals.
    await sleep(600);
    expect(client.readyState).toBe(WebSocket.OPEN);
    for (let i = 0; i < count; i++) {
      expect((await nextDelivery(iterator)).event?.id).toBe(`big-${i}`);
    }
    await subscriber.close();
    client.close(1000);
  });

  it("keeps a paused side whose heartbeatMs is set anew: its unsolicited pongs go on, so the peer does not give it up", async () => {
    const { url, accepted } = await serve();
    // The peer's interval is no shorter than half the paused side's, before and after: kept.
    const client = await connectWebSocket(url, { formats, WebSocket, heartbeatMs: 500 });
    const server = await accepted;
    webSocketPublisher(server, { formats, heartbeatMs: 300 });
    const lost = closed(server);
    const subscriber = webSocketSubscriber(client, { formats, maxPending: 1 });
    server.send(JSON.stringify(shutdownEvent("websocket", 1)));
    server.send(JSON.stringify(shutdownEvent("websocket", 2)));
    await sleep(200);
    expect(client.isPaused).toBe(true);
    // A later publisher with another heartbeatMs sets the socket's heartbeat anew while it is paused.
    webSocketPublisher(client, { formats, heartbeatMs: 550 });
    // Before, no pong went out until the first beat of the new interval: the server, pinging every
    // 300 ms and hearing nothing, terminated the connection (1006) within about a second.
    expect(await settledWithin(lost, 2500)).toBe("pending");
    expect(client.readyState).toBe(WebSocket.OPEN);
    const iterator = subscriber[Symbol.asyncIterator]();
    expect((await nextDelivery(iterator)).event?.id).toBe(shutdownEvent("websocket", 1).id);
    expect((await nextDelivery(iterator)).event?.id).toBe(shutdownEvent("websocket", 2).id);
    await subscriber.close();
    client.close(1000);
  });

  it("sends no ping with heartbeatMs 0 or Infinity (neither becomes a timer firing at once), and a later heartbeatMs 0 stops one", async () => {
    for (const heartbeatMs of [0, Number.POSITIVE_INFINITY, 2 ** 31]) {
      const { url, accepted, heard } = await serve();
      const client = await connectWebSocket(url, { formats, WebSocket, heartbeatMs });
      const server = await accepted;
      webSocketSubscriber(server, { formats, heartbeatMs });
      await sleep(200);
      expect({ heartbeatMs, pings: heard.pings }).toEqual({ heartbeatMs, pings: 0 });
      expect(client.readyState).toBe(WebSocket.OPEN);
      client.close(1000);
    }
    const { url, accepted, heard } = await serve();
    const client = await connectWebSocket(url, { formats, WebSocket, heartbeatMs: 100 });
    await accepted;
    await sleep(250);
    expect(heard.pings).toBeGreaterThan(0);
    webSocketPublisher(client, { formats, heartbeatMs: 0 });
    // A ping sent just before may still be on its way to the server.
    await sleep(30);
    const before = heard.pings;
    await sleep(300);
    expect(heard.pings).toBe(before);
    client.close(1000);
  });

  it("beats every DEFAULT_HEARTBEAT_MS (30 s) on connectWebSocket's sockets and a server's, by default", async () => {
    expect(DEFAULT_HEARTBEAT_MS).toBe(30_000);
    const setInterval = vi.spyOn(globalThis, "setInterval");
    const { url, accepted } = await serve();
    const client = await connectWebSocket(url, { formats, WebSocket });
    const beats = () => setInterval.mock.calls.filter((call) => call[1] === DEFAULT_HEARTBEAT_MS);
    expect(beats()).toHaveLength(1);
    const server = await accepted;
    webSocketPublisher(server, { formats });
    expect(beats()).toHaveLength(2);
    // One heartbeat per socket, however many publishers and subscribers it has, and the same
    // interval given again does not start it over.
    webSocketSubscriber(server, { formats });
    webSocketPublisher(client, { formats });
    webSocketPublisher(client, { formats, heartbeatMs: DEFAULT_HEARTBEAT_MS });
    expect(beats()).toHaveLength(2);
    client.close(1000);
  });

  it("runs on an unref'd timer, cleared when the socket closes", async () => {
    const setInterval = vi.spyOn(globalThis, "setInterval");
    const clearInterval = vi.spyOn(globalThis, "clearInterval");
    const { url } = await serve();
    const client = await connectWebSocket(url, { formats, WebSocket, heartbeatMs: 1234 });
    const made = setInterval.mock.calls.findIndex((call) => call[1] === 1234);
    expect(made).toBeGreaterThanOrEqual(0);
    const timer = setInterval.mock.results[made]?.value as NodeJS.Timeout;
    // It holds no process open.
    expect(timer.hasRef()).toBe(false);
    expect(clearInterval).not.toHaveBeenCalledWith(timer);
    const gone = closed(client);
    client.close(1000);
    await gone;
    expect(clearInterval).toHaveBeenCalledWith(timer);
  });
});

/**
 * A real ws socket seen only through the browser's API (no `on`, no `ping`): what the binding
 * does with a browser's `WebSocket`, over a real connection.
 */
function browserView(socket: WebSocket): WebSocketLike {
  return {
    get readyState() {
      return socket.readyState;
    },
    get bufferedAmount() {
      return socket.bufferedAmount;
    },
    get protocol() {
      return socket.protocol;
    },
    get binaryType() {
      return socket.binaryType;
    },
    set binaryType(type: string) {
      socket.binaryType = type as "arraybuffer";
    },
    send: (data) => socket.send(data),
    close: (code, reason) => socket.close(code, reason),
    addEventListener: (type, listener) =>
      socket.addEventListener(type as "close", listener as (event: WebSocketEventLike) => void),
    removeEventListener: (type, listener) =>
      socket.removeEventListener(type as "close", listener as (event: WebSocketEventLike) => void),
  };
}

describe("how a subscriber's iteration ends", () => {
  it("ends cleanly when the peer closes with 1000, 1001, or a closing handshake without a code (1005)", async () => {
    for (const code of [1000, 1001, undefined]) {
      const l = await open();
      const seen = closed(l.server);
      l.client.close(code);
      expect(await seen).toBe(code ?? 1005);
      expect(await settledWithin(l.received.next(), 2000)).toEqual({
        resolved: { value: undefined, done: true },
      });
    }
  });

  it("fails with ConnectionFailed (retryable, code 1006) when the connection drops without a closing handshake, after what had arrived", async () => {
    const l = await open();
    await webSocketPublisher(l.client, { formats }).publish(shutdownEvent("ws", 1));
    // Delivered before the drop is still delivered.
    expect(await nextId(l)).toBe("shutdown-1");
    l.client.terminate();
    const err = await l.received.next().catch((e: unknown) => e);
    expect(err).toMatchObject({
      name: "PosthornError",
      code: "ConnectionFailed",
      retryable: true,
      protocolCode: 1006,
    });
    expect(String((err as Error).message)).toMatch(/1006.*no closing handshake/);
  });

  it("fails with ConnectionFailed naming any other close code and its reason", async () => {
    for (const [code, pattern] of [
      [1011, /closed with 1011 \(internal error\): "database down"/],
      [1008, /closed with 1008 \(policy violation\): "database down"/],
      [4000, /closed with 4000: "database down"/],
    ] as const) {
      const l = await open();
      l.client.close(code, "database down");
      const err = await l.received.next().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "ConnectionFailed", retryable: true, protocolCode: code });
      expect(String((err as Error).message)).toMatch(pattern);
    }
  });

  it("does the same on a socket seen through the browser's API (CloseEvent codes)", async () => {
    for (const [how, expected] of [
      ["close 1000", { resolved: { value: undefined, done: true } }],
      ["terminate", { rejected: { code: "ConnectionFailed", protocolCode: 1006 } }],
    ] as const) {
      const { url, accepted } = await serve();
      const client = await connectWebSocket(url, { formats, WebSocket });
      const server = await accepted;
      const iterator = webSocketSubscriber(browserView(client), { formats })[
        Symbol.asyncIterator
      ]();
      await webSocketPublisher(server, { formats }).publish(shutdownEvent("ws", 1));
      expect((await nextDelivery(iterator)).event?.id).toBe("shutdown-1");
      if (how === "terminate") server.terminate();
      else server.close(1000);
      expect(await settledWithin(iterator.next(), 2000)).toMatchObject(expected);
    }
  });
});
