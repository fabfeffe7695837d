// Graceful shutdown against the shared RabbitMQ (AMQP_URL): close() drains the publisher and
// releases the subscriber's unsettled deliveries, and nothing is left open afterwards.
import { amqpPublisher, amqpSubscriber } from "@posthorn/binding-amqp";
import type { Delivery } from "@posthorn/core";
import {
  baselineHandles,
  brokerUrl,
  expectNoLeakedHandles,
  requireBroker,
  shutdownEvent,
} from "@posthorn/testkit";
import amqplib from "amqplib";
import { describe, expect, it } from "vitest";
import { closeConnection, connectRabbit, nextDelivery, uniqueName } from "./helpers.js";

const ok = await requireBroker("amqp");

describe.skipIf(!ok)("AMQP graceful shutdown (skipped: no broker outside CI)", () => {
  it("close() waits for in-flight publishes, releases unsettled deliveries to the next consumer, and leaks no socket or timer", {
    timeout: 30_000,
  }, async () => {
    const total = 300;
    const admin = await amqplib.connect(brokerUrl("amqp") as string);
    const channel = await admin.createChannel();
    const queue = uniqueName("shutdown");
    await channel.assertQueue(queue, { durable: false });
    const baseline = await baselineHandles();
    try {
      const connection = await connectRabbit();
      const publisher = amqpPublisher(connection, { address: `/amq/queue/${queue}` });
      await publisher.ready;
      // Publishes still in flight when close() is called: close resolves only after every one
      // of them has its disposition, and all of them are accepted.
      const outcomes = Array.from({ length: total }, (_, i) =>
        publisher.publish(shutdownEvent("amqp", i)).then(
          () => "accepted",
          (err: unknown) => `failed: ${String(err)}`,
        ),
      );
      await publisher.close();
      const settledAtClose = await Promise.race([
        Promise.all(outcomes),
        new Promise<undefined>((r) => setImmediate(() => r(undefined))),
      ]);
      expect(settledAtClose).toEqual(Array(total).fill("accepted"));
      await expect(publisher.publish(shutdownEvent("amqp", -1))).rejects.toMatchObject({
        code: "Closed",
      });

      // A subscriber holding deliveries (some handed out, the rest prefetched by its credit).
      const subscriber = amqpSubscriber(connection, { address: `/amq/queue/${queue}`, credit: 50 });
      const iterator = subscriber[Symbol.asyncIterator]();
      const held: Delivery[] = [];
      for (let i = 0; i < 20; i++) held.push(await nextDelivery(iterator));
      for (const d of held.slice(0, 10)) await d.accept();
      await subscriber.close();
      // Settling after close is refused (the delivery went back to the broker), not lost silently.
      await expect(held[15]?.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
      expect(await iterator.next()).toMatchObject({ done: true });

      // Everything but the 10 accepted comes back, to another consumer.
      const next = amqpSubscriber(connection, { address: `/amq/queue/${queue}`, credit: 100 });
      const again = new Set<string>();
      const it2 = next[Symbol.asyncIterator]();
      while (again.size < total - 10) {
        const d = await nextDelivery(it2);
        again.add(d.event?.id ?? "?");
        await d.accept();
      }
      for (const d of held.slice(0, 10)) expect(again.has(d.event?.id ?? "")).toBe(false);
      for (const d of held.slice(10)) expect(again.has(d.event?.id ?? "")).toBe(true);
      await next.close();
      await closeConnection(connection);
      const after = await expectNoLeakedHandles(baseline);
      console.log(
        `shutdown amqp: ${total} in-flight publishes drained by close(), 10 held and 30 prefetched deliveries released; handles before ${JSON.stringify(baseline)}, after ${JSON.stringify(after)}`,
      );
    } finally {
      await channel.deleteQueue(queue);
      await channel.close();
      await admin.close();
    }
  });
});
