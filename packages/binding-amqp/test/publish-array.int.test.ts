import { amqpPublisher } from "@posthorn/binding-amqp";
import { isPosthornError } from "@posthorn/core";
import { brokerUrl, requireBroker, shutdownEvent, unencodableEvent } from "@posthorn/testkit";
import amqplib from "amqplib";
import type { Connection } from "rhea";
import { afterAll, describe, expect, it } from "vitest";
import { closeConnection, connectRabbit, uniqueName } from "./helpers.js";

// publish(array) against RabbitMQ (AMQP_URL): an event that cannot be encoded fails the whole
// call before anything is sent. The queue is declared, and counted, over AMQP 0-9-1.
const ok = await requireBroker("amqp");

describe.skipIf(!ok)("amqpPublisher publish(array) (skipped: no broker outside CI)", () => {
  let admin: amqplib.ChannelModel | undefined;
  let connection: Connection | undefined;
  afterAll(async () => {
    if (connection) await closeConnection(connection);
    await admin?.close();
  });

  it("rejects with the encoding error and the queue gets none of the array", async () => {
    admin = await amqplib.connect(brokerUrl("amqp") as string);
    const channel = await admin.createChannel();
    const queue = uniqueName("array-invalid");
    await channel.assertQueue(queue, { durable: false, autoDelete: false });
    try {
      connection = await connectRabbit();
      const invalid = unencodableEvent("amqp");
      const publisher = amqpPublisher(connection, { address: `/amq/queue/${queue}` });
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
      const queued: unknown[] = [];
      for (;;) {
        const message = await channel.get(queue, { noAck: true });
        if (message === false) break;
        queued.push(message);
      }
      expect(queued).toHaveLength(1);
    } finally {
      await channel.deleteQueue(queue);
      await channel.close();
    }
  });
});
