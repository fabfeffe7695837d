// The rhea link options that decide settlement (senderOptions, receiverOptions) against RabbitMQ
// (AMQP_URL): values the binding works with, and the others refused before anything is attached.
import { amqpPublisher, amqpSubscriber } from "@posthorn/binding-amqp";
import { nextDelivery, refusedOption, requireBroker, shutdownEvent } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { rabbitFixture, uniqueName } from "./helpers.js";

const ok = await requireBroker("amqp");

const events = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => shutdownEvent("amqp", from + i));

describe.skipIf(!ok)("AMQP link settlement options (skipped: no broker outside CI)", () => {
  const rabbit = rabbitFixture();
  const { admin } = rabbit;

  it("senderOptions.snd_settle_mode 1 publishes at-most-once: each publish resolves once sent, and RabbitMQ queues every message", async () => {
    const queue = await admin.queue(uniqueName("settle-presettled"));
    const publisher = amqpPublisher(rabbit.connection, {
      address: `/amq/queue/${queue}`,
      senderOptions: { snd_settle_mode: 1 },
      timeoutMs: 3000,
      maxInFlight: 2,
    });
    await publisher.ready;
    // Every publish failed with Timeout, waiting for an outcome a pre-settled transfer never
    // gets, while RabbitMQ queued the message (a retry duplicated it).
    for (const event of events(0, 3))
      await expect(publisher.publish(event)).resolves.toBeUndefined();
    await expect(publisher.publish(events(3, 7))).resolves.toBeUndefined();
    await expect(
      publisher.publish(shutdownEvent("amqp", 10), { fields: { subject: "rhea-encoded" } }),
    ).resolves.toBeUndefined();
    await publisher.close();
    // The last transfers may still be on their way to the queue.
    let count = await admin.count(queue);
    for (let i = 0; i < 20 && count.messages < 11; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      count = await admin.count(queue);
    }
    expect(count).toEqual({ messages: 11, consumers: 0 });
  });

  it("senderOptions.snd_settle_mode 2 (mixed) publishes unsettled, resolving on accepted", async () => {
    const queue = await admin.queue(uniqueName("settle-mixed"));
    const publisher = amqpPublisher(rabbit.connection, {
      address: `/amq/queue/${queue}`,
      senderOptions: { snd_settle_mode: 2 },
    });
    await expect(publisher.publish(events(0, 4))).resolves.toBeUndefined();
    await publisher.close();
    expect(await admin.count(queue)).toEqual({ messages: 4, consumers: 0 });
  });

  it("refuses sender settlement options the publisher cannot work with, naming the option", () => {
    const address = "/queue/never-attached";
    const cases: [Record<string, unknown>, string, string][] = [
      // Second: RabbitMQ would wait for a settlement the publisher never sends.
      [{ rcv_settle_mode: 1 }, "senderOptions.rcv_settle_mode", "1"],
      [{ snd_settle_mode: 3 }, "senderOptions.snd_settle_mode", "3"],
      [{ snd_settle_mode: "settled" }, "senderOptions.snd_settle_mode", 'string "settled"'],
      [{ autosettle: false }, "senderOptions.autosettle", "false"],
      [{ treat_modified_as_released: true }, "senderOptions.treat_modified_as_released", "true"],
    ];
    for (const [senderOptions, option, shown] of cases) {
      expect(() => amqpPublisher(rabbit.connection, { address, senderOptions })).toThrow(
        refusedOption(option, shown),
      );
    }
    expect(() =>
      amqpPublisher(rabbit.connection, { address, senderOptions: "x" as never }),
    ).toThrow(refusedOption("senderOptions", 'string "x"'));
  });

  it("refuses receiver settlement and credit options the subscriber cannot work with, naming the option", () => {
    const address = "/queue/never-attached";
    const cases: [Record<string, unknown>, string, string][] = [
      // Pre-settled deliveries: release() lost the message, which RabbitMQ had already dropped.
      [{ snd_settle_mode: 1 }, "receiverOptions.snd_settle_mode", "1"],
      [{ snd_settle_mode: 2 }, "receiverOptions.snd_settle_mode", "2"],
      [{ rcv_settle_mode: 1 }, "receiverOptions.rcv_settle_mode", "1"],
      [{ autoaccept: true }, "receiverOptions.autoaccept", "true"],
      [{ autosettle: false }, "receiverOptions.autosettle", "false"],
      [{ credit_window: 10 }, "receiverOptions.credit_window", "10"],
    ];
    for (const [receiverOptions, option, shown] of cases) {
      expect(() => amqpSubscriber(rabbit.connection, { address, receiverOptions })).toThrow(
        refusedOption(option, shown),
      );
    }
  });

  it("takes the binding's own values, and release() still hands the message back", async () => {
    const queue = await admin.queue(uniqueName("settle-own"));
    const address = `/amq/queue/${queue}`;
    const publisher = amqpPublisher(rabbit.connection, {
      address,
      senderOptions: {
        snd_settle_mode: 0,
        rcv_settle_mode: 0,
        autosettle: true,
        treat_modified_as_released: false,
      },
    });
    const subscriber = amqpSubscriber(rabbit.connection, {
      address,
      credit: 1,
      receiverOptions: {
        snd_settle_mode: 0,
        rcv_settle_mode: 0,
        autoaccept: false,
        autosettle: true,
        credit_window: 0,
      },
    });
    await publisher.publish(shutdownEvent("amqp", 1));
    const iterator = subscriber[Symbol.asyncIterator]();
    const first = await nextDelivery(iterator, 5000);
    await first.release();
    const again = await nextDelivery(iterator, 5000);
    expect(again.event?.id).toBe(shutdownEvent("amqp", 1).id);
    expect(again.deliveryCount).toBe(2);
    await again.accept();
    await Promise.all([publisher.close(), subscriber.close()]);
    expect(await admin.count(queue)).toEqual({ messages: 0, consumers: 0 });
  });

  it('releaseOutcome "modified": refused on RabbitMQ 3.x once attached, before any credit (the message stays queued); on RabbitMQ 4 a released message comes back', async () => {
    // On 3.x the plugin ended the session at the first release() (amqp:invalid-field,
    // "Unrecognised state"): iteration failed with ConnectionFailed and every delivery in hand
    // was lost.
    const version = String(
      (rabbit.connection as unknown as { properties?: { version?: unknown } }).properties?.version,
    );
    const major = Number.parseInt(version, 10);
    expect(major, `the broker's version (${version})`).toBeGreaterThanOrEqual(3);
    const queue = await admin.queue(uniqueName("settle-modified"));
    const address = `/amq/queue/${queue}`;
    const publisher = amqpPublisher(rabbit.connection, { address });
    await publisher.publish(shutdownEvent("amqp", 1));
    let subscriber = amqpSubscriber(rabbit.connection, { address, releaseOutcome: "modified" });
    if (major < 4) {
      await expect(subscriber.ready).rejects.toMatchObject({
        code: "NotSupported",
        attribute: "releaseOutcome",
      });
      await expect(nextDelivery(subscriber[Symbol.asyncIterator](), 2000)).rejects.toMatchObject({
        code: "NotSupported",
      });
      await subscriber.close();
      // Nothing was delivered, and the connection carries a released redelivery as before.
      subscriber = amqpSubscriber(rabbit.connection, { address, credit: 1 });
    }
    const iterator = subscriber[Symbol.asyncIterator]();
    const first = await nextDelivery(iterator, 5000);
    expect(first.deliveryCount).toBe(1);
    await first.release();
    const again = await nextDelivery(iterator, 5000);
    expect(again.event?.id).toBe(shutdownEvent("amqp", 1).id);
    await again.accept();
    await Promise.all([publisher.close(), subscriber.close()]);
    expect(await admin.count(queue)).toEqual({ messages: 0, consumers: 0 });
  });
});
