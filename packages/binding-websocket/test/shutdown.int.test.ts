import type { AddressInfo } from "node:net";
import {
  connectWebSocket,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import type { Delivery } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { baselineHandles, expectNoLeakedHandles, shutdownEvent } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";

const formats = [json];

describe("WebSocket graceful shutdown", () => {
  it("publisher.close() waits for frames being written, subscriber.close() ends iteration, and no socket or timer is left", {
    timeout: 20_000,
  }, async () => {
    const baseline = await baselineHandles();
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
    const iterator = subscriber[Symbol.asyncIterator]();

    const total = 1000;
    const publisher = webSocketPublisher(client, { formats });
    let resolved = 0;
    const publishes = Array.from({ length: total }, (_, i) =>
      publisher.publish(shutdownEvent("websocket", i)).then(() => {
        resolved++;
      }),
    );
    await publisher.close();
    // close() resolved only once every frame handed to ws was written.
    expect(resolved).toBe(total);
    await Promise.all(publishes);
    await expect(publisher.publish(shutdownEvent("websocket", -1))).rejects.toMatchObject({
      code: "Closed",
    });

    const received: Delivery[] = [];
    while (received.length < total) received.push((await iterator.next()).value as Delivery);
    expect(received.at(-1)?.event?.id).toBe(`shutdown-${total - 1}`);
    await subscriber.close();
    expect(await iterator.next()).toMatchObject({ done: true });
    // The socket belongs to the application: the subscriber's close leaves it open.
    expect(server.readyState).toBe(1);

    const closed = new Promise<void>((resolve) =>
      client.addEventListener("close", () => resolve()),
    );
    client.close(1000, "done");
    await closed;
    await new Promise((r) => wss.close(r));
    const after = await expectNoLeakedHandles(baseline);
    console.log(
      `shutdown websocket: ${total} publishes drained by close(); handles before ${JSON.stringify(baseline)}, after ${JSON.stringify(after)}`,
    );
  });
});
