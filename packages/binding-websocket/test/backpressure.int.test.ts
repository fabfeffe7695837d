import { type ChildProcess, spawn } from "node:child_process";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import {
  connectWebSocket,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import type { Delivery } from "@posthorn/core";
import { nextDelivery, settledWithin } from "@posthorn/testkit";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { bigEvent, formats } from "./link.js";

// The heartbeat against flow control, over real ws connections: a consumer that stops reading
// because its application holds deliveries is alive, and neither side may take it for gone; a
// peer whose process stopped is not, and is still given up.

const HEARTBEAT_MS = 200;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const servers: WebSocketServer[] = [];
const sockets: WebSocket[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
  for (const socket of sockets.splice(0)) socket.terminate();
  for (const wss of servers.splice(0)) {
    for (const socket of wss.clients) socket.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});

/** A ws server on a free port, and its next connection. */
async function serve() {
  const wss = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    ...webSocketServerOptions(formats),
  });
  servers.push(wss);
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const accepted = new Promise<WebSocket>((resolve) => wss.once("connection", resolve));
  return { url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, accepted };
}

/** A connection whose two sockets both beat every HEARTBEAT_MS. */
async function connection() {
  const { url, accepted } = await serve();
  const client = await connectWebSocket(url, { formats, WebSocket, heartbeatMs: HEARTBEAT_MS });
  sockets.push(client);
  return { client, server: await accepted };
}

function closed(socket: WebSocket): Promise<number> {
  if (socket.readyState === WebSocket.CLOSED) return Promise.resolve(-1);
  return new Promise((resolve) => socket.once("close", (code) => resolve(code)));
}

describe("heartbeat under flow control", () => {
  for (const consumer of ["client", "server"] as const) {
    it(`keeps a ${consumer} that holds its deliveries for six intervals, and delivers every event once it pulls`, {
      timeout: 15_000,
    }, async () => {
      const { client, server } = await connection();
      const [reader, writer] = consumer === "client" ? [client, server] : [server, client];
      const publisher = webSocketPublisher(writer, { formats, heartbeatMs: HEARTBEAT_MS });
      const subscriber = webSocketSubscriber(reader, {
        formats,
        heartbeatMs: HEARTBEAT_MS,
        maxPending: 4,
      });
      const iterator = subscriber[Symbol.asyncIterator]();
      // 16 MiB: more than the kernels hold, so the reader pauses and the writer's frames back up.
      const count = 64;
      const publishes = Array.from({ length: count }, (_, i) =>
        publisher.publish(bigEvent(`held-${i}`, 256 * 1024)),
      );
      let pongs = 0;
      writer.on("pong", () => pongs++);
      await sleep(HEARTBEAT_MS);
      expect(reader.isPaused).toBe(true);
      expect(writer.bufferedAmount).toBeGreaterThan(0);
      // The application holds its deliveries for six intervals: no byte moves either way but
      // the reader's word that it lives.
      await sleep(5 * HEARTBEAT_MS);
      expect(reader.isPaused).toBe(true);
      expect([client.readyState, server.readyState]).toEqual([WebSocket.OPEN, WebSocket.OPEN]);
      expect(pongs).toBeGreaterThanOrEqual(5);
      for (let i = 0; i < count; i++) {
        expect((await nextDelivery(iterator)).event?.id).toBe(`held-${i}`);
      }
      expect(await settledWithin(Promise.all(publishes), 2000)).toEqual({
        resolved: publishes.map(() => undefined),
      });
      expect(await settledWithin(publisher.close(), 2000)).toEqual({ resolved: undefined });
      // A clean close ends the iteration: no ConnectionFailed on either side.
      const writerSaw = closed(writer);
      reader.close(1000);
      expect(await writerSaw).toBe(1000);
      expect(await settledWithin(iterator.next(), 2000)).toEqual({
        resolved: { value: undefined, done: true },
      });
    });
  }

  it("keeps a plain ws reader that takes the publisher's bytes slowly, its pongs late behind them", {
    timeout: 20_000,
  }, async () => {
    // Twice the others' interval, the same proportions: on a loaded machine a timer 100 ms late
    // left a 200 ms interval with no visible progress at all.
    const interval = 2 * HEARTBEAT_MS;
    const { url, accepted } = await serve();
    // Not Posthorn: it answers pings (ws does), but only when it reads them.
    const client = new WebSocket(url, ["cloudevents.json"]);
    sockets.push(client);
    await new Promise((resolve) => client.once("open", resolve));
    const server = await accepted;
    const received: string[] = [];
    const count = 24;
    client.on("message", (data) => {
      received.push(JSON.parse(String(data)).id);
      // Half an interval per 1 MiB for the first 16: the pings wait behind about 4 MiB of frames
      // in the two kernels, two intervals and more; then it reads at full speed.
      if (received.length < 16) {
        client.pause();
        setTimeout(() => client.resume(), interval / 2);
      }
    });
    const publisher = webSocketPublisher(server, { formats, heartbeatMs: interval });
    const started = Date.now();
    for (let i = 0; i < count; i++) {
      // One at a time: what waits in ws is the frame being written, and each that is
      // finished shows the peer took it.
      await publisher.publish(bigEvent(`slow-${i}`, 1024 * 1024));
    }
    const taken = Date.now() - started;
    await expect.poll(() => received.length, { timeout: 2000 }).toBe(count);
    expect(received).toEqual(Array.from({ length: count }, (_, i) => `slow-${i}`));
    // Long enough that a heartbeat counting pongs alone would have given it up.
    expect(taken).toBeGreaterThan(4 * interval);
    expect([client.readyState, server.readyState]).toEqual([WebSocket.OPEN, WebSocket.OPEN]);
  });
});

