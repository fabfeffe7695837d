import { spawn } from "node:child_process";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { webSocketPublisher, webSocketServerOptions } from "@posthorn/binding-websocket";
import { CloudEvent, type EventFormat } from "@posthorn/core";
import { avro } from "@posthorn/format-avro";
import { json } from "@posthorn/format-json";
import { afterEach, describe, expect, it } from "vitest";
import { type ServerOptions, type WebSocket, WebSocketServer } from "ws";

// The browser path (a socket without ws's EventEmitter API) on a real WHATWG WebSocket: Node's
// own, in a child process, since Node 20 has it only behind a flag. It follows the same
// specification as browsers' (close() takes only 1000 and 3000-4999, binary data as ArrayBuffer).

const peer = fileURLToPath(new URL("./fixtures/whatwg-peer.ts", import.meta.url));
const flags = "WebSocket" in globalThis ? [] : ["--experimental-websocket"];
const servers: WebSocketServer[] = [];
afterEach(async () => {
  for (const wss of servers.splice(0)) {
    for (const socket of wss.clients) socket.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});

const event = (id: string, size: number) =>
  new CloudEvent({ specversion: "1.0", id, source: "/s", type: "t", data: "x".repeat(size) });

/** Runs the WHATWG peer against a server here; `serve` publishes to it once it is connected. */
async function runPeer(
  format: EventFormat,
  maxPayloadBytes: number,
  serve: (socket: WebSocket) => Promise<void>,
  serverOptions: ServerOptions = webSocketServerOptions([json, avro]),
  offerAlso: string[] = [],
): Promise<{ lines: Record<string, unknown>[]; exitCode: number | null; serverClose: number }> {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1", ...serverOptions });
  servers.push(wss);
  await once(wss, "listening");
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  const child = spawn(
    process.execPath,
    [...flags, "--import", "tsx", peer, url, format.name, String(maxPayloadBytes), ...offerAlso],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk;
  });
  const [socket] = (await once(wss, "connection")) as [WebSocket];
  const serverClose = new Promise<number>((resolve) => socket.once("close", resolve));
  await serve(socket);
  const [exitCode] = (await once(child, "exit")) as [number | null];
  const lines = out
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { lines, exitCode, serverClose: await serverClose };
}

describe("connectWebSocket on a WHATWG WebSocket", () => {
  it("a server that picks no subprotocol is a failure no retry mends", {
    timeout: 20_000,
  }, async () => {
    const wss = new WebSocketServer({ port: 0, host: "127.0.0.1", handleProtocols: () => false });
    servers.push(wss);
    await once(wss, "listening");
    const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
    const child = spawn(
      process.execPath,
      [...flags, "--import", "tsx", peer, url, "json", "1000"],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk;
    });
    await once(child, "exit");
    expect(JSON.parse(out)).toMatchObject({
      connectFailed: { code: "ConnectionFailed", retryable: false },
    });
  });

  it("a server that picks another subprotocol the socket offered: NotSupported at once, and the connection closed with 4002, a code a browser may send", {
    timeout: 20_000,
  }, async () => {
    // The socket opens (the browser saw its own offer chosen), so the binding closes it. With
    // close(1002), which a browser's WebSocket refuses by throwing, the call never settled (and the
    // throw ended this Node process).
    const { lines, exitCode, serverClose } = await runPeer(
      json,
      1000,
      async () => undefined,
      { handleProtocols: (offered) => (offered.has("chat.v1") ? "chat.v1" : false) },
      ["chat.v1"],
    );
    expect(lines).toEqual([
      {
        connectFailed: {
          code: "NotSupported",
          retryable: false,
          message: expect.stringMatching(
            /negotiated subprotocol chat\.v1; CloudEvents needs one of cloudevents\.json/,
          ),
          ms: expect.any(Number),
        },
      },
    ]);
    // Well inside connectWebSocket's own 10 s timeout, which the open had cleared.
    expect((lines[0] as { connectFailed: { ms: number } }).connectFailed.ms).toBeLessThan(5000);
    expect(serverClose).toBe(4002);
    expect(exitCode).toBe(0);
  });
});

