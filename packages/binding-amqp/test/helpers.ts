import {
  type AmqpPublisher,
  type AmqpSubscriber,
  amqpPublisher,
  amqpSubscriber,
  guardedConnect,
} from "@posthorn/binding-amqp";
import type { CloudEvent, Delivery, EventFormat } from "@posthorn/core";
import {
  type BindingHarness,
  type BindingPath,
  brokerUrl,
  nextDelivery,
  pathLabel,
} from "@posthorn/testkit";

// The next delivery of a subscriber, or a failure after `timeoutMs`: testkit's, for these tests.
export { nextDelivery };

import type { Server } from "node:net";
import amqplib from "amqplib";
import rhea, { type Connection, type Container, type EventContext } from "rhea";
import { afterAll, beforeAll } from "vitest";

/**
 * Opens a rhea connection and waits until it is open. With `guarded`, through the binding's frame
 * guard (guardedConnect), as the RabbitMQ tests connect: everything RabbitMQ sends them passes
 * the guard's checks.
 */
export function openConnection(options: {
  host: string;
  port: number;
  username?: string;
  password?: string;
  guarded?: boolean;
}): Promise<Connection> {
  const container = rhea.create_container();
  const { guarded, ...connect } = options;
  return new Promise((resolve, reject) => {
    const connection = container.connect({
      ...connect,
      reconnect: false,
      ...(guarded === true ? { connect: guardedConnect() } : {}),
    } as Parameters<typeof container.connect>[0]);
    connection.once("connection_open", () => resolve(connection));
    connection.once("connection_error", (ctx: EventContext) => reject(ctx.connection.error));
    connection.once("disconnected", (ctx: EventContext) => reject(ctx.error));
  });
}

/** Opens a connection to the RabbitMQ of `AMQP_URL` (default guest:guest@127.0.0.1:5672). */
export function connectRabbit(): Promise<Connection> {
  const url = new URL(brokerUrl("amqp") as string);
  return openConnection({
    host: url.hostname,
    port: url.port ? Number(url.port) : 5672,
    username: decodeURIComponent(url.username || "guest"),
    password: decodeURIComponent(url.password || "guest"),
    guarded: true,
  });
}

/** Closes a rhea connection and waits until its socket is gone. */
export function closeConnection(connection: Connection): Promise<void> {
  if (connection.is_closed()) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 3000);
    connection.once("connection_close", () => {
      clearTimeout(timer);
      resolve();
    });
    connection.close();
  });
}

/** A unique name for a queue or address. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * A conformance harness over real links: per path, one publisher and one subscriber; every
 * round trip publishes, takes the next delivery, accepts it and returns its event (or throws its
 * error).
 */
export function linkHarness(options: {
  name: string;
  paths: readonly BindingPath[];
  formats: readonly EventFormat[];
  connect(): Promise<Connection>;
  /** Prepares the addresses of one path (e.g. declares the queue) and returns them. */
  addresses(label: string): Promise<{ publish: string; consume: string }>;
  teardown?(): Promise<void>;
}): BindingHarness {
  let connection: Connection | undefined;
  const links = new Map<
    string,
    {
      publisher: AmqpPublisher;
      subscriber: AmqpSubscriber;
      iterator: AsyncIterator<Delivery>;
    }
  >();
  return {
    name: options.name,
    paths: options.paths,
    typed: true,
    caseSensitive: true,
    timeoutMs: 15_000,
    async setup() {
      connection = await options.connect();
      for (const path of options.paths) {
        const label = pathLabel(path);
        const { publish, consume } = await options.addresses(label);
        const subscriber = amqpSubscriber(connection, {
          address: consume,
          formats: options.formats,
          credit: 10,
        });
        const publisher = amqpPublisher(connection, {
          address: publish,
          mode: path.mode === "structured" ? "structured" : "binary",
          ...(path.format ? { format: path.format } : {}),
        });
        await Promise.all([subscriber.ready, publisher.ready]);
        links.set(label, { publisher, subscriber, iterator: subscriber[Symbol.asyncIterator]() });
      }
    },
    async teardown() {
      for (const { publisher, subscriber } of links.values()) {
        await publisher.close();
        await subscriber.close();
      }
      if (connection) await closeConnection(connection);
      await options.teardown?.();
    },
    async roundTrip(event: CloudEvent, path: BindingPath) {
      const link = links.get(pathLabel(path));
      if (!link) throw new Error(`no link for ${pathLabel(path)}`);
      await link.publisher.publish(event);
      const delivery = await nextDelivery(link.iterator);
      await delivery.accept();
      if (delivery.error) throw delivery.error;
      if (!delivery.event) throw new Error("the delivery carries no event");
      return delivery.event;
    },
  };
}