describe("a socket its subscriber holds paused, closed by the application", () => {
  for (const consumer of ["client", "server"] as const) {
    it(`completes the closing handshake at once on the ${consumer}, delivers what was in flight, and ends iteration cleanly`, {
      timeout: 15_000,
    }, async () => {
      const { client, server } = await connection();
      const [reader, writer] = consumer === "client" ? [client, server] : [server, client];
      const publisher = webSocketPublisher(writer, { formats });
      const subscriber = webSocketSubscriber(reader, { formats, maxPending: 4 });
      const iterator = subscriber[Symbol.asyncIterator]();
      // 4 MiB: the reader pauses after 4, and the rest wait in the kernels and the writer's ws.
      const count = 64;
      const publishes = Array.from({ length: count }, (_, i) =>
        publisher.publish(bigEvent(`closing-${i}`, 64 * 1024)),
      );
      await expect.poll(() => reader.isPaused, { timeout: 2000 }).toBe(true);
      const readerClosed = closed(reader);
      const started = Date.now();
      reader.close();
      // Before, the peer's close frame waited unread behind the frames: ws gave up after its
      // close timeout (30 s) with 1006, and the subscriber failed with ConnectionFailed.
      expect(await settledWithin(readerClosed, 5000)).toEqual({ resolved: 1005 });
      expect(Date.now() - started).toBeLessThan(2000);
      // Every frame the writer sent before it saw the close frame arrives, then a clean end.
      for (let i = 0; i < count; i++) {
        expect((await nextDelivery(iterator)).event?.id).toBe(`closing-${i}`);
      }
      expect(await settledWithin(iterator.next(), 2000)).toEqual({
        resolved: { value: undefined, done: true },
      });
      expect(await settledWithin(Promise.all(publishes), 2000)).toEqual({
        resolved: publishes.map(() => undefined),
      });
    });
  }
});

