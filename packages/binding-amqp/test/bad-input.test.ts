// What a new user gets wrong, against a rhea peer on a free port (no broker): each mistake is a
// typed NotSupported at once, naming the option, never a TypeError, a dead connection, a publish
// that never settles, or a value read as the default.

import type { Socket } from "node:net";
import {
  amqpPublisher,
  amqpSubscriber,
  encodeAmqpMessage,
  type FromAmqpMessageOptions,
  fromAmqpMessage,
  readAmqpMessage,
  toAmqpMessage,
} from "@posthorn/binding-amqp";
import { CloudEvent } from "@posthorn/core";
import { nextDelivery, refusedOption, vector } from "@posthorn/testkit";
import rhea, { type Connection } from "rhea";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeConnection, openConnection, startPeer, uniqueName } from "./helpers.js";

let peer: Awaited<ReturnType<typeof startPeer>>;
let connection: Connection;

beforeAll(async () => {
  peer = await startPeer();
  connection = await openConnection({ host: "127.0.0.1", port: peer.port });
});

afterAll(async () => {
  await closeConnection(connection);
  await peer.stop();
});

const event = vector("typical").event;

const notSupported = (attribute: string, message: RegExp) =>
  expect.objectContaining({
    name: "PosthornError",
    code: "NotSupported",
    attribute,
    message: expect.stringMatching(message),
  });

describe("amqpPublisher and amqpSubscriber refuse what they cannot use, when made", () => {
  it("a rhea container, or anything but a Connection, in place of the connection", () => {
    for (const make of [
      () => amqpPublisher(rhea as never, { address: "/queue/a" }),
      () => amqpSubscriber(rhea as never, { address: "/queue/a" }),
    ]) {
      // Was a TypeError: connection.create_session is not a function.
      expect(make).toThrow(notSupported("connection", /rhea container: pass what its connect\(\)/));
    }
    expect(() => amqpPublisher(undefined as never, { address: "/queue/a" })).toThrow(
      notSupported("connection", /needs a rhea Connection/),
    );
  });

  it("an address that is not a non-empty string", () => {
    // A number was a TypeError from rhea's encoder; undefined a late amqp:invalid-field from the
    // broker; "" was taken by RabbitMQ 3.10, and the message dropped.
    for (const address of [undefined, "", 5]) {
      expect(() => amqpPublisher(connection, { address } as never)).toThrow(
        notSupported("address", /address must be a non-empty string/),
      );
      expect(() => amqpSubscriber(connection, { address } as never)).toThrow(
        notSupported("address", /address must be a non-empty string/),
      );
    }
  });

  it("a mode, prefix or integerType the binding does not have, and structured mode without a format", () => {
    const address = "/queue/never-attached";
    const cases: [object, string, string][] = [
      // Was "the AMQP binding has no Structured mode; publish the events one by one", at publish.
      [{ mode: "Structured" }, "mode", 'string "Structured"'],
      // Was written as given ("ce-id"): no receiver read the message as a CloudEvent.
      [{ prefix: "ce-" }, "prefix", 'string "ce-"'],
      // Was taken as long.
      [{ integerType: "short" }, "integerType", 'string "short"'],
    ];
    for (const [options, option, shown] of cases) {
      expect(() => amqpPublisher(connection, { address, ...options })).toThrow(
        refusedOption(option, shown),
      );
    }
    expect(() => amqpPublisher(connection, { address, mode: "structured" })).toThrow(
      notSupported("format", /needs an event format/),
    );
  });

  it("the mapping functions refuse an unknown prefix, integerType and mode too", () => {
    expect(() => encodeAmqpMessage(event, { prefix: "ce_" as never })).toThrow(
      refusedOption("prefix", 'string "ce_"'),
    );
    expect(() => toAmqpMessage(event, { codec: rhea, integerType: "i32" as never })).toThrow(
      refusedOption("integerType", 'string "i32"'),
    );
    expect(() => encodeAmqpMessage(event, { mode: "bin" as never })).toThrow(
      refusedOption("mode", 'string "bin"'),
    );
    expect(() => encodeAmqpMessage(event, { mode: "batch" as never })).toThrow(
      notSupported("mode", /no batch mode; publish the events one by one/),
    );
  });

  it("readAmqpMessage and fromAmqpMessage refuse a limit that is no whole number of 0 or more, as the subscriber does", () => {
    // A 1,500-byte binary-mode event: NaN turned the limit off (the event came through), -1
    // refused it as PayloadTooLarge, and so did a fraction, as it refuses every message.
    const amqp = toAmqpMessage(
      new CloudEvent({
        specversion: "1.0",
        id: "limits",
        source: "/tests/limits",
        type: "t",
        data: new Uint8Array(1500),
      }),
      { codec: rhea },
    );
    const cases: ReadonlyArray<readonly [FromAmqpMessageOptions, string, string]> = [
      [{ maxPayloadBytes: Number.NaN }, "maxPayloadBytes", "NaN"],
      [{ maxPayloadBytes: -1 }, "maxPayloadBytes", "-1"],
      [{ maxMessageBytes: Number.NaN }, "maxMessageBytes", "NaN"],
      [{ maxProperties: 1.5 }, "maxProperties", "1.5"],
      [{ maxProperties: -1 }, "maxProperties", "-1"],
      [{ maxDepth: Number.NaN }, "maxDepth", "NaN"],
      [{ json: { maxDepth: -2 } }, "json.maxDepth", "-2"],
      [{ maxPayloadBytes: "1000" as never }, "maxPayloadBytes", 'string "1000"'],
    ];
    for (const [options, name, shown] of cases) {
      expect(() => readAmqpMessage(amqp, options), name).toThrow(refusedOption(name, shown));
      expect(() => fromAmqpMessage(amqp, options), name).toThrow(refusedOption(name, shown));
      expect(() => amqpSubscriber(connection, { address: "/queue/x", ...options }), name).toThrow(
        refusedOption(name, shown),
      );
    }
    // The limits that are whole numbers (or Infinity) still read the message, as before.
    expect(readAmqpMessage(amqp, { maxPayloadBytes: Number.POSITIVE_INFINITY }).event?.id).toBe(
      "limits",
    );
    expect(readAmqpMessage(amqp, { maxPayloadBytes: 1000 }).error?.code).toBe("PayloadTooLarge");
    expect(readAmqpMessage(amqp, { maxProperties: 0 }).error?.code).toBe("PayloadTooLarge");
  });

  it("a releaseOutcome or rejectCondition the subscriber cannot send, and a credit past 32 bits", () => {
    const address = "/queue/never-attached";
    // A typo was sent as `released`.
    expect(() =>
      amqpSubscriber(connection, { address, releaseOutcome: "modify" as never }),
    ).toThrow(refusedOption("releaseOutcome", 'string "modify"'));
    expect(() => amqpSubscriber(connection, { address, rejectCondition: 5 as never })).toThrow(
      notSupported("rejectCondition", /non-empty string/),
    );
    // Was sent in a flow frame, and RabbitMQ dropped the connection.
    expect(() => amqpSubscriber(connection, { address, credit: 2 ** 33 })).toThrow(
      notSupported("credit", /at most 4294967295/),
    );
  });
});

