// The frame guard on real connections: a rhea container on a free port plays a hostile peer that
// sends, as transfers of its own, bytes rhea's decoder cannot read or would read without bound,
// and a raw TCP server sends a hostile performative. The subscriber's connection goes through
// guardedConnect.

import { createServer, Socket } from "node:net";
import {
  type AmqpSubscriber,
  amqpPublisher,
  amqpSubscriber,
  guardedConnect,
  guardedListen,
  guardSocket,
  toAmqpMessage,
} from "@posthorn/binding-amqp";
import type { Delivery } from "@posthorn/core";
import { refusedOption, vector } from "@posthorn/testkit";
import rhea, { type Connection, type EventContext } from "rhea";
import { afterEach, describe, expect, it } from "vitest";
import { closeConnection, listeningPort, listenOnLoopback } from "./helpers.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Peer {
  readonly port: number;
  /** The outcome of each transfer the peer sent, in order of settlement. */
  readonly outcomes: string[];
}

/** A peer that sends `payloads` (message bytes, and their message format) on the first link attached from it. */
async function startPeer(payloads: Array<[Buffer, number?]>): Promise<Peer> {
  const container = rhea.create_container({ id: "posthorn-hostile-peer", autoaccept: false });
  const outcomes: string[] = [];
  container.on("sender_open", (ctx: EventContext) => {
    const sender = ctx.sender as rhea.Sender;
    sender.set_source({ address: (sender.source as { address?: string }).address ?? "" });
    const queue = [...payloads];
    const send = (): void => {
      while (queue.length > 0 && sender.sendable()) {
        const [bytes, format] = queue.shift() as [Buffer, number?];
        sender.send(bytes as never, undefined, format ?? 0);
      }
    };
    sender.on("sendable", send);
    send();
  });
  for (const outcome of ["accepted", "rejected", "released", "modified"]) {
    container.on(outcome, () => outcomes.push(outcome));
  }
  const { port, stop } = await listenOnLoopback(container);
  cleanups.push(stop);
  return { port, outcomes };
}

async function guardedConnection(
  port: number,
  options: Record<string, unknown> = {},
  limits: Parameters<typeof guardedConnect>[0] = {},
): Promise<Connection> {
  const connection = rhea.create_container().connect({
    host: "127.0.0.1",
    port,
    reconnect: false,
    connect: guardedConnect(limits),
    ...options,
  } as Parameters<typeof rhea.connect>[0]);
  await new Promise<void>((resolve) => connection.once("connection_open", () => resolve()));
  cleanups.push(() => closeConnection(connection));
  return connection;
}

async function take(subscriber: AmqpSubscriber, n: number): Promise<Delivery[]> {
  // Not for-await: leaving that loop would close the subscriber.
  const iterator = subscriber[Symbol.asyncIterator]();
  const taken: Delivery[] = [];
  while (taken.length < n) {
    const next = await iterator.next();
    if (next.done === true) break;
    taken.push(next.value);
  }
  return taken;
}

const typical = (): Buffer =>
  rhea.message.encode(toAmqpMessage(vector("typical").event, { codec: rhea }) as never);
/** A data section claiming 4 GiB in a 10-byte message: rhea's decoder throws a RangeError. */
const truncated = Buffer.from([0x00, 0x53, 0x75, 0xb0, 0xff, 0xff, 0xff, 0xff, 1, 2]);
/** An application property holding an array of 2^32 - 1 nulls in 9 bytes. */
const nullBomb = Buffer.from([
  0x00, 0x53, 0x74, 0xc1, 14, 2, 0xa1, 1, 0x6b, 0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40,
]);