describe("a close the peer starts while this side's subscriber holds the socket paused", () => {
  /** ws's client, giving up on a closing handshake after 1 s (ws's closeTimeout, default 30 s). */
  class QuickClose extends WebSocket {
    constructor(url: string, protocols?: string | string[], options?: object) {
      // ws takes closeTimeout (8.19 and later); @types/ws does not list it yet.
      super(url, protocols, { ...options, closeTimeout: 1000 } as WebSocket.ClientOptions);
    }
  }

  async function peerCloses(holdMs: number) {
    const { url, accepted } = await serve();
    const client = await connectWebSocket(url, {
      formats,
      WebSocket: QuickClose as unknown as typeof WebSocket,
    });
    sockets.push(client);
    const server = await accepted;
    const iterator = webSocketSubscriber(server, { formats, maxPending: 4 })[
      Symbol.asyncIterator
    ]();
    const publisher = webSocketPublisher(client, { formats });
    const count = 64;
    const publishes = Array.from({ length: count }, (_, i) =>
      publisher.publish(bigEvent(`peer-close-${i}`, 64 * 1024)).then(
        () => "resolved",
        (err: { code?: string }) => err.code,
      ),
    );
    await expect.poll(() => server.isPaused, { timeout: 2000 }).toBe(true);
    const clientClosed = closed(client);
    client.close();
    // The application holds its deliveries this long, then pulls everything.
    await sleep(holdMs);
    const ids: (string | undefined)[] = [];
    let end: unknown;
    try {
      for (;;) {
        const next = await settledWithin(iterator.next(), 5000);
        if (typeof next !== "object") throw new Error("neither a delivery nor an end within 5 s");
        if ("rejected" in next) throw next.rejected;
        const result = next.resolved as IteratorResult<Delivery>;
        if (result.done) break;
        ids.push(result.value.event?.id);
      }
    } catch (err) {
      end = err;
    }
    return { count, ids, end, client: await clientClosed, publishes: await Promise.all(publishes) };
  }

  it("completes cleanly when the application pulls within the peer's close timeout", {
    timeout: 15_000,
  }, async () => {
    const r = await peerCloses(100);
    expect(r.client).toBe(1005);
    expect(r.ids).toHaveLength(r.count);
    expect(r.end).toBeUndefined();
    expect(r.publishes.every((p) => p === "resolved")).toBe(true);
  });

  it("held past it, the peer gives up with 1006; this side gets what reached it, then 1006 unless the close frame had too (docs/bindings/websocket.md)", {
    timeout: 15_000,
  }, async () => {
    const r = await peerCloses(2000);
    // The peer's close frame waited unread behind its frames: no handshake within its 1 s.
    expect(r.client).toBe(1006);
    // What reached this side's kernel comes first, in order.
    expect(r.ids).toEqual(r.ids.map((_, i) => `peer-close-${i}`));
    if (r.ids.length < r.count) {
      // Usually (4 runs of 5 in the probe: 58 of 64): the peer gave up with frames unwritten,
      // which are lost, and its publishes that shared their write fail.
      expect(r.end).toMatchObject({ code: "ConnectionFailed", protocolCode: 1006 });
      expect(r.publishes).toContain("ConnectionFailed");
    } else {
      // Every frame and the close frame were in this side's kernel when the peer gave up: read
      // at last, they end iteration cleanly, though the peer saw 1006.
      expect(r.end).toBeUndefined();
    }
  });
});

describe("the close() a paused socket is given", () => {
  it("is put on once however often the socket pauses, adds no listener, and is gone once the socket closed", {
    timeout: 15_000,
  }, async () => {
    const { client, server } = await connection();
    const publisher = webSocketPublisher(client, { formats });
    const subscriber = webSocketSubscriber(server, { formats, maxPending: 2 });
    const iterator = subscriber[Symbol.asyncIterator]();
    const listeners = () =>
      server.eventNames().map((name) => `${String(name)}:${server.listenerCount(name)}`);
    let wrapped: unknown;
    let counted: string[] | undefined;
    // Three rounds of pause and resume: 2 events pause the socket, pulling them resumes it.
    for (let round = 0; round < 3; round++) {
      await publisher.publish([bigEvent(`r${round}-a`, 64), bigEvent(`r${round}-b`, 64)]);
      await expect.poll(() => server.isPaused, { timeout: 2000 }).toBe(true);
      expect(Object.hasOwn(server, "close")).toBe(true);
      wrapped ??= server.close;
      expect(server.close).toBe(wrapped);
      counted ??= listeners();
      expect(listeners()).toEqual(counted);
      await nextDelivery(iterator);
      await nextDelivery(iterator);
      expect(server.isPaused).toBe(false);
    }
    const serverClosed = closed(server);
    // Twice: the second is ws's no-op on a closing socket.
    server.close();
    server.close();
    expect(await settledWithin(serverClosed, 5000)).toEqual({ resolved: 1005 });
    // Before, the wrapper stayed on the socket for good.
    expect(Object.hasOwn(server, "close")).toBe(false);
    expect(server.close).toBe(WebSocket.prototype.close);
    server.close();
    expect(server.readyState).toBe(WebSocket.CLOSED);
  });
});