describe("publish fields", () => {
  it("a field value rhea cannot write fails the call before the link attached, and the connection lives on", async () => {
    const own = await openConnection({
      host: "127.0.0.1",
      port: (connection as never as { options: { port: number } }).options.port,
    });
    try {
      const address = uniqueName("fields-bad");
      const subscriber = amqpSubscriber(own, { address });
      const publisher = amqpPublisher(own, { address, timeoutMs: 60_000 });
      // Not awaiting ready: the send used to happen in rhea's attach callback, where rhea's
      // RangeError ended the connection and the publish, out of the queue, never settled.
      const bad = publisher.publish(event, { fields: { priority: 300 } });
      await expect(bad).rejects.toEqual(refusedOption("fields.priority", "300"));
      await publisher.publish(event, { fields: { priority: 9, subject: "s" } });
      const delivery = await nextDelivery(subscriber[Symbol.asyncIterator]());
      expect(delivery.message.metadata).toMatchObject({ subject: "s" });
      await delivery.accept();
      await Promise.all([publisher.close(), subscriber.close()]);
    } finally {
      await closeConnection(own);
    }
  });

  it("refuses fields that are not an object, unknown names and values of the wrong type", async () => {
    const publisher = amqpPublisher(connection, { address: uniqueName("fields-refused") });
    await publisher.ready;
    const cases: [unknown, string, RegExp][] = [
      ["abc", "fields", /fields must be an object/],
      // The metadata's name, not rhea's: silently dropped before.
      [{ messageId: "m-1" }, "fields.messageId", /not an AMQP message field; by rhea's names/],
      // Went out as a ttl of 0.
      [{ ttl: "abc" }, "fields.ttl", /must be a whole number of milliseconds/],
      [{ durable: "yes" }, "fields.durable", /must be a boolean/],
      [{ message_id: { a: 1 } }, "fields.message_id", /must be a string, a whole number/],
      [{ creation_time: "yesterday" }, "fields.creation_time", /a Date or milliseconds/],
      // The binding's own: dropped without a word before.
      [{ content_type: "text/plain" }, "fields.content_type", /is the binding's: it carries/],
      [{ body: "x" }, "fields.body", /is the binding's/],
      [{ application_properties: { a: 1 } }, "fields.application_properties", /is the binding's/],
    ];
    for (const [fields, attribute, message] of cases) {
      await expect(publisher.publish(event, { fields } as never)).rejects.toEqual(
        notSupported(attribute, message),
      );
    }
    // null is no fields, as it was before they were checked.
    await publisher.publish(event, { fields: null } as never);
    // What rhea can write still goes out: a Date, a wrapped uuid, bytes.
    await publisher.publish(event, {
      fields: {
        creation_time: new Date(),
        message_id: rhea.types.wrap_uuid(Buffer.alloc(16, 1)),
        correlation_id: Buffer.from("c"),
        ttl: 60_000,
        durable: true,
      },
    });
    await publisher.close();
  });
});

describe("a connection the application already closed", () => {
  it("fails a publisher and a subscriber made on it at once with Closed", async () => {
    const port = (connection as never as { options: { port: number } }).options.port;
    const own = await openConnection({ host: "127.0.0.1", port });
    await closeConnection(own);
    const address = uniqueName("closed-before");
    const publisher = amqpPublisher(own, { address, timeoutMs: 20_000 });
    const subscriber = amqpSubscriber(own, { address });
    const closed = expect.objectContaining({ name: "PosthornError", code: "Closed" });
    // The publish waited for its timeoutMs; ready and iteration waited for ever.
    const started = Date.now();
    await expect(publisher.publish(event)).rejects.toEqual(closed);
    await expect(publisher.ready).rejects.toEqual(closed);
    await expect(subscriber.ready).rejects.toEqual(closed);
    await expect(subscriber[Symbol.asyncIterator]().next()).rejects.toEqual(closed);
    expect(Date.now() - started).toBeLessThan(1000);
    await Promise.all([publisher.close(), subscriber.close()]);
  });
});

describe("many publishers and subscribers on one connection", () => {
  it("share one listener per connection event: no MaxListenersExceededWarning at the eleventh", async () => {
    const port = (connection as never as { options: { port: number } }).options.port;
    const own = await openConnection({ host: "127.0.0.1", port });
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    process.on("warning", onWarning);
    // openConnection's own listeners.
    const before = [own.listenerCount("disconnected"), own.listenerCount("connection_close")];
    try {
      const address = uniqueName("many");
      const links = Array.from({ length: 12 }, () => [
        amqpPublisher(own, { address }),
        amqpSubscriber(own, { address }),
      ]).flat();
      await Promise.all(links.map((l) => l.ready));
      // Node emits the warning on a later tick.
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(warnings.filter((w) => w.name === "MaxListenersExceededWarning")).toEqual([]);
      expect(own.listenerCount("disconnected")).toBe((before[0] as number) + 1);
      await Promise.all(links.map((l) => l.close()));
      // The last one closed takes the shared listener away.
      expect([own.listenerCount("disconnected"), own.listenerCount("connection_close")]).toEqual(
        before,
      );
    } finally {
      process.off("warning", onWarning);
      await closeConnection(own);
    }
  });
});

describe("a connection lost before the publisher or subscriber was made", () => {
  const port = () => (connection as never as { options: { port: number } }).options.port;
  /** Ends the connection's socket under rhea, as a network failure would. */
  const drop = async (c: Connection) => {
    const lost = new Promise((resolve) => c.once("disconnected", resolve));
    (c as never as { socket: Socket }).socket.destroy(new Error("the network went away"));
    await lost;
  };

  it("without reconnect: both fail at once with ConnectionFailed, not retryable", async () => {
    const own = await openConnection({ host: "127.0.0.1", port: port() });
    await drop(own);
    const address = uniqueName("lost-before");
    const publisher = amqpPublisher(own, { address, timeoutMs: 20_000 });
    const subscriber = amqpSubscriber(own, { address });
    const lost = expect.objectContaining({
      code: "ConnectionFailed",
      retryable: false,
      message: expect.stringMatching(/does not reconnect .*open a new connection/),
    });
    // The publish waited for its timeoutMs; ready and iteration waited for ever.
    const started = Date.now();
    await expect(publisher.publish(event)).rejects.toEqual(lost);
    await expect(subscriber.ready).rejects.toEqual(lost);
    await expect(subscriber[Symbol.asyncIterator]().next()).rejects.toEqual(lost);
    expect(Date.now() - started).toBeLessThan(1000);
    await Promise.all([publisher.close(), subscriber.close()]);
  });

  it("with reconnect on: made while it reconnects, they work once it is back", async () => {
    const own = rhea.create_container().connect({
      host: "127.0.0.1",
      port: port(),
      reconnect: true,
      initial_reconnect_delay: 100,
    });
    await new Promise((resolve) => own.once("connection_open", resolve));
    await drop(own);
    const address = uniqueName("lost-reconnecting");
    const subscriber = amqpSubscriber(own, { address });
    const publisher = amqpPublisher(own, { address, timeoutMs: 10_000 });
    await publisher.publish(event);
    const delivery = await nextDelivery(subscriber[Symbol.asyncIterator]());
    expect(delivery.event?.id).toBe(event.id);
    await delivery.accept();
    await Promise.all([publisher.close(), subscriber.close()]);
    await closeConnection(own);
  });
});