/** What a peer saw of one settlement by the subscriber. */
export interface PeerOutcome {
  readonly address: string;
  readonly outcome: string;
  readonly state: Record<string, unknown> | undefined;
}

/**
 * Makes `container` listen on a loopback port the system picks (with `options` added to rhea's
 * listen options), its connections' `disconnected` and `error` events heard: a peer of a test.
 *
 * @returns the port, and `stop()`, which closes the server
 */
export async function listenOnLoopback(
  container: Container,
  options: Record<string, unknown> = {},
): Promise<{ port: number; stop(): Promise<void> }> {
  container.on("disconnected", () => {});
  container.on("error", () => {});
  const server = container.listen({ port: 0, host: "127.0.0.1", ...options } as Parameters<
    Container["listen"]
  >[0]);
  const port = await listeningPort(server);
  return { port, stop: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/**
 * The port a server listens on, once it listens (rejects with its error, such as `EADDRINUSE`).
 * Test servers listen on port 0 and read it back: a port taken from testkit's `freePort()` could
 * be taken by another process (a parallel test worker) before the server bound it.
 */
export function listeningPort(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      server.off("error", reject);
      const address = server.address();
      if (address !== null && typeof address === "object") resolve(address.port);
      else reject(new Error(`the server listens on ${String(address)}, not on a TCP port`));
    };
    if (server.listening) done();
    else {
      server.once("listening", done);
      server.once("error", reject);
    }
  });
}

/**
 * A tiny AMQP 1.0 peer on a port the system picks (rhea's own `listen` on port 0): messages arriving on a link to an
 * address are accepted and sent on to the links attached from that address, in order; redelivery
 * is not emulated. Links to addresses starting with `nocredit` get no credit. Settlements the subscriber sends are recorded in `outcomes`.
 */
export async function startPeer(): Promise<{
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  readonly container: Container;
  readonly outcomes: PeerOutcome[];
  /** Hands a raw message to the consumers of `address` (to send what a publisher would not). */
  inject(address: string, message: Record<string, unknown>): void;
  stop(): Promise<void>;
}> {
  // Links attached to the peer get credit by hand, so an address can be left without any.
  const container = rhea.create_container({
    id: "posthorn-test-peer",
    credit_window: 0,
    treat_modified_as_released: false,
    autoaccept: false,
  } as Parameters<typeof rhea.create_container>[0]);
  const outcomes: PeerOutcome[] = [];
  const pending = new Map<string, Record<string, unknown>[]>();
  const senders = new Map<string, rhea.Sender[]>();
  const flush = (address: string): void => {
    const waiting = pending.get(address) ?? [];
    for (const sender of senders.get(address) ?? []) {
      while (waiting.length > 0 && sender.sendable()) {
        sender.send(waiting.shift() as never);
      }
    }
  };
  const inject = (address: string, message: Record<string, unknown>): void => {
    const list = pending.get(address) ?? [];
    list.push(message);
    pending.set(address, list);
    flush(address);
  };
  container.on("sender_open", (ctx: EventContext) => {
    const sender = ctx.sender as rhea.Sender;
    const address = (sender.source as { address?: string } | undefined)?.address ?? "";
    sender.set_source({ address });
    senders.set(address, [...(senders.get(address) ?? []), sender]);
    flush(address);
  });
  container.on("receiver_open", (ctx: EventContext) => {
    const receiver = ctx.receiver as rhea.Receiver;
    const address = (receiver.target as { address?: string } | undefined)?.address ?? "";
    receiver.set_target({ address });
    if (!address.startsWith("nocredit")) receiver.add_credit(1000);
  });
  container.on("sendable", (ctx: EventContext) => {
    const address = (ctx.sender?.source as { address?: string } | undefined)?.address ?? "";
    flush(address);
  });
  container.on("message", (ctx: EventContext) => {
    const address = (ctx.receiver?.target as { address?: string } | undefined)?.address ?? "";
    ctx.receiver?.add_credit(1);
    // Links to `reject...` and `release...` addresses refuse what they receive.
    if (address.startsWith("reject")) {
      ctx.delivery?.reject({
        condition: "amqp:precondition-failed",
        description: "refused by the test peer",
      });
      return;
    }
    if (address.startsWith("release")) {
      ctx.delivery?.release();
      return;
    }
    ctx.delivery?.accept();
    // Re-encoded by rhea on the way out: numbers lose their AMQP integer type (rhea writes uint).
    inject(address, ctx.message as unknown as Record<string, unknown>);
  });
  for (const outcome of ["accepted", "released", "rejected", "modified"]) {
    container.on(outcome, (ctx: EventContext) => {
      const address = (ctx.sender?.source as { address?: string } | undefined)?.address ?? "";
      outcomes.push({
        address,
        outcome,
        state: ctx.delivery?.remote_state as Record<string, unknown> | undefined,
      });
    });
  }
  container.on("sender_close", (ctx: EventContext) => {
    for (const [address, list] of senders) {
      senders.set(
        address,
        list.filter((s) => s !== ctx.sender),
      );
    }
  });
  container.on("connection_open", (ctx: EventContext) => {
    // No Nagle delay on the peer's side either (rhea sets it only where links are opened).
    (
      ctx.connection as unknown as { socket?: { setNoDelay?(v: boolean): void } }
    ).socket?.setNoDelay?.(true);
  });
  const { port, stop } = await listenOnLoopback(container);
  return { port, container, outcomes, inject, stop };
}