describe("a subscriber on a WHATWG WebSocket (the browser's API)", () => {
  for (const format of [json, avro]) {
    it(`${format.name}: a message past its maxPayloadBytes fails iteration with PayloadTooLarge and closes the connection with 4009, the code a browser may send`, {
      timeout: 20_000,
    }, async () => {
      const { lines, exitCode, serverClose } = await runPeer(format, 2000, async (socket) => {
        const publisher = webSocketPublisher(socket, { formats: [json, avro] });
        await publisher.publish(event("small", 10));
        await publisher.publish(event("big", 5000));
      });
      expect(lines[0]).toEqual({ open: `cloudevents.${format.name === "avro" ? "avro" : "json"}` });
      expect(lines[1]).toEqual({ event: "small", error: null });
      expect(lines[2]).toMatchObject({
        failed: { code: "PayloadTooLarge", protocolCode: 4009 },
      });
      expect(JSON.stringify(lines[2])).toContain("maxPayloadBytes (2000 bytes)");
      expect(lines[3]).toEqual({ closed: 4009 });
      expect(serverClose).toBe(4009);
      expect(exitCode).toBe(0);
    });
  }
});

describe("a publisher on a WHATWG WebSocket", () => {
  it("a text format whose bytes are not UTF-8 fails the call as a rejection, with nothing of it sent", {
    timeout: 20_000,
  }, async () => {
    // The browser's send() takes text as a string: the conversion threw out of publish(), and for
    // an array after the frames before it had gone.
    const publisher = fileURLToPath(new URL("./fixtures/whatwg-publisher.ts", import.meta.url));
    const wss = new WebSocketServer({
      port: 0,
      host: "127.0.0.1",
      ...webSocketServerOptions([json]),
    });
    servers.push(wss);
    await once(wss, "listening");
    const received: string[] = [];
    wss.on("connection", (socket) => socket.on("message", (data) => received.push(String(data))));
    const child = spawn(
      process.execPath,
      [
        ...flags,
        "--import",
        "tsx",
        publisher,
        `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk;
    });
    const [exitCode] = (await once(child, "exit")) as [number | null];
    expect(
      out
        .split("\n")
        .filter((line) => line.length > 0)
        .map((line) => JSON.parse(line)),
    ).toEqual([
      { call: "array", rejected: "MalformedInput" },
      { call: "single", rejected: "MalformedInput" },
      { call: "last", resolved: true },
    ]);
    expect(exitCode).toBe(0);
    await expect.poll(() => received.length).toBe(1);
    expect(JSON.parse(received[0] as string)).toMatchObject({ id: "last" });
  });
});

describe("a lost or failed connection on a WHATWG WebSocket", () => {
  const lost = async (end: (socket: WebSocket) => void) => {
    const { lines, exitCode } = await runPeer(json, 100_000, async (socket) => {
      const publisher = webSocketPublisher(socket, { formats: [json] });
      await publisher.publish(event("before", 10));
      setTimeout(() => end(socket), 100);
    });
    expect(lines[1]).toEqual({ event: "before", error: null });
    expect(exitCode).toBe(0);
    return lines.slice(2);
  };

  it("no closing handshake: iteration fails with ConnectionFailed carrying 1006", {
    timeout: 20_000,
  }, async () => {
    const after = await lost((socket) => socket.terminate());
    expect(after[0]).toMatchObject({ failed: { code: "ConnectionFailed", protocolCode: 1006 } });
    expect(after[1]).toEqual({ closed: 1006 });
  });

  it("a frame it cannot read: the close after the error says what happened, 1006", {
    timeout: 20_000,
  }, async () => {
    // A frame with the reserved bits set: the WebSocket fails the connection, firing 'error'
    // (and closed already) and then 'close'. Iteration failed at the error, with no code.
    const after = await lost((socket) =>
      (socket as unknown as { _socket: { write(b: Uint8Array): void } })._socket.write(
        new Uint8Array([0xf1, 0x00]),
      ),
    );
    expect(after[0]).toMatchObject({
      failed: {
        code: "ConnectionFailed",
        protocolCode: 1006,
        message: expect.stringContaining("1006"),
      },
    });
    expect(after[1]).toEqual({ closed: 1006 });
  });
});
