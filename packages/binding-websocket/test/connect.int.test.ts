import { type AddressInfo, createServer, type Socket } from "node:net";
import {
  connectWebSocket,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import { nextDelivery, settledWithin, shutdownEvent, watchTimerOverflows } from "@posthorn/testkit";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { formats } from "./link.js";

// connectWebSocket's limits on the wait for a connection to open, against real servers: a TCP
// server that accepts connections and never answers the upgrade holds a client connecting for as
// long as it likes.

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

/** A TCP server that never answers; `held` are the connections it accepted. */
async function silentServer() {
  const held: Socket[] = [];
  const server = createServer((socket) => void held.push(socket));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  stops.push(async () => {
    for (const socket of held) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/`, held };
}

async function until(check: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("connectWebSocket abortSignal", () => {
  it("rejects at once with Aborted, and attempts no connection, when the signal was aborted before the call", async () => {
    const { url, held } = await silentServer();
    const reason = new Error("user went away");
    const result = connectWebSocket(url, {
      formats,
      WebSocket,
      abortSignal: AbortSignal.abort(reason),
    });
    expect(await settledWithin(result, 10)).toMatchObject({
      rejected: { name: "PosthornError", code: "Aborted", retryable: false, cause: reason },
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(held).toHaveLength(0);
  });

  it("rejects with Aborted when the signal fires while connecting, closes the socket, and nothing is thrown afterwards", async () => {
    const { url, held } = await silentServer();
    const controller = new AbortController();
    const result = connectWebSocket(url, { formats, WebSocket, abortSignal: controller.signal });
    await until(() => held.length === 1);
    const connection = held[0] as Socket;
    const gone = new Promise<void>((resolve) => connection.once("close", () => resolve()));
    connection.resume();
    expect(await settledWithin(result, 50)).toBe("pending");
    controller.abort();
    expect(await settledWithin(result, 1000)).toMatchObject({
      rejected: { name: "PosthornError", code: "Aborted" },
    });
    expect(String(((await result.catch((e: unknown) => e)) as Error).message)).toContain(url);
    // The client gave the connection up: the server sees it close.
    expect(await settledWithin(gone, 2000)).toEqual({ resolved: undefined });
    // ws emits one more error for a socket closed while connecting; unheard, Node threw it
    // (vitest reports it as an unhandled error and fails the run).
    await new Promise((resolve) => setTimeout(resolve, 200));
  });

  it("does nothing to the socket once it is open: it is the caller's", async () => {
    const wss = new WebSocketServer({
      port: 0,
      host: "127.0.0.1",
      ...webSocketServerOptions(formats),
    });
    stops.push(async () => {
      for (const socket of wss.clients) socket.terminate();
      await new Promise((resolve) => wss.close(resolve));
    });
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
    const accepted = new Promise<WebSocket>((resolve) => wss.once("connection", resolve));
    const controller = new AbortController();
    const client = await connectWebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, {
      formats,
      WebSocket,
      abortSignal: controller.signal,
    });
    const iterator = webSocketSubscriber(await accepted, { formats })[Symbol.asyncIterator]();
    controller.abort();
    expect(client.readyState).toBe(WebSocket.OPEN);
    await webSocketPublisher(client, { formats }).publish(shutdownEvent("ws", 1));
    expect((await nextDelivery(iterator)).event?.id).toBe("shutdown-1");
    client.close(1000);
  });
});

describe("connectWebSocket timeoutMs", () => {
  for (const timeoutMs of [Number.POSITIVE_INFINITY, 2 ** 31]) {
    it(`${timeoutMs} means no limit, not a timer that fires at once`, async () => {
      const { url, held } = await silentServer();
      const overflows = watchTimerOverflows();
      try {
        const controller = new AbortController();
        const result = connectWebSocket(url, {
          formats,
          WebSocket,
          timeoutMs,
          abortSignal: controller.signal,
        });
        await until(() => held.length === 1);
        expect(await settledWithin(result, 300)).toBe("pending");
        // Only the signal ends this wait.
        controller.abort();
        expect(await settledWithin(result, 1000)).toMatchObject({ rejected: { code: "Aborted" } });
        await new Promise((resolve) => setTimeout(resolve, 100));
        expect(overflows.count()).toBe(0);
      } finally {
        overflows.stop();
      }
    });
  }

  it("0 fails with Timeout at once and attempts no connection", async () => {
    const { url, held } = await silentServer();
    const err = await connectWebSocket(url, { formats, WebSocket, timeoutMs: 0 }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: "Timeout" });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(held).toHaveLength(0);
  });

  it("a finite timeoutMs still fails with Timeout", async () => {
    const { url } = await silentServer();
    const started = Date.now();
    const err = await connectWebSocket(url, { formats, WebSocket, timeoutMs: 150 }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: "Timeout", retryable: true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    await new Promise((resolve) => setTimeout(resolve, 100));
  });
});

describe("connectWebSocket with a WebSocket whose close() throws", () => {
  // A subclass of one's own (docs: Headers, TLS and other ws options) may refuse to close, as a
  // browser's close() refuses codes it does not allow. giveUp closed before it rejected: the throw
  // left the timer's or the signal's listener, and the call never settled.
  const made: WebSocket[] = [];
  class RefusingClose extends WebSocket {
    constructor(address: string, protocols?: string | string[], options?: WebSocket.ClientOptions) {
      super(address, protocols, options);
      made.push(this);
    }
    override close(): void {
      throw new Error("close refused");
    }
  }
  afterEach(() => {
    for (const socket of made.splice(0)) socket.terminate();
  });

  it("still fails with Timeout when timeoutMs passes", async () => {
    const { url, held } = await silentServer();
    const result = connectWebSocket(url, { formats, WebSocket: RefusingClose, timeoutMs: 100 });
    await until(() => held.length === 1);
    expect(await settledWithin(result, 2000)).toMatchObject({
      rejected: { name: "PosthornError", code: "Timeout" },
    });
  });

  it("still fails with Aborted when the signal fires", async () => {
    const { url, held } = await silentServer();
    const controller = new AbortController();
    const result = connectWebSocket(url, {
      formats,
      WebSocket: RefusingClose,
      abortSignal: controller.signal,
    });
    await until(() => held.length === 1);
    controller.abort();
    expect(await settledWithin(result, 2000)).toMatchObject({
      rejected: { name: "PosthornError", code: "Aborted" },
    });
  });
});
