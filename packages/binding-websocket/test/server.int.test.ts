import { type AddressInfo, createServer, type Socket } from "node:net";
import {
  connectWebSocket,
  negotiatedFormat,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import type { CloudEvent, Delivery, EventFormat, Subscriber } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import {
  type BindingPath,
  countSocketWrites,
  describeBindingConformance,
  vector,
} from "@posthorn/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { FORMATS } from "./formats.js";

/** A ws server on a free port, speaking every format's subprotocol. */
async function startServer(formats: readonly EventFormat[] = FORMATS) {
  const wss = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    ...webSocketServerOptions(formats),
  });
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  const sockets: WebSocket[] = [];
  const waiting: Array<(s: WebSocket) => void> = [];
  wss.on("connection", (socket) => {
    const w = waiting.shift();
    if (w) w(socket);
    else sockets.push(socket);
  });
  const nextConnection = (): Promise<WebSocket> => {
    const s = sockets.shift();
    return s ? Promise.resolve(s) : new Promise((resolve) => waiting.push(resolve));
  };
  const close = async (): Promise<void> => {
    for (const client of wss.clients) client.terminate();
    await new Promise((resolve) => wss.close(resolve));
  };
  return { wss, url, nextConnection, close };
}

interface Link {
  client: WebSocket;
  server: WebSocket;
}

/** Drives one direction of a per-format connection: sender publishes, receiver iterates. */
function harness(direction: "client-to-server" | "server-to-client") {
  let server: Awaited<ReturnType<typeof startServer>>;
  const links = new Map<
    string,
    { link: Link; iterator: AsyncIterator<Delivery>; subscriber: Subscriber }
  >();
  const linkFor = async (format: EventFormat) => {
    const found = links.get(format.name);
    if (found) return found;
    const connecting = server.nextConnection();
    const client = await connectWebSocket(server.url, {
      formats: [format],
      WebSocket,
    });
    const link = { client, server: await connecting };
    const receiving = direction === "client-to-server" ? link.server : link.client;
    const subscriber = webSocketSubscriber(receiving, { formats: FORMATS });
    const entry = { link, subscriber, iterator: subscriber[Symbol.asyncIterator]() };
    links.set(format.name, entry);
    return entry;
  };
  const send = async (events: readonly CloudEvent[], path: BindingPath) => {
    const format = path.format ?? json;
    const { link, iterator } = await linkFor(format);
    const sending = direction === "client-to-server" ? link.client : link.server;
    await webSocketPublisher(sending, { formats: FORMATS }).publish(events);
    const out: CloudEvent[] = [];
    for (let i = 0; i < events.length; i++) {
      const delivery = (await iterator.next()).value as Delivery;
      await delivery.accept();
      if (delivery.error) throw delivery.error;
      out.push(delivery.event as CloudEvent);
    }
    return out;
  };
  return {
    name: `websocket (ws server and client, ${direction})`,
    paths: FORMATS.map((format) => ({ mode: "structured" as const, format })),
    typed: true,
    caseSensitive: true,
    timeoutMs: 10_000,
    async setup() {
      server = await startServer();
    },
    async teardown() {
      for (const { subscriber, link } of links.values()) {
        await subscriber.close();
        link.client.close();
      }
      await server.close();
    },
    roundTrip: async (event: CloudEvent, path: BindingPath) =>
      (await send([event], path))[0] as CloudEvent,
  };
}

describeBindingConformance(harness("client-to-server"));
describeBindingConformance(harness("server-to-client"));