const peerScript = fileURLToPath(new URL("./fixtures/stoppable-peer.ts", import.meta.url));

/** Starts a Posthorn client in its own process, connected to a server here. */
async function stoppablePeer(mode: "hold" | "idle") {
  const { url, accepted } = await serve();
  const child = spawn(
    process.execPath,
    ["--import", "tsx", peerScript, url, `${HEARTBEAT_MS}`, mode],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      if (String(chunk).includes("ready")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`the peer exited with ${code}`)));
  });
  return { child, server: await accepted };
}

describe("heartbeat against a peer whose process stopped (SIGSTOP)", () => {
  it("gives up a consumer that held its deliveries once its process stops, failing the publishes waiting on it", {
    timeout: 15_000,
  }, async () => {
    const { child, server } = await stoppablePeer("hold");
    const publisher = webSocketPublisher(server, { formats, heartbeatMs: HEARTBEAT_MS });
    const gone = closed(server);
    let failure: unknown;
    const publishing = (async () => {
      for (let i = 0; ; i++) await publisher.publish(bigEvent(`stop-${i}`, 1024 * 1024));
    })().catch((err: unknown) => {
      failure = err;
    });
    // Held for five intervals while its process runs: alive.
    await sleep(5 * HEARTBEAT_MS);
    expect(server.readyState).toBe(WebSocket.OPEN);
    expect(server.bufferedAmount).toBeGreaterThan(0);
    expect(failure).toBeUndefined();
    const stopped = Date.now();
    child.kill("SIGSTOP");
    expect(await settledWithin(gone, 3000)).toEqual({ resolved: 1006 });
    const after = Date.now() - stopped;
    // The last word it sent may arrive up to half an interval after it stopped; then one interval
    // with a ping waiting, and the verdict at the next tick.
    expect(after).toBeLessThan(3 * HEARTBEAT_MS + 400);
    await publishing;
    expect(failure).toMatchObject({ code: "ConnectionFailed", retryable: true });
    expect(String((failure as Error).message)).toMatch(
      /no ping within heartbeatMs \(200 ms\).*nor took any of the \d+ bytes waiting for it/,
    );
  });

  it("gives up an idle peer once its process stops: the subscriber fails with ConnectionFailed", {
    timeout: 15_000,
  }, async () => {
    const { child, server } = await stoppablePeer("idle");
    const iterator = webSocketSubscriber(server, { formats, heartbeatMs: HEARTBEAT_MS })[
      Symbol.asyncIterator
    ]();
    await sleep(3 * HEARTBEAT_MS);
    expect(server.readyState).toBe(WebSocket.OPEN);
    const stopped = Date.now();
    child.kill("SIGSTOP");
    const outcome = await settledWithin(iterator.next(), 3000);
    expect(outcome).toMatchObject({ rejected: { code: "ConnectionFailed", retryable: true } });
    expect(String((outcome as { rejected: Error }).rejected.message)).toMatch(
      /no ping within heartbeatMs \(200 ms\) and sent nothing else:/,
    );
    expect(Date.now() - stopped).toBeLessThan(2 * HEARTBEAT_MS + 400);
  });
});
