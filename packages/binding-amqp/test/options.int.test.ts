import { amqpPublisher, amqpSubscriber } from "@posthorn/binding-amqp";
import { nextDelivery, refusedOption, requireBroker, shutdownEvent } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { rabbitFixture, uniqueName } from "./helpers.js";

// The publisher's numeric options against RabbitMQ (AMQP_URL): checked when it is made, and
// maxQueued 0 meaning what it says.
const ok = await requireBroker("amqp");

const refused = refusedOption;

const NaN_ = Number.NaN;

describe.skipIf(!ok)("amqpPublisher numeric options (skipped: no broker outside CI)", () => {
  const rabbit = rabbitFixture();
  const { admin } = rabbit;

  it("refuses NaN, negatives, fractions and a maxInFlight of 0", () => {
    const address = "/queue/never-attached";
    const cases: [object, string, string][] = [
      // No transfer could ever be sent: every publish waited for its timeoutMs.
      [{ maxInFlight: 0 }, "maxInFlight", "0"],
      [{ maxInFlight: NaN_ }, "maxInFlight", "NaN"],
      [{ maxInFlight: 1.5 }, "maxInFlight", "1.5"],
      [{ maxQueued: -1 }, "maxQueued", "-1"],
      [{ maxQueued: NaN_ }, "maxQueued", "NaN"],
      // Not finite, so no deadline at all: NaN waited for ever.
      [{ timeoutMs: NaN_ }, "timeoutMs", "NaN"],
      [{ timeoutMs: -1 }, "timeoutMs", "-1"],
      [{ closeTimeoutMs: NaN_ }, "closeTimeoutMs", "NaN"],
      // Not a flag: a string would have been taken as true.
      [{ durable: "yes" }, "durable", 'string "yes"'],
    ];
    for (const [options, option, shown] of cases) {
      expect(() => amqpPublisher(rabbit.connection, { address, ...options })).toThrow(
        refused(option, shown),
      );
    }
  });

  it("the subscriber refuses a credit of 0 (no message could ever come in), NaN, fractions and negative limits", () => {
    const address = "/queue/never-attached";
    const cases: [object, string, string][] = [
      [{ credit: 0 }, "credit", "0"],
      [{ credit: NaN_ }, "credit", "NaN"],
      [{ credit: 2.5 }, "credit", "2.5"],
      // Link credit is a 32-bit count on the wire (AMQP 1.0 2.7.4): there is no unlimited.
      [{ credit: Number.POSITIVE_INFINITY }, "credit", "Infinity"],
      [{ drainTimeoutMs: NaN_ }, "drainTimeoutMs", "NaN"],
      [{ drainTimeoutMs: -5 }, "drainTimeoutMs", "-5"],
      [{ maxPayloadBytes: NaN_ }, "maxPayloadBytes", "NaN"],
      [{ maxProperties: -1 }, "maxProperties", "-1"],
      [{ json: { maxDepth: 1.5 } }, "json.maxDepth", "1.5"],
    ];
    for (const [options, option, shown] of cases) {
      expect(() => amqpSubscriber(rabbit.connection, { address, ...options })).toThrow(
        refused(option, shown),
      );
    }
  });

  it("a per-call timeoutMs of NaN rejects the call with nothing sent", async () => {
    const queue = await admin.queue(uniqueName("opts-call"));
    const publisher = amqpPublisher(rabbit.connection, { address: `/amq/queue/${queue}` });
    await publisher.ready;
    await expect(publisher.publish(shutdownEvent("amqp", 0), { timeoutMs: NaN_ })).rejects.toEqual(
      refused("timeoutMs", "NaN"),
    );
    await publisher.close();
    expect(await admin.count(queue)).toEqual({ messages: 0, consumers: 0 });
  });

  it("a timeoutMs of 0 fails the publish with Timeout and sends nothing", async () => {
    const queue = await admin.queue(uniqueName("opts-zero"));
    const address = `/amq/queue/${queue}`;
    const watcher = amqpSubscriber(rabbit.connection, { address, credit: 10 });
    // The transfer went out on the attached link, and the first sweep failed the call.
    const given = amqpPublisher(rabbit.connection, { address, timeoutMs: 0 });
    const perCall = amqpPublisher(rabbit.connection, { address });
    await Promise.all([watcher.ready, given.ready, perCall.ready]);
    await expect(given.publish(shutdownEvent("amqp", 0))).rejects.toMatchObject({
      name: "PosthornError",
      code: "Timeout",
    });
    await expect(
      given.publish([shutdownEvent("amqp", 1), shutdownEvent("amqp", 2)]),
    ).rejects.toMatchObject({ code: "Timeout" });
    await expect(perCall.publish(shutdownEvent("amqp", 3), { timeoutMs: 0 })).rejects.toMatchObject(
      { code: "Timeout" },
    );
    // Long enough for a transfer sent to reach the queue and the watcher.
    await new Promise((resolve) => setTimeout(resolve, 200));
    await given.publish(shutdownEvent("amqp", 9), { timeoutMs: 5000 });
    const delivery = await nextDelivery(watcher[Symbol.asyncIterator](), 3000);
    await delivery.accept();
    // The queue is in order: anything sent before would have come first.
    expect(delivery.event?.id).toBe(shutdownEvent("amqp", 9).id);
    await Promise.all([given.close(), perCall.close(), watcher.close()]);
    expect(await admin.count(queue)).toEqual({ messages: 0, consumers: 0 });
  });

  it("maxQueued 0 sends what can go at once and refuses only what would wait", async () => {
    const queue = await admin.queue(uniqueName("opts-queued-0"));
    const publisher = amqpPublisher(rabbit.connection, {
      address: `/amq/queue/${queue}`,
      maxQueued: 0,
      maxInFlight: 1,
    });
    await publisher.ready;
    // It refused every publish, credit or not.
    const first = publisher.publish(shutdownEvent("amqp", 1));
    const second = publisher.publish(shutdownEvent("amqp", 2));
    await expect(second).rejects.toMatchObject({ code: "PublishRejected", retryable: true });
    await expect(first).resolves.toBeUndefined();
    await expect(publisher.publish(shutdownEvent("amqp", 3))).resolves.toBeUndefined();
    await publisher.close();
    expect(await admin.count(queue)).toEqual({ messages: 2, consumers: 0 });
  });
});