describe("guardedConnect against a hostile peer", () => {
  it("hands a message rhea cannot decode to the subscriber as a MalformedInput delivery to reject, and the connection lives on", async () => {
    const peer = await startPeer([[truncated], [typical()]]);
    const connection = await guardedConnection(peer.port);
    const subscriber = amqpSubscriber(connection, { address: "hostile", credit: 5 });
    const [bad, good] = await take(subscriber, 2);
    expect(bad?.event).toBeUndefined();
    expect(bad?.error).toMatchObject({
      code: "MalformedInput",
      message: expect.stringMatching(/claims more bytes than there are/),
    });
    // The original bytes are the body, for logging or a dead-letter copy.
    expect(Buffer.from(bad?.message.body ?? [])).toEqual(truncated);
    await bad?.reject("undecodable");
    expect(good?.event).toEqual(vector("typical").event);
    await good?.accept();
    expect(connection.is_open()).toBe(true);
    await subscriber.close();
    expect(peer.outcomes).toEqual(["rejected", "accepted"]);
  });

  it("refuses an array of 2^32 - 1 nulls before rhea builds it", async () => {
    const peer = await startPeer([[nullBomb], [typical()]]);
    const connection = await guardedConnection(peer.port);
    const subscriber = amqpSubscriber(connection, { address: "bomb", credit: 5 });
    const before = process.memoryUsage().heapUsed;
    const [bomb, good] = await take(subscriber, 2);
    expect(bomb?.error).toMatchObject({
      code: "MalformedInput",
      message: expect.stringMatching(/empty elements/),
    });
    expect(good?.event?.id).toBe(vector("typical").event.id);
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(64 * 1024 * 1024);
    await subscriber.close();
  });

  it("checks a message spread over many frames as a whole: a valid one arrives intact, an invalid one as an error with all its bytes", async () => {
    const event = vector("large-json").event;
    const big = rhea.message.encode(toAmqpMessage(event, { codec: rhea }) as never);
    // Valid sections, then a data section cut short: only the whole message shows it.
    const broken = Buffer.concat([big, truncated]);
    const peer = await startPeer([[big], [broken], [typical()]]);
    // Frames of at most 512 bytes: the peer splits each message.
    const connection = await guardedConnection(peer.port, { max_frame_size: 512 });
    const subscriber = amqpSubscriber(connection, { address: "split", credit: 5 });
    const [whole, bad, after] = await take(subscriber, 3);
    expect(big.length).toBeGreaterThan(10 * 512);
    expect(whole?.event).toEqual(event);
    expect(bad?.error?.code).toBe("MalformedInput");
    expect(Buffer.from(bad?.message.body ?? []).equals(broken)).toBe(true);
    expect(after?.event?.id).toBe(vector("typical").event.id);
    await subscriber.close();
  });

  it("passes a message past maxMessageBytes on without its bytes, as PayloadTooLarge", async () => {
    const big = rhea.message.encode(
      toAmqpMessage(vector("large-json").event, { codec: rhea }) as never,
    );
    const peer = await startPeer([[big], [typical()]]);
    const connection = await guardedConnection(
      peer.port,
      { max_frame_size: 1024 },
      { maxMessageBytes: 4096 },
    );
    const subscriber = amqpSubscriber(connection, { address: "big", credit: 5 });
    const [tooLarge, good] = await take(subscriber, 2);
    expect(tooLarge?.error).toMatchObject({
      code: "PayloadTooLarge",
      message: expect.stringMatching(
        /larger than the limit of 4096 bytes \(the frame guard's maxMessageBytes\)$/,
      ),
    });
    expect(tooLarge?.message.body.length).toBe(0);
    expect(good?.event?.id).toBe(vector("typical").event.id);
    await subscriber.close();
  });

  it("ends the connection with MalformedInput when a performative is hostile (an open holding 2^32 - 1 nulls)", async () => {
    const server = createServer((socket: Socket) => {
      socket.once("data", () => {
        const open = Buffer.from([
          0x00, 0x53, 0x10, 0xc0, 11, 1, 0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40,
        ]);
        const frame = Buffer.concat([Buffer.from([0, 0, 0, open.length + 8, 2, 0, 0, 0]), open]);
        socket.write(Buffer.concat([Buffer.from("AMQP\x00\x01\x00\x00", "latin1"), frame]));
      });
      socket.on("error", () => {});
    });
    const port = await listeningPort(server.listen(0, "127.0.0.1"));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const connection = rhea.create_container().connect({
      host: "127.0.0.1",
      port,
      reconnect: false,
      connect: guardedConnect(),
    } as Parameters<typeof rhea.connect>[0]);
    const error = await new Promise<unknown>((resolve) =>
      connection.once("disconnected", (ctx: EventContext) => resolve(ctx.error)),
    );
    expect(error).toMatchObject({
      code: "MalformedInput",
      message: expect.stringMatching(/^AMQP frame guard: .*empty elements/),
    });
  });

  it("says what the peer is when it does not speak AMQP 1.0, and publishers fail with ConnectionFailed", async () => {
    const answers: Array<[Buffer, RegExp]> = [
      // An HTTP server: its answer read as frame sizes gave "a frame of 540291120 bytes".
      [
        Buffer.from("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n", "latin1"),
        /did not start with the AMQP protocol header but with "HTTP\/1\.1" \(485454502f312e31\): is this an AMQP port/,
      ],
      // RabbitMQ without its AMQP 1.0 plugin answers with the 0-9-1 header and closes.
      [Buffer.from("AMQP\x00\x00\x09\x01", "latin1"), /speaks AMQP 0-9-1, not 1\.0/],
    ];
    for (const [answer, reason] of answers) {
      const server = createServer((socket: Socket) => {
        socket.once("data", () => socket.end(answer));
        socket.on("error", () => {});
      });
      const port = await listeningPort(server.listen(0, "127.0.0.1"));
      cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
      const connection = rhea.create_container().connect({
        host: "127.0.0.1",
        port,
        reconnect: false,
        connect: guardedConnect(),
      } as Parameters<typeof rhea.connect>[0]);
      const disconnected = new Promise<unknown>((resolve) =>
        connection.once("disconnected", (ctx: EventContext) => resolve(ctx.error)),
      );
      const publisher = amqpPublisher(connection, { address: "x" });
      const failed = await publisher.publish(vector("typical").event).catch((e: unknown) => e);
      expect(await disconnected).toMatchObject({
        code: "MalformedInput",
        message: expect.stringMatching(reason),
      });
      // The docs' promise: what ran on the connection fails with ConnectionFailed (the guard's
      // MalformedInput came through as it was), not retryable: the same peer answers again.
      expect(failed).toMatchObject({
        name: "PosthornError",
        code: "ConnectionFailed",
        retryable: false,
        message: expect.stringMatching(reason),
      });
    }
  });

  it("gives a message of another message format, which rhea does not decode, as NotSupported (with or without the guard)", async () => {
    const peer = await startPeer([[typical(), 0x1234], [typical()]]);
    const connection = rhea.create_container().connect({
      host: "127.0.0.1",
      port: peer.port,
      reconnect: false,
    });
    cleanups.push(() => closeConnection(connection));
    const subscriber = amqpSubscriber(connection, { address: "format", credit: 5 });
    const [other, good] = await take(subscriber, 2);
    expect(other?.error).toMatchObject({
      code: "NotSupported",
      message: expect.stringMatching(/message format is 4660/),
    });
    expect(Buffer.from(other?.message.body ?? []).equals(typical())).toBe(true);
    expect(good?.event?.id).toBe(vector("typical").event.id);
    await subscriber.close();
  });

  it("refuses limits that are not whole numbers of 1 or more", () => {
    const container = rhea.create_container();
    expect(() => guardedListen(container, { port: 0 }, { maxDepth: 0 })).toThrow(
      refusedOption("maxDepth", "0"),
    );
    expect(() => guardedConnect({ maxFrameBytes: 0 })).toThrow(refusedOption("maxFrameBytes", "0"));
    expect(() => guardedConnect({ maxMessageBytes: Number.NaN })).toThrow(
      refusedOption("maxMessageBytes", "NaN"),
    );
    expect(() => guardSocket(new Socket(), { maxDepth: 1.5 })).toThrow(
      refusedOption("maxDepth", "1.5"),
    );
    expect(() => guardedConnect({ maxValues: Number.POSITIVE_INFINITY })).toThrow(
      refusedOption("maxValues", "Infinity"),
    );
  });
});

describe("guardedListen: a rhea server whose accepted connections are guarded", () => {
  /**
   * A server on a free port through guardedListen; for each connection it accepts, a subscriber
   * on the link `address` the client sends on, handing out what arrives.
   */
  async function startGuardedServer(limits: Parameters<typeof guardedListen>[2] = {}) {
    const container = rhea.create_container({ id: "posthorn-guarded-server" });
    const subscribers: AmqpSubscriber[] = [];
    const opened = new Promise<AmqpSubscriber>((resolve) => {
      container.on("connection_open", (ctx: EventContext) => {
        const subscriber = amqpSubscriber(ctx.connection, { address: "hostile", credit: 5 });
        subscribers.push(subscriber);
        resolve(subscriber);
      });
    });
    const disconnected: unknown[] = [];
    container.on("disconnected", (ctx: EventContext) => disconnected.push(ctx.error));
    container.on("error", () => {});
    const server = guardedListen(container, { port: 0, host: "127.0.0.1" }, limits);
    const port = await listeningPort(server);
    cleanups.push(async () => {
      for (const s of subscribers) await s.close().catch(() => undefined);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return { port, opened, disconnected, container };
  }

  /** A client that connects to `port` and sends `payloads` on the link the server attaches. */
  function hostileClient(port: number, payloads: Buffer[]) {
    const client = rhea.create_container({ id: "posthorn-hostile-client" });
    const outcomes: string[] = [];
    client.on("sender_open", (ctx: EventContext) => {
      const sender = ctx.sender as rhea.Sender;
      sender.set_source({ address: "hostile" });
      const queue = [...payloads];
      const send = (): void => {
        while (queue.length > 0 && sender.sendable())
          sender.send(queue.shift() as never, undefined, 0);
      };
      sender.on("sendable", send);
      send();
    });
    for (const outcome of ["accepted", "rejected"])
      client.on(outcome, () => outcomes.push(outcome));
    client.on("disconnected", () => {});
    client.on("error", () => {});
    const connection = client.connect({ host: "127.0.0.1", port, reconnect: false });
    cleanups.push(() => closeConnection(connection));
    return { connection, outcomes };
  }

  it("hands what rhea cannot decode, or would build without bound, to the server's subscriber as MalformedInput, and the connection lives on", async () => {
    const server = await startGuardedServer();
    const client = hostileClient(server.port, [truncated, nullBomb, typical()]);
    const subscriber = await server.opened;
    const [bad, bomb, good] = await take(subscriber, 3);
    expect(bad?.error).toMatchObject({
      code: "MalformedInput",
      message: expect.stringMatching(/claims more bytes than there are/),
    });
    expect(Buffer.from(bad?.message.body ?? [])).toEqual(truncated);
    expect(bomb?.error?.code).toBe("MalformedInput");
    expect(good?.event).toEqual(vector("typical").event);
    await bad?.reject("undecodable");
    await bomb?.reject("undecodable");
    await good?.accept();
    await expect.poll(() => client.outcomes).toEqual(["rejected", "rejected", "accepted"]);
    expect(client.connection.is_open()).toBe(true);
    expect(server.disconnected).toEqual([]);
  });

  it("takes maxFrameBytes from the server's max_frame_size, and ends a connection whose frame is past it", async () => {
    const container = rhea.create_container({ id: "posthorn-guarded-server-small" });
    const disconnected: unknown[] = [];
    container.on("disconnected", (ctx: EventContext) => disconnected.push(ctx.error));
    container.on("error", () => {});
    const server = guardedListen(container, { port: 0, host: "127.0.0.1", max_frame_size: 512 });
    const port = await listeningPort(server);
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    // A raw client whose first frame (after the protocol header) claims 4 KiB.
    const socket = new Socket();
    cleanups.push(() => void socket.destroy());
    await new Promise<void>((resolve) => socket.connect(port, "127.0.0.1", () => resolve()));
    const frame = Buffer.alloc(4096);
    frame.writeUInt32BE(4096, 0);
    frame[4] = 2;
    socket.write(Buffer.concat([Buffer.from("AMQP\x00\x01\x00\x00", "latin1"), frame]));
    await expect.poll(() => disconnected.length).toBe(1);
    expect(disconnected[0]).toMatchObject({
      code: "MalformedInput",
      message: expect.stringMatching(/AMQP frame guard/),
    });
  });

  it("refuses a transport it does not know with NotSupported", () => {
    expect(() =>
      guardedListen(rhea.create_container(), { port: 0, transport: "sctp" as "tcp" }),
    ).toThrow(expect.objectContaining({ code: "NotSupported" }));
  });
});
