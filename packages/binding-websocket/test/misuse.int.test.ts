import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import {
  connectWebSocket,
  offeredSubprotocols,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import { CloudEvent, type EventFormat, extensions } from "@posthorn/core";
import { avro } from "@posthorn/format-avro";
import { json } from "@posthorn/format-json";
import { refusedOption } from "@posthorn/testkit";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";

// What a new user gets wrong on the way in, against real servers: each gets a typed error that
// says what to do, not a failed handshake, a TypeError, or a retry that cannot help.

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

/** A ws server speaking `formats`; `upgrades` counts the handshakes it was asked for. */
async function serve(formats: readonly EventFormat[] = [json]) {
  const wss = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    ...webSocketServerOptions(formats),
  });
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const seen = { upgrades: 0 };
  wss.on("headers", () => void seen.upgrades++);
  wss.on("wsClientError", () => void seen.upgrades++);
  stops.push(async () => {
    for (const socket of wss.clients) socket.terminate();
    await new Promise((resolve) => wss.close(resolve));
  });
  return { url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, wss, seen };
}

describe("the formats option", () => {
  it("empty or missing is refused with NotSupported naming formats, before any connection", async () => {
    const { url, seen, wss } = await serve();
    let connections = 0;
    wss.on("connection", () => void connections++);
    for (const [formats, shown] of [
      [[], "an empty list"],
      [undefined, "undefined"],
    ] as const) {
      await expect(
        connectWebSocket(url, { formats: formats as unknown as [], WebSocket }),
      ).rejects.toEqual(refusedOption("formats", shown));
      expect(() => webSocketServerOptions(formats as unknown as [])).toThrow(
        expect.objectContaining({ code: "NotSupported", attribute: "formats" }),
      );
    }
    const socket = await connectWebSocket(url, { formats: [json], WebSocket });
    stops.unshift(async () => socket.terminate());
    for (const make of [webSocketPublisher, webSocketSubscriber]) {
      expect(() => make(socket, { formats: [] })).toThrow(
        refusedOption("formats", "an empty list"),
      );
      expect(() => make(socket, undefined as unknown as { formats: [] })).toThrow(
        expect.objectContaining({ code: "NotSupported", attribute: "formats" }),
      );
    }
    expect(connections).toBe(1);
    expect(seen.upgrades).toBe(1);
  });

  it("two formats of one name (json and json.withRegistry) offer their subprotocol once, and connect", async () => {
    const { url } = await serve();
    const typed = json.withRegistry?.(extensions);
    expect(typed).toBeDefined();
    const formats: EventFormat[] = [json, typed ?? json, avro];
    expect(offeredSubprotocols(formats)).toEqual(["cloudevents.json", "cloudevents.avro"]);
    const socket = await connectWebSocket(url, { formats, WebSocket });
    stops.unshift(async () => socket.terminate());
    expect(socket.protocol).toBe("cloudevents.json");
  });
});

describe("a socket handed over before it opened", () => {
  it("is refused with NotSupported saying it is still connecting and what to do", async () => {
    const { url } = await serve();
    const socket = new WebSocket(url, offeredSubprotocols([json]));
    stops.unshift(async () => socket.terminate());
    for (const make of [webSocketPublisher, webSocketSubscriber]) {
      expect(() => make(socket, { formats: [json] })).toThrow(
        expect.objectContaining({
          code: "NotSupported",
          message: expect.stringMatching(
            /still connecting.*wait for its open event.*connectWebSocket/,
          ),
        }),
      );
    }
    await new Promise((resolve) => socket.once("open", resolve));
    expect(() => webSocketPublisher(socket, { formats: [json] })).not.toThrow();
  });

  it("negotiated for a format this side did not list: the error says to add it", async () => {
    const { url } = await serve([avro]);
    const socket = await connectWebSocket(url, { formats: [avro], WebSocket });
    stops.unshift(async () => socket.terminate());
    expect(() => webSocketSubscriber(socket, { formats: [json] })).toThrow(
      /negotiated subprotocol cloudevents\.avro; add its format to formats, which offers only cloudevents\.json/,
    );
  });
});

describe("connectWebSocket's retryable flag", () => {
  it("is false for a URL the WebSocket constructor refuses: no retry mends it", async () => {
    for (const url of ["localhost:8080", "ftp://127.0.0.1:1/"]) {
      await expect(connectWebSocket(url, { formats: [json], WebSocket })).rejects.toMatchObject({
        code: "ConnectionFailed",
        retryable: false,
      });
    }
  });

  it("is true for 408, 429 and 5xx answers to the upgrade, false for other answers", async () => {
    const server = createServer();
    let status = 0;
    server.on("upgrade", (_request, socket) => {
      socket.end(`HTTP/1.1 ${status} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    stops.push(() => new Promise((resolve) => server.close(() => resolve())));
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
    for (const [code, retryable] of [
      [408, true],
      [429, true],
      [503, true],
      [400, false],
      [403, false],
      [404, false],
      // A plain web page (200) or a redirect ws does not follow answers the same every time.
      [200, false],
      [301, false],
      [502, true],
    ] as const) {
      status = code;
      await expect(connectWebSocket(url, { formats: [json], WebSocket })).rejects.toMatchObject({
        code: "ConnectionFailed",
        retryable,
        message: expect.stringContaining(`Unexpected server response: ${code}`),
      });
    }
  });
});

describe("binaryType changed while subscribed", () => {
  it("a binary frame that arrives as a Blob is a MalformedInput delivery naming binaryType, and the frames after it still come, in order", async () => {
    const { url, wss } = await serve([avro]);
    const accepted = new Promise<WebSocket>((resolve) => wss.once("connection", resolve));
    const socket = await connectWebSocket(url, { formats: [avro], WebSocket });
    stops.unshift(async () => socket.terminate());
    const deliveries = webSocketSubscriber(socket, { formats: [avro] })[Symbol.asyncIterator]();
    const server = await accepted;
    const publisher = webSocketPublisher(server, { formats: [avro] });
    const event = (id: string) =>
      CloudEvent.create({ id, source: "/misuse", type: "com.example.blob", data: { id } });
    // ws (8.18 and later) hands binary data over as a Blob with this, as browsers do by default.
    socket.binaryType = "blob" as WebSocket["binaryType"];
    await publisher.publish(event("as-blob"));
    const first = await deliveries.next();
    expect(first.value?.event).toBeUndefined();
    expect(first.value?.error).toMatchObject({ code: "MalformedInput" });
    expect(first.value?.error?.message).toContain("binaryType");
    socket.binaryType = "nodebuffer";
    await publisher.publish(event("after"));
    expect((await deliveries.next()).value?.event?.id).toBe("after");
  });
});
