import { type AmqpSubscriberOptions, amqpPublisher, amqpSubscriber } from "@posthorn/binding-amqp";
import { CloudEvent, type Delivery } from "@posthorn/core";
import { requireBroker } from "@posthorn/testkit";
import rhea, { type Connection } from "rhea";
import { describe, expect, it } from "vitest";
import { nextDelivery, rabbitFixture, uniqueName } from "./helpers.js";

// The subscriber's size limit, under its name in every binding (maxPayloadBytes) and its former
// one (maxMessageBytes), against RabbitMQ (AMQP_URL). Queues are declared over AMQP 0-9-1.
const ok = await requireBroker("amqp");

function event(id: string, size: number): CloudEvent {
  return new CloudEvent({
    specversion: "1.0",
    id,
    source: "/tests/limit",
    type: "t",
    datacontenttype: "application/octet-stream",
    data: new Uint8Array(size),
  });
}

describe.skipIf(!ok)("amqpSubscriber size limit (skipped: no broker outside CI)", () => {
  const rabbit = rabbitFixture();
  const { admin } = rabbit;

  /** Publishes a 1,500-byte and a 500-byte event, and returns the two deliveries, in order. */
  async function receive(
    limits: Pick<AmqpSubscriberOptions, "maxPayloadBytes" | "maxMessageBytes">,
  ): Promise<[Delivery, Delivery]> {
    const queue = await admin.queue(uniqueName("limit"));
    const address = `/amq/queue/${queue}`;
    const publisher = amqpPublisher(rabbit.connection, { address });
    const subscriber = amqpSubscriber(rabbit.connection, { address, ...limits });
    await Promise.all([publisher.ready, subscriber.ready]);
    try {
      await publisher.publish([event("big", 1500), event("small", 500)]);
      const it = subscriber[Symbol.asyncIterator]();
      const first = await nextDelivery(it);
      await first.accept();
      const second = await nextDelivery(it);
      await second.accept();
      return [first, second];
    } finally {
      await publisher.close();
      await subscriber.close();
    }
  }

  it("maxPayloadBytes: a body past it is a PayloadTooLarge delivery, a smaller one an event", async () => {
    const [big, small] = await receive({ maxPayloadBytes: 1000 });
    expect(big.event).toBeUndefined();
    expect(big.error?.code).toBe("PayloadTooLarge");
    expect(small.event?.id).toBe("small");
  });

  it("the deprecated maxMessageBytes still limits", async () => {
    const [big, small] = await receive({ maxMessageBytes: 1000 });
    expect(big.error?.code).toBe("PayloadTooLarge");
    expect(small.event?.id).toBe("small");
  });

  it("maxPayloadBytes wins when both are given", async () => {
    const [big] = await receive({ maxPayloadBytes: 2000, maxMessageBytes: 1000 });
    expect(big.error).toBeUndefined();
    expect(big.event?.id).toBe("big");
  });

  it("keeps the limits it was made with when the options object changes afterwards", async () => {
    // readAmqpMessage checks its limits on every call: the subscriber reads with the options it
    // checked, so a later NaN neither throws out of rhea's message event nor (as it did) turns
    // the limit off.
    const queue = await admin.queue(uniqueName("limit-later"));
    const address = `/amq/queue/${queue}`;
    const options: AmqpSubscriberOptions = { address, maxPayloadBytes: 1000 };
    const publisher = amqpPublisher(rabbit.connection, { address });
    const subscriber = amqpSubscriber(rabbit.connection, options);
    options.maxPayloadBytes = Number.NaN;
    try {
      await Promise.all([publisher.ready, subscriber.ready]);
      await publisher.publish([event("big", 1500), event("small", 500)]);
      const it = subscriber[Symbol.asyncIterator]();
      const big = await nextDelivery(it);
      await big.accept();
      const small = await nextDelivery(it);
      await small.accept();
      expect(big.error?.code).toBe("PayloadTooLarge");
      expect(small.event?.id).toBe("small");
    } finally {
      await publisher.close();
      await subscriber.close();
    }
  });

  /** Sends plain AMQP messages (no CloudEvent) over a bare rhea sender, each settled accepted. */
  function sendPlain(
    connection: Connection,
    address: string,
    messages: ReadonlyArray<{ body: Uint8Array; application_properties?: Record<string, string> }>,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      const sender = connection.open_sender(address);
      let settled = 0;
      let sent = false;
      sender.on("sendable", () => {
        if (sent) return;
        sent = true;
        for (const m of messages) {
          sender.send({ ...m, body: rhea.message.data_section(Buffer.from(m.body)) });
        }
      });
      sender.on("accepted", () => {
        if (++settled === messages.length) {
          sender.close();
          resolve();
        }
      });
      sender.on("rejected", (ctx) => reject(new Error(`rejected: ${JSON.stringify(ctx)}`)));
      sender.on("sender_error", (ctx) => reject(ctx.sender?.error));
    });
  }

  it("the limits apply to messages that are no CloudEvent too: PayloadTooLarge beside the message", async () => {
    const queue = await admin.queue(uniqueName("limit-plain"));
    const address = `/amq/queue/${queue}`;
    const many = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`p${i}`, "v"]));
    await sendPlain(rabbit.connection, address, [
      { body: new Uint8Array(1500).fill(7) },
      { body: new Uint8Array(10), application_properties: many },
      { body: new Uint8Array(500), application_properties: { p0: "v" } },
    ]);
    const subscriber = amqpSubscriber(rabbit.connection, {
      address,
      maxPayloadBytes: 1000,
      maxProperties: 10,
    });
    try {
      const it = subscriber[Symbol.asyncIterator]();
      // Both used to come out as plain messages without an error, whatever the limits.
      const big = await nextDelivery(it);
      expect(big.event).toBeUndefined();
      expect(big.error?.code).toBe("PayloadTooLarge");
      expect(big.error?.message).toContain("1500 bytes, more than the limit of 1000");
      // As for an event over the limit, the message is kept for the application to look at.
      expect(big.message.body.length).toBe(1500);
      await big.reject(big.error?.message);
      const crowded = await nextDelivery(it);
      expect(crowded.error?.code).toBe("PayloadTooLarge");
      expect(crowded.error?.message).toContain("20 application properties");
      await crowded.reject(crowded.error?.message);
      const small = await nextDelivery(it);
      expect(small.event).toBeUndefined();
      expect(small.error).toBeUndefined();
      expect(small.message.body.length).toBe(500);
      await small.accept();
    } finally {
      await subscriber.close();
    }
    expect(await admin.count(queue)).toEqual({ messages: 0, consumers: 0 });
  });
});