/** What {@link QueueAdmin.count} reads of a queue. */
export interface QueueCount {
  readonly messages: number;
  readonly consumers: number;
}

/** Declares and deletes queues over AMQP 0-9-1, for what the AMQP 1.0 plugin cannot declare. */
export class QueueAdmin {
  #connection: amqplib.ChannelModel | undefined;
  #channel: amqplib.Channel | undefined;
  readonly #queues: string[] = [];
  readonly #exchanges: string[] = [];

  async channel(): Promise<amqplib.Channel> {
    if (!this.#channel) {
      this.#connection = await amqplib.connect(brokerUrl("amqp") as string);
      this.#channel = await this.#connection.createChannel();
    }
    return this.#channel;
  }

  async queue(name: string, args: Record<string, unknown> = {}): Promise<string> {
    const ch = await this.channel();
    await ch.assertQueue(name, { durable: false, arguments: args });
    this.#queues.push(name);
    return name;
  }

  /** Deletes a queue someone else declares, at the end. */
  adopt(name: string): string {
    this.#queues.push(name);
    return name;
  }

  async fanout(name: string): Promise<string> {
    const ch = await this.channel();
    await ch.assertExchange(name, "fanout", { durable: false });
    this.#exchanges.push(name);
    return name;
  }

  /** Takes one message off a queue over AMQP 0-9-1, or `false` when it is empty. */
  async get(queue: string): Promise<amqplib.GetMessage | false> {
    return (await this.channel()).get(queue, { noAck: true });
  }

  /** How many messages a queue holds, and how many consumers it has, over AMQP 0-9-1. */
  async count(queue: string): Promise<QueueCount> {
    const q = await (await this.channel()).checkQueue(queue);
    return { messages: q.messageCount, consumers: q.consumerCount };
  }

  async close(): Promise<void> {
    if (!this.#channel) return;
    for (const q of this.#queues) await this.#channel.deleteQueue(q);
    for (const x of this.#exchanges) await this.#channel.deleteExchange(x);
    await this.#channel.close();
    await this.#connection?.close();
  }
}

/**
 * For a describe block against RabbitMQ: a {@link QueueAdmin} and one rhea connection, opened
 * before its tests and closed after them, the queues the admin declared deleted.
 */
export function rabbitFixture(): { readonly admin: QueueAdmin; readonly connection: Connection } {
  const admin = new QueueAdmin();
  let connection: Connection | undefined;
  beforeAll(async () => {
    connection = await connectRabbit();
  });
  afterAll(async () => {
    if (connection) await closeConnection(connection);
    await admin.close();
  });
  return {
    admin,
    get connection(): Connection {
      if (connection === undefined) throw new Error("the RabbitMQ connection opens in beforeAll");
      return connection;
    },
  };
}
