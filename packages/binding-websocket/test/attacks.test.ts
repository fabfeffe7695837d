import type { AddressInfo } from "node:net";
import {
  connectWebSocket,
  DEFAULT_MAX_PAYLOAD_BYTES,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import { CloudEvent, type Delivery, type EventFormat, isPosthornError } from "@posthorn/core";
import { avro } from "@posthorn/format-avro";
import { json } from "@posthorn/format-json";
import { protobuf } from "@posthorn/format-protobuf";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { FORMATS } from "./formats.js";

// Named attacks over real ws connections: oversized messages close the connection with 1009 and
// fail iteration with PayloadTooLarge; hostile messages arrive as deliveries with a typed error
// and leave the connection (and Object.prototype) as they were.

const opened: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of opened.splice(0)) await close();
});

async function pair(
  options: {
    serverMaxPayloadBytes?: number;
    clientMaxPayloadBytes?: number;
    protocol?: EventFormat;
  } = {},
): Promise<{ client: WebSocket; server: WebSocket }> {
  const format = options.protocol ?? json;
  const wss = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    ...webSocketServerOptions(FORMATS, {
      ...(options.serverMaxPayloadBytes === undefined
        ? {}
        : { maxPayloadBytes: options.serverMaxPayloadBytes }),
    }),
  });
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const accepted = new Promise<WebSocket>((resolve) => wss.once("connection", resolve));
  const client = await connectWebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, {
    formats: [format],
    WebSocket,
    ...(options.clientMaxPayloadBytes === undefined
      ? {}
      : { maxPayloadBytes: options.clientMaxPayloadBytes }),
  });
  const server = await accepted;
  opened.push(async () => {
    for (const c of wss.clients) c.terminate();
    await new Promise((r) => wss.close(r));
  });
  return { client, server };
}

function closeCode(socket: WebSocket): Promise<number> {
  return new Promise((resolve) => socket.addEventListener("close", (e) => resolve(e.code)));
}

async function failure(iterator: AsyncIterator<Delivery>): Promise<unknown> {
  try {
    const r = await iterator.next();
    return r.done ? "ended" : r.value;
  } catch (err) {
    return err;
  }
}

const event = (size: number) =>
  new CloudEvent({
    specversion: "1.0",
    id: "big",
    source: "/s",
    type: "t",
    data: "x".repeat(size),
  });

describe("attack: oversized WebSocket messages", () => {
  it(`the default limit is ${DEFAULT_MAX_PAYLOAD_BYTES} bytes on servers (ws alone: 100 MiB)`, () => {
    expect(webSocketServerOptions([json]).maxPayload).toBe(DEFAULT_MAX_PAYLOAD_BYTES);
    expect(webSocketServerOptions([json], { maxPayloadBytes: 10 }).maxPayload).toBe(10);
  });

  it("a server past maxPayloadBytes closes the connection with 1009; its subscriber fails with PayloadTooLarge", async () => {
    const { client, server } = await pair({ serverMaxPayloadBytes: 1000 });
    const iterator = webSocketSubscriber(server, { formats: FORMATS })[Symbol.asyncIterator]();
    const code = closeCode(client);
    const publisher = webSocketPublisher(client, { formats: FORMATS });
    await publisher.publish(event(10));
    expect((await iterator.next()).value?.event?.id).toBe("big");
    // At-most-once: the publish resolves once written; the peer refuses it on arrival.
    await publisher.publish(event(2000));
    const err = await failure(iterator);
    expect(isPosthornError(err, "PayloadTooLarge")).toBe(true);
    expect((err as { protocolCode?: unknown }).protocolCode).toBe(1009);
    expect(await code).toBe(1009);
    await expect(publisher.publish(event(10))).rejects.toMatchObject({ code: "ConnectionFailed" });
  });

  it("a client past maxPayloadBytes (connectWebSocket) does the same", async () => {
    const { client, server } = await pair({ clientMaxPayloadBytes: 1000 });
    const iterator = webSocketSubscriber(client, { formats: FORMATS })[Symbol.asyncIterator]();
    const code = closeCode(server);
    await webSocketPublisher(server, { formats: FORMATS }).publish(event(5000));
    expect(isPosthornError(await failure(iterator), "PayloadTooLarge")).toBe(true);
    expect(await code).toBe(1009);
  });

  it("the subscriber's own limit (for sockets it did not configure, e.g. browsers') closes with 1009 too", async () => {
    const { client, server } = await pair();
    const iterator = webSocketSubscriber(server, { formats: FORMATS, maxPayloadBytes: 500 })[
      Symbol.asyncIterator
    ]();
    const code = closeCode(client);
    await webSocketPublisher(client, { formats: FORMATS }).publish(event(1000));
    const err = await failure(iterator);
    expect(isPosthornError(err, "PayloadTooLarge")).toBe(true);
    expect(String((err as Error).message)).toContain("500");
    expect(await code).toBe(1009);
  });
});