describe("subprotocol negotiation", () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  beforeAll(async () => {
    server = await startServer([json]);
  });
  afterAll(() => server.close());

  it("negotiates the client's first offered subprotocol the server knows", async () => {
    const { avro } = await import("@posthorn/format-avro");
    const socket = await connectWebSocket(server.url, {
      formats: [avro, json],
      WebSocket,
    });
    expect(socket.protocol).toBe("cloudevents.json");
    expect(negotiatedFormat(socket, [avro, json]).name).toBe("json");
    socket.close();
  });
  it("refuses, at the handshake, a client offering no CloudEvents subprotocol, with a clear error", async () => {
    const { protobuf } = await import("@posthorn/format-protobuf");
    const err = await connectWebSocket(server.url, {
      formats: [protobuf],
      WebSocket,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ConnectionFailed", retryable: false });
    expect(String((err as Error).message)).toMatch(/cloudevents\.proto.*400/);
    const plain = new WebSocket(server.url);
    const status = await new Promise<number>((resolve) =>
      plain.on("unexpected-response", (_req, res) => {
        resolve(res.statusCode ?? 0);
        res.resume();
      }),
    );
    expect(status).toBe(400);
  });
  it("refuses to publish or subscribe on a socket without a CloudEvents subprotocol", async () => {
    const raw = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    await new Promise<void>((resolve) => raw.once("listening", () => resolve()));
    const client = new WebSocket(`ws://127.0.0.1:${(raw.address() as AddressInfo).port}`);
    await new Promise((resolve) => client.once("open", resolve));
    expect(() => webSocketPublisher(client, { formats: [json] })).toThrow(/no subprotocol/);
    expect(() => webSocketSubscriber(client, { formats: [json] })).toThrow(/cloudevents\.json/);
    client.close();
    for (const c of raw.clients) c.terminate();
    await new Promise((resolve) => raw.close(resolve));
  });
  it("times out with Timeout against a server that never answers the upgrade, and nothing is thrown afterwards", async () => {
    const held: Socket[] = [];
    const silent = createServer((socket) => void held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const url = `ws://127.0.0.1:${(silent.address() as AddressInfo).port}/`;
    const err = await connectWebSocket(url, { formats: [json], WebSocket, timeoutMs: 200 }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: "Timeout" });
    // ws emits one more error for the socket closed while connecting; unheard, Node threw it
    // (vitest reports it as an unhandled error and fails the run).
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (const socket of held) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  });
  it("fails to connect with ConnectionFailed when nothing listens", async () => {
    const err = await connectWebSocket("ws://127.0.0.1:1", {
      formats: [json],
      WebSocket,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ConnectionFailed" });
  });
});

describe("WebSocket frames and settlement", () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(() => server.close());

  it("sends JSON in text frames and Avro and Protobuf in binary frames", async () => {
    for (const format of FORMATS) {
      const connecting = server.nextConnection();
      const client = await connectWebSocket(server.url, {
        formats: [format],
        WebSocket,
      });
      const peer = await connecting;
      const frame = new Promise<boolean>((resolve) =>
        peer.once("message", (_d, isBinary) => resolve(isBinary)),
      );
      await webSocketPublisher(client, { formats: FORMATS }).publish(vector("typical").event);
      expect(await frame).toBe(!format.text);
      client.close();
    }
  });
  it("accepts as a no-op; release and reject throw NotSupported; bad frames arrive with error", async () => {
    const connecting = server.nextConnection();
    const client = await connectWebSocket(server.url, {
      formats: [json],
      WebSocket,
    });
    const subscriber = webSocketSubscriber(await connecting, { formats: [json] });
    expect(subscriber.capabilities).toMatchObject({ release: "none", reject: "none" });
    const iterator = subscriber[Symbol.asyncIterator]();
    await webSocketPublisher(client, { formats: [json] }).publish([
      vector("minimal").event,
      vector("typical").event,
    ]);
    const first = (await iterator.next()).value as Delivery;
    expect(first.event?.id).toBe(vector("minimal").event.id);
    await expect(first.release()).rejects.toMatchObject({
      code: "NotSupported",
      message: expect.stringContaining("the WebSockets binding has no acknowledgement"),
    });
    await expect(first.reject()).rejects.toMatchObject({
      code: "NotSupported",
      message: expect.stringContaining("no dead-letter path"),
    });
    await first.accept();
    const second = (await iterator.next()).value as Delivery;
    expect(second.event?.type).toBe(vector("typical").event.type);
    client.send("{not json");
    const bad = (await iterator.next()).value as Delivery;
    expect(bad.event).toBeUndefined();
    expect(bad.error?.code).toBe("MalformedInput");
    client.close();
    expect((await iterator.next()).done).toBe(true);
    await subscriber.close();
  });
  it("writes the frames of publishes made in one tick in one system call, and loses none", async () => {
    const connecting = server.nextConnection();
    const client = await connectWebSocket(server.url, {
      formats: [json],
      WebSocket,
    });
    const peer = await connecting;
    const ids: string[] = [];
    const count = 300;
    const arrived = new Promise<void>((resolve) =>
      peer.on("message", (data) => {
        ids.push((JSON.parse(String(data)) as { id: string }).id);
        if (ids.length === count) resolve();
      }),
    );
    const writes = countSocketWrites((client as unknown as { _socket: Socket })._socket);
    try {
      const publisher = webSocketPublisher(client, { formats: [json] });
      const events = Array.from({ length: count }, (_, i) =>
        vector("typical").event.cloneWith({ id: `tick-${i}` }),
      );
      const sent = Promise.all(events.map((e) => publisher.publish(e)));
      await new Promise((resolve) => setImmediate(resolve));
      expect(writes.calls).toBe(1);
      await sent;
      await arrived;
      expect(ids).toEqual(events.map((e) => e.id));
    } finally {
      writes.restore();
      client.close();
    }
  });
  it("fails publish with ConnectionFailed once the socket is closed", async () => {
    const client = await connectWebSocket(server.url, {
      formats: [json],
      WebSocket,
    });
    const publisher = webSocketPublisher(client, { formats: [json] });
    client.close();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await expect(publisher.publish(vector("minimal").event)).rejects.toMatchObject({
      code: "ConnectionFailed",
    });
  });
});
