import { getEventListeners } from "node:events";
import { amqpPublisher } from "@posthorn/binding-amqp";
import { isPosthornError } from "@posthorn/core";
import { requireBroker, shutdownEvent, unencodableEvent } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { rabbitFixture, uniqueName } from "./helpers.js";

// publish(array) against RabbitMQ (AMQP_URL): an event that cannot be encoded fails the whole
// call before anything is sent. The queue is declared, and counted, over AMQP 0-9-1.
const ok = await requireBroker("amqp");

describe.skipIf(!ok)("amqpPublisher publish(array) (skipped: no broker outside CI)", () => {
  const rabbit = rabbitFixture();
  const { admin } = rabbit;

  it("rejects with the encoding error and the queue gets none of the array", async () => {
    const queue = await admin.queue(uniqueName("array-invalid"));
    const invalid = unencodableEvent("amqp");
    const publisher = amqpPublisher(rabbit.connection, { address: `/amq/queue/${queue}` });
    await publisher.ready;
    // With message fields and without: the two encoding paths of the publisher.
    for (const fields of [undefined, { subject: "s" }]) {
      const err = await publisher
        .publish(
          [shutdownEvent("amqp", 1), invalid, shutdownEvent("amqp", 3)],
          fields ? { fields } : {},
        )
        .catch((e: unknown) => e);
      expect(isPosthornError(err, "InvalidEvent")).toBe(true);
    }
    // One message after, accepted once queued: whatever went before it is queued too.
    await publisher.publish(shutdownEvent("amqp", 4));
    await publisher.close();
    expect(await admin.count(queue)).toEqual({ messages: 1, consumers: 0 });
  });

  it("an array that does not fit in maxQueued is refused whole, retryable, with nothing sent; one that fits goes out whole", async () => {
    const queue = await admin.queue(uniqueName("array-queued"));
    const address = `/amq/queue/${queue}`;
    const events = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => shutdownEvent("amqp", from + i));
    // Published before the link is attached: every event waits in the queue.
    const early = amqpPublisher(rabbit.connection, { address, maxQueued: 5 });
    const err = await early.publish(events(0, 8)).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: "PosthornError", code: "PublishRejected", retryable: true });
    // close() waits for what was queued. The first five of the refused array used to go out:
    // retried, as the error invites, they arrived twice.
    await early.close();
    expect(await admin.count(queue)).toEqual({ messages: 0, consumers: 0 });
    const retry = amqpPublisher(rabbit.connection, { address, maxQueued: 5 });
    await expect(retry.publish(events(10, 5))).resolves.toBeUndefined();
    await retry.close();
    // Attached, with credit: what the link can send at once counts as room too.
    const attached = amqpPublisher(rabbit.connection, { address, maxQueued: 2, maxInFlight: 3 });
    await attached.ready;
    await expect(attached.publish(events(20, 5))).resolves.toBeUndefined();
    await expect(attached.publish(events(30, 6))).rejects.toMatchObject({
      code: "PublishRejected",
    });
    await attached.close();
    expect(await admin.count(queue)).toEqual({ messages: 10, consumers: 0 });
  });

  it("listens for an abortSignal once per call, not once per message: no leak warning, none left", async () => {
    const queue = await admin.queue(uniqueName("array-abort"));
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      const publisher = amqpPublisher(rabbit.connection, {
        address: `/amq/queue/${queue}`,
        maxInFlight: 4,
      });
      await publisher.ready;
      const events = (from: number) =>
        Array.from({ length: 50 }, (_, i) => shutdownEvent("amqp", from + i));
      // Delivered in full.
      const kept = new AbortController();
      await publisher.publish(events(0), { abortSignal: kept.signal });
      expect(getEventListeners(kept.signal, "abort")).toHaveLength(0);
      // Aborted while most of the array still waits for its turn (4 in flight at most).
      const stopped = new AbortController();
      const publishing = publisher.publish(events(100), { abortSignal: stopped.signal });
      expect(getEventListeners(stopped.signal, "abort")).toHaveLength(1);
      stopped.abort();
      const err = await publishing.catch((e: unknown) => e);
      expect(isPosthornError(err, "Aborted")).toBe(true);
      expect(getEventListeners(stopped.signal, "abort")).toHaveLength(0);
      await publisher.close();
      // Node reports a listener leak on the next turn of the event loop.
      await new Promise((r) => setTimeout(r, 50));
      expect(warnings.map((w) => w.name)).not.toContain("MaxListenersExceededWarning");
      const { messages } = await admin.count(queue);
      expect(messages).toBeGreaterThanOrEqual(50);
      expect(messages).toBeLessThan(100);
    } finally {
      process.off("warning", onWarning);
    }
  });
});
