import { type AmqpSubscriberOptions, amqpPublisher, amqpSubscriber } from "@posthorn/binding-amqp";
import { CloudEvent, type Delivery } from "@posthorn/core";
import { requireBroker } from "@posthorn/testkit";
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
});
