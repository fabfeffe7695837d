// End-to-end transports for AMQP 1.0 (RabbitMQ) and WebSockets, in the shape of bench/e2e.ts.
import type { AddressInfo } from "node:net";
import {
  amqpPublisher,
  amqpSubscriber,
  encodeAmqpMessage,
  withFrameGuard,
} from "@posthorn/binding-amqp";
import {
  connectWebSocket,
  toWebSocketFrame,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import { json } from "@posthorn/format-json";
import { brokerUrl, requireBroker } from "@posthorn/testkit";
import amqplib from "amqplib";
import rhea, { type Connection, type Delivery as RheaDelivery, type Sender } from "rhea";
import WebSocket, { WebSocketServer } from "ws";
import { Arrivals, consume, type E2eTransport, publishFrom, runId, slice } from "./e2e.ts";

/**
 * A rhea connection to the broker at `url` (guest/guest unless the URL says otherwise); with
 * `guarded`, through the binding's frame guard, as docs/bindings/amqp.md says to connect.
 */
export function openRhea(url: URL, guarded = false): Promise<Connection> {
  const container = rhea.create_container();
  const options = {
    host: url.hostname,
    port: url.port ? Number(url.port) : 5672,
    username: decodeURIComponent(url.username || "guest"),
    password: decodeURIComponent(url.password || "guest"),
    reconnect: false,
  };
  return new Promise((resolve, reject) => {
    const connection = container.connect(guarded ? withFrameGuard(options) : options);
    connection.once("connection_open", () => resolve(connection));
    connection.once("disconnected", (ctx) => reject(ctx.error));
  });
}

/**
 * A bare rhea sender transmitting pre-encoded messages: each `send` resolves when the broker has
 * accepted all of its messages, holding back while the link has no credit, as Posthorn's
 * publisher does.
 */
class RawAmqpSender {
  readonly #sender: Sender;
  readonly #waiting = new Map<RheaDelivery, () => void>();
  readonly #backlog: { payload: Buffer; done: () => void }[] = [];

  constructor(sender: Sender) {
    this.#sender = sender;
    sender.on("accepted", (context) => {
      const delivery = context.delivery as RheaDelivery;
      const done = this.#waiting.get(delivery);
      this.#waiting.delete(delivery);
      done?.();
    });
    sender.on("sendable", () => this.#pump());
  }

  send(payloads: readonly Buffer[]): Promise<void> {
    const all = Promise.all(
      payloads.map((payload) => new Promise<void>((done) => this.#backlog.push({ payload, done }))),
    );
    this.#pump();
    return all.then(() => undefined);
  }

  #pump(): void {
    while (this.#backlog.length > 0 && this.#sender.sendable()) {
      const next = this.#backlog.shift() as { payload: Buffer; done: () => void };
      this.#waiting.set(this.#sender.send(next.payload as never, undefined, 0), next.done);
    }
  }
}

/**
 * AMQP 1.0 through the RabbitMQ at AMQP_URL (its AMQP 1.0 plugin), one queue per side: Posthorn's
 * publisher (waiting for `accepted`, 500 unsettled at most) into its subscriber (credit 500,
 * accepting every delivery), on connections through the frame guard, next to a bare rhea sender
 * (the same pre-encoded messages, the same window) into a rhea receiver with automatic accept, on
 * plain connections of their own.
 */
export function amqpTransport(): E2eTransport {
  return {
    name: "AMQP 1.0 (RabbitMQ)",
    rawLabel: "rhea, pre-encoded",
    maxPayloadBytes: 1 << 20,
    async open() {
      if (!(await requireBroker("amqp"))) throw new Error("no RabbitMQ with AMQP 1.0");
      const url = new URL(brokerUrl("amqp") as string);
      const id = runId();
      const admin = await amqplib.connect(url.href);
      const channel = await admin.createChannel();
      const ourQueue = `bench-e2e-${id}-ours`;
      const rawQueue = `bench-e2e-${id}-raw`;
      await channel.assertQueue(ourQueue, { durable: false });
      await channel.assertQueue(rawQueue, { durable: false });
      // Posthorn's side connects as documented (through the frame guard), the raw side as a bare
      // rhea user does; a connection each, so neither pays for the other's reading.
      const [pubConnection, subConnection, rawPub, rawSub] = await Promise.all([
        openRhea(url, true),
        openRhea(url, true),
        openRhea(url),
        openRhea(url),
      ]);
      const oursArrivals = new Arrivals();
      const rawArrivals = new Arrivals();
      const subscriber = amqpSubscriber(subConnection, {
        address: `/amq/queue/${ourQueue}`,
        credit: 500,
      });
      consume(subscriber, oursArrivals);
      const receiver = rawSub.open_receiver({
        source: { address: `/amq/queue/${rawQueue}` },
        credit_window: 500,
        autoaccept: true,
      });
      receiver.on("message", () => rawArrivals.hit());
      const publisher = amqpPublisher(pubConnection, {
        address: `/amq/queue/${ourQueue}`,
        maxInFlight: 500,
      });
      await publisher.ready;
      const sender = rawPub.open_sender({ target: { address: `/amq/queue/${rawQueue}` } });
      await new Promise<void>((resolve) => {
        if (sender.sendable()) resolve();
        else sender.once("sendable", () => resolve());
      });
      const raw = new RawAmqpSender(sender);
      return {
        prepare(events) {
          const pre = events.map((e) => encodeAmqpMessage(e));
          return {
            ours: {
              arrivals: oursArrivals,
              send: publishFrom(publisher, events),
            },
            raw: { arrivals: rawArrivals, send: (from, n) => raw.send(slice(pre, from, n)) },
          };
        },
        async close() {
          await publisher.close();
          await subscriber.close();
          receiver.close();
          sender.close();
          for (const c of [pubConnection, subConnection, rawPub, rawSub]) c.close();
          await channel.deleteQueue(ourQueue);
          await channel.deleteQueue(rawQueue);
          await channel.close();
          await admin.close();
        },
      };
    },
  };
}

/**
 * WebSockets (ws, `cloudevents.json`), in process: one connection per side to one server.
 * Posthorn's publisher on the client end into its subscriber on the server end, next to plain
 * `ws` sending the same pre-encoded frames into a plain message handler. No acknowledgement
 * exists: a publish resolves when its frame is written.
 */
export function webSocketTransport(): E2eTransport {
  return {
    name: "WebSocket (ws, cloudevents.json, in process)",
    rawLabel: "ws, pre-encoded",
    maxPayloadBytes: 1 << 20,
    async open() {
      const server = new WebSocketServer({
        port: 0,
        host: "127.0.0.1",
        ...webSocketServerOptions([json]),
      });
      await new Promise<void>((resolve) => server.once("listening", () => resolve()));
      const oursArrivals = new Arrivals();
      const rawArrivals = new Arrivals();
      const subscribers: { close(): Promise<void> }[] = [];
      const accepted = new Promise<void>((resolve) => {
        let seen = 0;
        server.on("connection", (socket, request) => {
          if (request.url === "/ours") {
            const subscriber = webSocketSubscriber(socket, { formats: [json] });
            subscribers.push(subscriber);
            consume(subscriber, oursArrivals);
          } else {
            socket.on("message", () => rawArrivals.hit());
          }
          if (++seen === 2) resolve();
        });
      });
      const base = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const options = { formats: [json], WebSocket };
      const ours = await connectWebSocket(`${base}/ours`, options);
      const raw = await connectWebSocket(`${base}/raw`, options);
      await accepted;
      const publisher = webSocketPublisher(ours, { formats: [json] });
      return {
        prepare(events) {
          const frames = events.map((e) => toWebSocketFrame(e, json).data);
          return {
            ours: {
              arrivals: oursArrivals,
              send: publishFrom(publisher, events),
            },
            raw: {
              arrivals: rawArrivals,
              send: (from, n) =>
                Promise.all(
                  slice(frames, from, n).map(
                    (frame) =>
                      new Promise<void>((resolve, reject) =>
                        raw.send(frame, { binary: false }, (err) =>
                          err ? reject(err) : resolve(),
                        ),
                      ),
                  ),
                ).then(() => undefined),
            },
          };
        },
        async close() {
          await publisher.close();
          for (const s of subscribers) await s.close();
          ours.close();
          raw.close();
          for (const c of server.clients) c.terminate();
          await new Promise((resolve) => server.close(resolve));
        },
      };
    },
  };
}
