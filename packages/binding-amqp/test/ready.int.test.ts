// Core's Subscriber.ready on RabbitMQ (AMQP_URL, default amqp://guest:guest@127.0.0.1:5672).
// A `/topic/<key>` source is a queue the broker makes for the link and binds to amq.topic when
// the link attaches: a message published before that goes nowhere, so only a resolved `ready`
// makes the delivery certain.
import { amqpPublisher, amqpSubscriber } from "@posthorn/binding-amqp";
import { CloudEvent, isPosthornError, type Subscriber } from "@posthorn/core";
import { requireBroker } from "@posthorn/testkit";
import type { Connection } from "rhea";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeConnection, connectRabbit, nextDelivery, uniqueName } from "./helpers.js";

const ok = await requireBroker("amqp");

describe.skipIf(!ok)("amqpSubscriber ready on RabbitMQ (skipped: no broker outside CI)", () => {
  let subscribing: Connection;
  let publishing: Connection;
  beforeAll(async () => {
    subscribing = await connectRabbit();
    publishing = await connectRabbit();
  });
  afterAll(async () => {
    await closeConnection(subscribing);
    await closeConnection(publishing);
  });

  it("resolves once the link is attached, and a message published then from another connection arrives", async () => {
    const key = uniqueName("ready");
    const publisher = amqpPublisher(publishing, { address: `/topic/${key}` });
    await publisher.ready;
    const subscriber: Subscriber = amqpSubscriber(subscribing, { address: `/topic/${key}` });
    await subscriber.ready;
    const event = new CloudEvent({
      specversion: "1.0",
      id: "r-1",
      source: "/ready",
      type: "com.example.ready",
    });
    await publisher.publish(event);
    const delivery = await nextDelivery(subscriber[Symbol.asyncIterator](), 5000);
    expect(delivery.event?.id).toBe("r-1");
    await delivery.accept();
    await subscriber.close();
    await publisher.close();
  });

  it("rejects with Closed when closed before the link attached, instead of never settling", async () => {
    const subscriber = amqpSubscriber(subscribing, { address: `/topic/${uniqueName("early")}` });
    const closed = subscriber.close();
    await expect(
      Promise.race([
        subscriber.ready.then(
          () => "resolved",
          (err: unknown) => err,
        ),
        new Promise((resolve) => setTimeout(() => resolve("pending after 3 s"), 3000)),
      ]),
    ).resolves.toMatchObject({ name: "PosthornError", code: "Closed" });
    await closed;
  });

  it("the publisher's ready rejects with Closed when it is closed before the link attached", async () => {
    const publisher = amqpPublisher(publishing, { address: `/topic/${uniqueName("early")}` });
    const closed = publisher.close();
    // It used to stay pending for as long as the link was not attached, or resolve when the
    // attach came after close().
    expect(
      await Promise.race([
        publisher.ready.then(
          () => "resolved",
          (err: unknown) => err,
        ),
        new Promise((resolve) => setTimeout(() => resolve("pending after 3 s"), 3000)),
      ]),
    ).toMatchObject({ name: "PosthornError", code: "Closed" });
    await closed;
  });

  it("rejects with a PosthornError when the broker refuses the link", async () => {
    const connection = await connectRabbit();
    try {
      const subscriber = amqpSubscriber(connection, {
        address: `/amq/queue/${uniqueName("missing")}`,
      });
      const error = await subscriber.ready.then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(isPosthornError(error)).toBe(true);
      // RabbitMQ ended the link's session: close() has nothing to wait for.
      const started = performance.now();
      await subscriber.close();
      expect(performance.now() - started).toBeLessThan(1000);
    } finally {
      await closeConnection(connection);
    }
  });
});
