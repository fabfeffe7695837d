// rhea to rhea with no broker: a rhea container listens on a port the system picks and relays messages from
// the publisher's link to the subscriber's, so the whole binding runs over real AMQP frames.

import type { Socket } from "node:net";
import { amqpPublisher, amqpSubscriber } from "@posthorn/binding-amqp";
import { CloudEvent, isPosthornError } from "@posthorn/core";
import {
  type BindingPath,
  countSocketWrites,
  describeBindingConformance,
  vector,
} from "@posthorn/testkit";
import rhea, { type Connection } from "rhea";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FORMATS } from "./formats.js";
import {
  closeConnection,
  linkHarness,
  nextDelivery,
  openConnection,
  startPeer,
  uniqueName,
} from "./helpers.js";

const formats = FORMATS;
const paths: BindingPath[] = [
  { mode: "binary" },
  ...formats.map((format) => ({ mode: "structured" as const, format })),
];

type Peer = Awaited<ReturnType<typeof startPeer>>;
let peer: Peer | undefined;
let port = 0;

async function ensurePeer(): Promise<Peer> {
  if (!peer) {
    peer = await startPeer();
    port = peer.port;
  }
  return peer;
}

const connections: Connection[] = [];
async function connect(): Promise<Connection> {
  await ensurePeer();
  const connection = await openConnection({ host: "127.0.0.1", port });
  connections.push(connection);
  return connection;
}

afterAll(async () => {
  for (const c of connections) await closeConnection(c);
  await peer?.stop();
});

describeBindingConformance(
  linkHarness({
    name: "amqp (rhea to rhea, no broker)",
    paths,
    formats,
    connect,
    async addresses(label) {
      const address = uniqueName(`peer-${label}`);
      return { publish: address, consume: address };
    },
  }),
);

