// Which published messages survive a broker restart, against a RabbitMQ node of this file's own
// (private-rabbitmq.ts): the shared broker on 5672 serves other tests and must not be restarted.
import { amqpPublisher, amqpSubscriber } from "@posthorn/binding-amqp";
import { faultEvent, inCi } from "@posthorn/testkit";
import amqplib from "amqplib";
import type { Connection } from "rhea";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeConnection, nextDelivery, openConnection, uniqueName } from "./helpers.js";
import {
  type PrivateRabbitMq,
  rabbitMqBinaries,
  startPrivateRabbitMq,
} from "./private-rabbitmq.js";

const installed = rabbitMqBinaries() !== undefined;
if (!installed && inCi()) {
  throw new Error(
    "rabbitmq-server is not installed; under CI=true the AMQP restart tests must run",
  );
}

describe.skipIf(!installed)(
  "AMQP 1.0 message durability across a broker restart (a private RabbitMQ node)",
  () => {
    let broker: PrivateRabbitMq;
    const connections: Connection[] = [];

    beforeAll(async () => {
      broker = await startPrivateRabbitMq();
    }, 60_000);

    afterAll(async () => {
      for (const c of connections.splice(0)) await closeConnection(c);
      await broker?.dispose();
    }, 30_000);

    async function connect(): Promise<Connection> {
      const c = await openConnection({
        host: broker.host,
        port: broker.port,
        username: "guest",
        password: "guest",
      });
      connections.push(c);
      return c;
    }

    /** Declares a durable queue over AMQP 0-9-1 (the AMQP 1.0 plugin cannot) and returns its name. */
    async function durableQueue(label: string): Promise<string> {
      const admin = await amqplib.connect(`amqp://guest:guest@${broker.host}:${broker.port}`);
      const channel = await admin.createChannel();
      const name = uniqueName(label);
      await channel.assertQueue(name, { durable: true });
      await admin.close();
      return name;
    }

    it("messages published without fields.durable survive a restart of a durable queue; durable: false ones do not", {
      timeout: 120_000,
    }, async () => {
      const queue = await durableQueue("durability");
      const address = `/amq/queue/${queue}`;
      const before = await connect();
      const publisher = amqpPublisher(before, { address });
      const transient = amqpPublisher(before, { address, durable: false });
      await Promise.all([publisher.ready, transient.ready]);
      // The binding's own encoder (no fields), and rhea's (fields given, durable not among them).
      await publisher.publish([faultEvent("amqp", 1), faultEvent("amqp", 2)]);
      await publisher.publish(faultEvent("amqp", 3), { fields: { subject: "kept" } });
      // Transient on request: per call, and publisher-wide (a per-call durable: true wins).
      await publisher.publish(faultEvent("amqp", 4), { fields: { durable: false } });
      await transient.publish(faultEvent("amqp", 5));
      await transient.publish(faultEvent("amqp", 6), { fields: { durable: true } });
      await Promise.all([publisher.close(), transient.close()]);
      const listed = await broker.ctl("list_queues", "name", "durable", "messages");
      expect(listed).toMatch(new RegExp(`${queue}\\s+true\\s+6`));

      await broker.restart();
      // Before: no message carried the header's durable flag unless fields said so, and RabbitMQ
      // 3.x kept none of them (3 of 3 published by default were gone).
      const after = await connect();
      const subscriber = amqpSubscriber(after, { address, credit: 10 });
      const iterator = subscriber[Symbol.asyncIterator]();
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) {
        const delivery = await nextDelivery(iterator, 10_000);
        ids.push(String(delivery.event?.id));
        await delivery.accept();
      }
      await subscriber.close();
      expect(ids).toEqual(["1", "2", "3", "6"].map((n) => faultEvent("amqp", Number(n)).id));
      const left = await broker.ctl("list_queues", "name", "messages");
      expect(left).toMatch(new RegExp(`${queue}\\s+0`));
    });
  },
);
