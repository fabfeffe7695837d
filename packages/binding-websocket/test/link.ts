import type { AddressInfo } from "node:net";
import {
  connectWebSocket,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import { CloudEvent, type Delivery } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { nextDelivery } from "@posthorn/testkit";
import { expect } from "vitest";
import WebSocket, { WebSocketServer } from "ws";

/** The formats of these tests' connections. */
export const formats = [json];

/**
 * A real connection: a ws server in this process, a ws client connected to it, and a subscriber
 * on the server's socket that sees exactly what crossed the wire.
 */
export interface Link {
  client: WebSocket;
  server: WebSocket;
  received: AsyncIterator<Delivery>;
  /** Closes the subscriber, both sockets and the server. */
  stop(): Promise<void>;
}

/** Opens a {@link Link}. */
export async function link(): Promise<Link> {
  const wss = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    ...webSocketServerOptions(formats),
  });
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const accepted = new Promise<WebSocket>((resolve) => wss.once("connection", resolve));
  const client = await connectWebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, {
    formats,
    WebSocket,
  });
  const server = await accepted;
  const subscriber = webSocketSubscriber(server, { formats });
  return {
    client,
    server,
    received: subscriber[Symbol.asyncIterator](),
    async stop() {
      await subscriber.close();
      for (const socket of wss.clients) socket.terminate();
      client.terminate();
      await new Promise((resolve) => wss.close(resolve));
    },
  };
}

/** The id of the next event the server received. */
export async function nextId(link: Link, timeoutMs = 5000): Promise<string | undefined> {
  return (await nextDelivery(link.received, timeoutMs)).event?.id;
}

/** An event with `bytes` bytes of text data. */
export function bigEvent(id: string, bytes: number): CloudEvent {
  return new CloudEvent({
    specversion: "1.0",
    id,
    source: "/big",
    type: "com.example.big",
    datacontenttype: "text/plain",
    data: "x".repeat(bytes),
  });
}

/**
 * Stops the server reading, then publishes 1 MiB events without waiting until the client's
 * socket holds bytes it could not write: from then on, ws calls back for a new frame only once
 * the server reads again (`link.server.resume()`).
 *
 * @returns the backlog's publishes
 */
export async function congest(
  link: Link,
  publish: (event: CloudEvent) => Promise<void>,
): Promise<Promise<void>[]> {
  link.server.pause();
  const backlog: Promise<void>[] = [];
  for (let i = 0; i < 256 && link.client.bufferedAmount === 0; i++) {
    const published = publish(bigEvent(`backlog-${i}`, 1024 * 1024));
    // A backlog frame cut off by a lost connection fails; callers look at the outcomes later.
    published.catch(() => undefined);
    backlog.push(published);
    // Past the tick's cork: what is still buffered then, the kernel did not take.
    await new Promise((resolve) => setImmediate(resolve));
  }
  expect(link.client.bufferedAmount).toBeGreaterThan(0);
  return backlog;
}