describe("a limit raised where the socket is made", () => {
  const MiB = 1024 * 1024;
  for (const side of ["client", "server"] as const) {
    it(`holds for a ${side} subscriber given no maxPayloadBytes of its own (${side === "client" ? "connectWebSocket" : "webSocketServerOptions"})`, async () => {
      const { client, server } = await pair(
        side === "client" ? { clientMaxPayloadBytes: 8 * MiB } : { serverMaxPayloadBytes: 8 * MiB },
      );
      const [receiver, sender] = side === "client" ? [client, server] : [server, client];
      const iterator = webSocketSubscriber(receiver, { formats: FORMATS })[Symbol.asyncIterator]();
      await webSocketPublisher(sender, { formats: FORMATS, maxPayloadBytes: 8 * MiB }).publish(
        event(5 * MiB),
      );
      expect((await iterator.next()).value?.event?.id).toBe("big");
      // The subscriber's own limit, where given, still applies.
      const strict = webSocketSubscriber(receiver, { formats: FORMATS, maxPayloadBytes: 1000 });
      const refused = strict[Symbol.asyncIterator]();
      await webSocketPublisher(sender, { formats: FORMATS }).publish(event(2000));
      expect(isPosthornError(await failure(refused), "PayloadTooLarge")).toBe(true);
    });
  }

  it("leaves the default where the socket's limit was not raised", async () => {
    const { client, server } = await pair();
    const iterator = webSocketSubscriber(server, { formats: FORMATS })[Symbol.asyncIterator]();
    await webSocketPublisher(client, { formats: FORMATS, maxPayloadBytes: 8 * MiB }).publish(
      event(DEFAULT_MAX_PAYLOAD_BYTES),
    );
    expect(isPosthornError(await failure(iterator), "PayloadTooLarge")).toBe(true);
  });
});

describe("attack: hostile messages arrive as deliveries with a typed error", () => {
  const deep = (n: number) => `${"[".repeat(n)}${"]".repeat(n)}`;
  const cases: Array<[string, EventFormat, string | Uint8Array, readonly string[]]> = [
    [
      "deeply nested JSON data",
      json,
      `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":${deep(100_000)}}`,
      ["MalformedInput"],
    ],
    [
      "invalid UTF-8 in a binary frame of cloudevents.json",
      json,
      new Uint8Array([
        ...new TextEncoder().encode('{"specversion":"1.0","id":"'),
        0xc0,
        0xa0,
        0x22,
        0x7d,
      ]),
      ["MalformedInput"],
    ],
    [
      "an attribute repeated in another case (id, ID)",
      json,
      '{"specversion":"1.0","id":"1","ID":"2","source":"/s","type":"t"}',
      ["InvalidEvent", "MalformedInput"],
    ],
    [
      "specversion 0.3",
      json,
      '{"specversion":"0.3","id":"1","source":"/s","type":"t"}',
      ["InvalidEvent", "MalformedInput"],
    ],
    [
      "specversion 2.0",
      json,
      '{"specversion":"2.0","id":"1","source":"/s","type":"t"}',
      ["InvalidEvent", "MalformedInput"],
    ],
    [
      "an Avro map length claiming gigabytes",
      avro,
      new Uint8Array([0xfe, 0xff, 0xff, 0xff, 0x0f, 0x00]),
      ["MalformedInput"],
    ],
    [
      "a Protobuf length field claiming gigabytes",
      protobuf,
      new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x07, 0x31]),
      ["MalformedInput"],
    ],
  ];
  for (const [label, format, frame, codes] of cases) {
    it(`${label}: ${codes.join(" or ")}, and the connection stays open`, async () => {
      const { client, server } = await pair({ protocol: format });
      const iterator = webSocketSubscriber(server, { formats: FORMATS })[Symbol.asyncIterator]();
      client.send(frame);
      const got = (await iterator.next()).value as Delivery;
      expect(got.event).toBeUndefined();
      expect(isPosthornError(got.error)).toBe(true);
      expect(codes).toContain(got.error?.code);
      // The next, valid message still arrives on the same connection.
      await webSocketPublisher(client, { formats: FORMATS }).publish(event(3));
      expect(((await iterator.next()).value as Delivery).event?.id).toBe("big");
      expect(client.readyState).toBe(1);
    });
  }

  it("__proto__, constructor and prototype members pollute nothing", async () => {
    const { client, server } = await pair();
    const iterator = webSocketSubscriber(server, { formats: FORMATS })[Symbol.asyncIterator]();
    const frames = [
      '{"specversion":"1.0","id":"1","source":"/s","type":"t","__proto__":{"polluted":1}}',
      '{"specversion":"1.0","id":"2","source":"/s","type":"t","constructor":"c","prototype":"p"}',
      '{"specversion":"1.0","id":"3","source":"/s","type":"t","data":{"__proto__":{"polluted":1}}}',
    ];
    for (const f of frames) client.send(f);
    for (let i = 0; i < frames.length; i++) {
      const d = (await iterator.next()).value as Delivery;
      expect(d.event !== undefined || isPosthornError(d.error)).toBe(true);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(Object.prototype)).toEqual([]);
  });

  it("invalid UTF-8 in a text frame: ws closes with 1007 and the subscriber fails with ConnectionFailed", async () => {
    const { client, server } = await pair();
    const iterator = webSocketSubscriber(server, { formats: FORMATS })[Symbol.asyncIterator]();
    const code = closeCode(client);
    // A text frame whose payload is not UTF-8 (RFC 6455 8.1): ws refuses it before decoding.
    client.send(new Uint8Array([0x7b, 0xc0, 0xa0, 0x7d]), {
      binary: false,
    });
    const err = await failure(iterator);
    expect(isPosthornError(err, "ConnectionFailed")).toBe(true);
    expect(await code).toBe(1007);
  });
});
