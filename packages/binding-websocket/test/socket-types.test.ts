import type { AddressInfo } from "node:net";
import {
  connectWebSocket,
  type WebSocketConstructor,
  type WebSocketEventLike,
  type WebSocketLike,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import type { CloudEvent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { vector } from "@posthorn/testkit";
import { describe, expect, expectTypeOf, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";

// The structural socket types must take the real sockets as they come, with no cast: ws's client
// WebSocket, the sockets a WebSocketServer hands out, and the browser's WebSocket (lib.dom).
// The expectTypeOf lines are checked by the compiler (`npx tsc -p tsconfig.json --noEmit` covers
// test files); the ws round trip below runs them against real sockets too.

describe("WebSocketLike and WebSocketConstructor", () => {
  it("take the browser's WebSocket and its events (lib.dom)", () => {
    expectTypeOf<globalThis.WebSocket>().toExtend<WebSocketLike>();
    expectTypeOf<typeof globalThis.WebSocket>().toExtend<WebSocketConstructor>();
    expectTypeOf<MessageEvent>().toExtend<WebSocketEventLike>();
    expectTypeOf<CloseEvent>().toExtend<WebSocketEventLike>();
    expectTypeOf<Event>().toExtend<WebSocketEventLike>();
  });

  it("take ws's WebSocket class, its sockets and its events", () => {
    expectTypeOf<WebSocket>().toExtend<WebSocketLike>();
    expectTypeOf<typeof WebSocket>().toExtend<WebSocketConstructor>();
    expectTypeOf<typeof WebSocket>().toExtend<WebSocketConstructor<WebSocket>>();
    for (const event of ["open", "message", "error", "close"] as const) {
      expectTypeOf<WebSocket.WebSocketEventMap[typeof event]>().toExtend<WebSocketEventLike>();
    }
  });

  it("still refuse what is not a socket", () => {
    expectTypeOf<{ readyState: number; protocol: string }>().not.toExtend<WebSocketLike>();
    expectTypeOf<typeof WebSocketServer>().not.toExtend<WebSocketConstructor>();
  });

  it("connect ws's client to a WebSocketServer's socket with no cast, and connectWebSocket returns ws's type", async () => {
    const wss = new WebSocketServer({
      port: 0,
      host: "127.0.0.1",
      ...webSocketServerOptions([json]),
    });
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
    try {
      const accepted = new Promise<CloudEvent | undefined>((resolve, reject) => {
        wss.once("connection", (socket) => {
          expectTypeOf(socket).toExtend<WebSocketLike>();
          const iterator = webSocketSubscriber(socket, { formats: [json] })[Symbol.asyncIterator]();
          iterator.next().then((r) => resolve(r.done ? undefined : r.value.event), reject);
        });
      });
      const client = await connectWebSocket(
        `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
        {
          formats: [json],
          WebSocket,
        },
      );
      // The socket comes back as ws's own type, so its ws-only members need no cast either.
      expectTypeOf(client).toEqualTypeOf<WebSocket>();
      expect(client).toBeInstanceOf(WebSocket);
      const closed = new Promise<number>((resolve) => client.once("close", resolve));
      await webSocketPublisher(client, { formats: [json] }).publish(vector("typical").event);
      expect((await accepted)?.id).toBe(vector("typical").event.id);
      client.close(1000);
      expect(await closed).toBe(1000);
    } finally {
      for (const c of wss.clients) c.terminate();
      await new Promise((resolve) => wss.close(resolve));
    }
  });
});