describe("amqp peer to peer", () => {
  let connection: Connection;
  beforeAll(async () => {
    connection = await connect();
  });

  it("sends Integer, Boolean, Binary and Timestamp attributes as AMQP int/long, boolean, binary, timestamp", async () => {
    const address = uniqueName("typed");
    const subscriber = amqpSubscriber(connection, { address });
    const publisher = amqpPublisher(connection, { address, integerType: "int" });
    await Promise.all([subscriber.ready, publisher.ready]);
    // Capture the raw bytes the peer decodes, to read the AMQP type codes.
    const raw: Buffer[] = [];
    const original = rhea.message.decode;
    rhea.message.decode = (buffer: Buffer) => {
      raw.push(buffer);
      return original(buffer);
    };
    try {
      await publisher.publish(
        new CloudEvent({
          specversion: "1.0",
          id: "typed-1",
          source: "/t",
          type: "t",
          time: "2024-01-02T03:04:05.678Z",
          priority: 300,
          flagged: true,
          sig: new Uint8Array([1, 2, 3]),
        }),
      );
      const delivery = await nextDelivery(subscriber[Symbol.asyncIterator]());
      await delivery.accept();
      expect(delivery.event?.priority).toBe(300);
      expect(delivery.event?.flagged).toBe(true);
      expect(delivery.event?.sig).toEqual(new Uint8Array([1, 2, 3]));
      expect(delivery.event?.time).toBe("2024-01-02T03:04:05.678Z");
    } finally {
      rhea.message.decode = original;
    }
    const { Reader } = rhea.types as unknown as {
      Reader: new (b: Buffer) => { remaining(): number; read(): unknown };
    };
    // The first decode is the peer reading the publisher's transfer (the relay re-encodes).
    const types: Record<string, string> = {};
    for (const buffer of raw.slice(0, 1)) {
      const reader = new Reader(buffer);
      while (reader.remaining()) {
        const s = reader.read() as {
          descriptor?: { value: unknown };
          value: Array<{ type: { name: string }; value: unknown }>;
        };
        if (Number(s.descriptor?.value) !== 0x74) continue;
        for (let i = 0; i + 1 < s.value.length; i += 2) {
          types[String(s.value[i]?.value)] = s.value[i + 1]?.type.name ?? "";
        }
      }
    }
    expect(types).toMatchObject({
      "cloudEvents:priority": "Int",
      "cloudEvents:flagged": "True",
      "cloudEvents:sig": "Vbin8",
      "cloudEvents:time": "Timestamp",
      "cloudEvents:id": "Str8",
    });
    await publisher.close();
    await subscriber.close();
  });

  it("settles with the AMQP outcomes: accepted, released, modified with delivery-failed, rejected with a condition", async () => {
    const p = await ensurePeer();
    const address = uniqueName("settle");
    const modifiedSubscriber = amqpSubscriber(connection, {
      address,
      releaseOutcome: "modified",
      rejectCondition: "example:bad-order",
    });
    const publisher = amqpPublisher(connection, { address });
    await Promise.all([modifiedSubscriber.ready, publisher.ready]);
    const iterator = modifiedSubscriber[Symbol.asyncIterator]();
    const e = vector("typical").event;
    await publisher.publish([e, e, e]);
    await (await nextDelivery(iterator)).accept();
    await (await nextDelivery(iterator)).release();
    await (await nextDelivery(iterator)).reject("no such customer");
    await new Promise((r) => setTimeout(r, 100));
    const seen = p.outcomes.filter((o) => o.address === address);
    expect(seen.map((o) => o.outcome)).toEqual(["accepted", "modified", "rejected"]);
    expect(seen[1]?.state).toMatchObject({ delivery_failed: true });
    expect(seen[2]?.state?.error).toMatchObject({
      condition: "example:bad-order",
      description: "no such customer",
    });
    await publisher.close();
    await modifiedSubscriber.close();
  });

  it("a rejected publish fails with PublishRejected and the condition; a released one is retryable", async () => {
    const rejecting = amqpPublisher(connection, { address: uniqueName("reject") });
    const releasing = amqpPublisher(connection, { address: uniqueName("release") });
    await Promise.all([rejecting.ready, releasing.ready]);
    const rejected = await rejecting.publish(vector("minimal").event).catch((e: unknown) => e);
    expect(rejected).toMatchObject({
      name: "PosthornError",
      code: "PublishRejected",
      protocolCode: "amqp:precondition-failed",
      retryable: false,
    });
    expect(String((rejected as Error).message)).toContain("refused by the test peer");
    const released = await releasing.publish(vector("minimal").event).catch((e: unknown) => e);
    expect(released).toMatchObject({
      code: "PublishRejected",
      protocolCode: "amqp:released",
      retryable: true,
    });
    await Promise.all([rejecting.close(), releasing.close()]);
  });

  it("sets extra AMQP message fields per publish (subject, message-id) next to the binding's", async () => {
    const address = uniqueName("fields");
    const subscriber = amqpSubscriber(connection, { address });
    const publisher = amqpPublisher(connection, { address });
    await Promise.all([subscriber.ready, publisher.ready]);
    await publisher.publish(vector("typical").event, {
      fields: { subject: "order.created", message_id: "m-42" },
    });
    const delivery = await nextDelivery(subscriber[Symbol.asyncIterator]());
    // What AMQP cannot do, said in its words (it was "this transport cannot ...").
    await expect(delivery.inProgress()).rejects.toMatchObject({
      code: "NotSupported",
      message: expect.stringContaining("AMQP 1.0 has no acknowledgement wait to extend"),
    });
    await expect(delivery.release({ delayMs: 100 })).rejects.toMatchObject({
      code: "NotSupported",
      message: expect.stringContaining("AMQP 1.0 has no delayed redelivery"),
    });
    await delivery.accept();
    expect(delivery.message.metadata).toMatchObject({
      subject: "order.created",
      messageId: "m-42",
    });
    expect(delivery.event?.id).toBe(vector("typical").event.id);
    expect(delivery.event?.data).toEqual(vector("typical").event.data);
    await Promise.all([publisher.close(), subscriber.close()]);
  });

  it("writes the transfers of publishes made in one tick in one system call, and loses none", async () => {
    const address = uniqueName("coalesce");
    const own = await connect();
    const subscriber = amqpSubscriber(own, { address, credit: 500 });
    const publisher = amqpPublisher(own, { address, maxInFlight: 500 });
    await Promise.all([subscriber.ready, publisher.ready]);
    const writes = countSocketWrites((own as unknown as { socket: Socket }).socket);
    try {
      const events = Array.from({ length: 200 }, (_, i) =>
        vector("typical").event.cloneWith({ id: `coalesce-${i}` }),
      );
      const sent = Promise.all(events.map((e) => publisher.publish(e)));
      // Every transfer was written before the first disposition could arrive.
      const flushed = new Promise((resolve) => setImmediate(resolve));
      await flushed;
      expect(writes.calls).toBeLessThanOrEqual(2);
      await sent;
      const iterator = subscriber[Symbol.asyncIterator]();
      const ids = new Set<string>();
      for (let i = 0; i < events.length; i++) {
        const delivery = await nextDelivery(iterator);
        ids.add(delivery.event?.id ?? "");
        await delivery.accept();
      }
      expect(ids.size).toBe(events.length);
    } finally {
      writes.restore();
      await Promise.all([publisher.close(), subscriber.close()]);
    }
  });

  it("reads delivery-count from the message header", async () => {
    const p = await ensurePeer();
    const address = uniqueName("count");
    const subscriber = amqpSubscriber(connection, { address });
    await subscriber.ready;
    p.inject(address, {
      delivery_count: 2,
      application_properties: { n: 1 },
      body: rhea.message.data_section(Buffer.from("x")),
    });
    const delivery = await nextDelivery(subscriber[Symbol.asyncIterator]());
    expect(delivery.deliveryCount).toBe(3);
    expect(delivery.event).toBeUndefined();
    expect(delivery.message.properties).toEqual({ n: 1 });
    await delivery.accept();
    await subscriber.close();
  });

  it("releases unsettled deliveries on close and refuses to settle them afterwards", async () => {
    const p = await ensurePeer();
    const address = uniqueName("close");
    const subscriber = amqpSubscriber(connection, { address, credit: 5 });
    const publisher = amqpPublisher(connection, { address });
    await Promise.all([subscriber.ready, publisher.ready]);
    await publisher.publish([vector("minimal").event, vector("minimal").event]);
    const iterator = subscriber[Symbol.asyncIterator]();
    const held = await nextDelivery(iterator);
    await new Promise((r) => setTimeout(r, 50));
    await subscriber.close();
    await new Promise((r) => setTimeout(r, 50));
    const released = p.outcomes.filter((o) => o.address === address && o.outcome === "released");
    expect(released).toHaveLength(2);
    let thrown: unknown;
    try {
      await held.accept();
    } catch (err) {
      thrown = err;
    }
    expect(isPosthornError(thrown, "SettlementFailed")).toBe(true);
    expect((await iterator.next()).done).toBe(true);
    await publisher.close();
  });

  it("waits for credit: a peer that grants none times the publish out, with nothing buffered past maxQueued", async () => {
    // A receiver link with no credit on the peer side: the peer grants none to this sender.
    const p = await ensurePeer();
    const address = uniqueName("nocredit");
    expect(p.outcomes).toBeDefined();
    const publisher = amqpPublisher(connection, { address, timeoutMs: 200, maxQueued: 2 });
    await publisher.ready;
    const results = await Promise.allSettled([
      publisher.publish(vector("minimal").event),
      publisher.publish(vector("minimal").event),
      publisher.publish(vector("minimal").event),
    ]);
    const codes = results.map((r) => (r.status === "rejected" ? r.reason.code : "ok"));
    expect(codes).toEqual(["Timeout", "Timeout", "PublishRejected"]);
    const controller = new AbortController();
    const aborted = publisher
      .publish(vector("minimal").event, { abortSignal: controller.signal, timeoutMs: 5000 })
      .catch((e: unknown) => e);
    controller.abort();
    expect(await aborted).toMatchObject({ code: "Aborted" });
    await publisher.close();
  });
});
