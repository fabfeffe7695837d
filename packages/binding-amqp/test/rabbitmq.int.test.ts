// Against RabbitMQ 3.10+ with the rabbitmq_amqp1_0 plugin (AMQP_URL, default
// amqp://guest:guest@127.0.0.1:5672). Queues are declared over AMQP 0-9-1 with amqplib, because
// the AMQP 1.0 plugin of RabbitMQ 3.x cannot declare queue arguments (dead-lettering, limits).
import { type AmqpSubscriber, amqpPublisher, amqpSubscriber } from "@posthorn/binding-amqp";
import { CloudEvent, type Delivery, isPosthornError } from "@posthorn/core";
import {
  type BindingPath,
  describeBindingConformance,
  expectEquivalent,
  requireBroker,
  vector,
} from "@posthorn/testkit";
import rhea, { type Connection } from "rhea";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FORMATS } from "./formats.js";
import {
  closeConnection,
  connectRabbit,
  linkHarness,
  nextDelivery,
  QueueAdmin,
  uniqueName,
} from "./helpers.js";

const ok = await requireBroker("amqp");
const formats = FORMATS;
const paths: BindingPath[] = [
  { mode: "binary" },
  ...formats.map((format) => ({ mode: "structured" as const, format })),
];

describe.skipIf(!ok)("amqp against RabbitMQ (skipped: no broker outside CI)", () => {
  const admin = new QueueAdmin();
  const connections: Connection[] = [];
  const connect = async (): Promise<Connection> => {
    const c = await connectRabbit();
    connections.push(c);
    return c;
  };
  afterAll(async () => {
    for (const c of connections) await closeConnection(c);
    await admin.close();
  });

  describeBindingConformance(
    linkHarness({
      name: "amqp (RabbitMQ)",
      paths,
      formats,
      connect,
      async addresses(label) {
        const queue = await admin.queue(uniqueName(`conf-${label.replace("/", "-")}`));
        return { publish: `/amq/queue/${queue}`, consume: `/amq/queue/${queue}` };
      },
    }),
  );

  describe("through RabbitMQ", () => {
    let connection: Connection;
    beforeAll(async () => {
      connection = await connect();
    });

    const take = async (subscriber: AmqpSubscriber): Promise<Delivery> =>
      nextDelivery(subscriber[Symbol.asyncIterator]());

    it("reuses the encoding buffers of large messages only after the broker settled them: every byte arrives as sent", async () => {
      const queue = await admin.queue(uniqueName("pooled"));
      const publisher = amqpPublisher(connection, { address: `/amq/queue/${queue}` });
      const subscriber = amqpSubscriber(connection, { address: `/amq/queue/${queue}`, credit: 50 });
      await Promise.all([publisher.ready, subscriber.ready]);
      // 64 KiB and 300 KiB (several frames) of distinct bytes per event, published in rounds of
      // 20 concurrent publishes: the buffers of one round are reused by the next.
      const sizes = [65_536, 300_000];
      const sent = new Map<string, Uint8Array>();
      for (let round = 0; round < 6; round++) {
        const events = Array.from({ length: 20 }, (_, i) => {
          const data = new Uint8Array(sizes[i % 2] as number);
          for (let j = 0; j < data.length; j += 997) data[j] = (round * 31 + i * 7 + j) & 0xff;
          const id = `pooled-${round}-${i}`;
          sent.set(id, data);
          return new CloudEvent({ specversion: "1.0", id, source: "/p", type: "t", data });
        });
        await Promise.all(events.map((e) => publisher.publish(e)));
      }
      const iterator = subscriber[Symbol.asyncIterator]();
      for (let n = 0; n < sent.size; n++) {
        const d = await nextDelivery(iterator);
        const expected = sent.get(d.event?.id ?? "");
        expect(expected, d.event?.id).toBeDefined();
        expect(
          Buffer.compare(
            Buffer.from(d.event?.data as Uint8Array),
            Buffer.from(expected as Uint8Array),
          ),
        ).toBe(0);
        await d.accept();
      }
      await Promise.all([publisher.close(), subscriber.close()]);
    });

    it("delivers typed attributes as AMQP long (default) or int, boolean, binary, timestamp", async () => {
      const queue = await admin.queue(uniqueName("typed"));
      const subscriber = amqpSubscriber(connection, { address: `/amq/queue/${queue}` });
      const longs = amqpPublisher(connection, { address: `/amq/queue/${queue}` });
      const ints = amqpPublisher(connection, {
        address: `/amq/queue/${queue}`,
        integerType: "int",
      });
      await Promise.all([subscriber.ready, longs.ready, ints.ready]);
      const raw: Buffer[] = [];
      const original = rhea.message.decode;
      rhea.message.decode = (buffer: Buffer) => {
        raw.push(buffer);
        return original(buffer);
      };
      const event = new CloudEvent({
        specversion: "1.0",
        id: "typed",
        source: "/t",
        type: "t",
        time: "2024-01-02T03:04:05.678Z",
        priority: 70000,
        flagged: false,
        sig: new Uint8Array([7, 7]),
      });
      const deliveries: Delivery[] = [];
      try {
        await longs.publish(event);
        deliveries.push(await take(subscriber));
        await ints.publish(event);
        deliveries.push(await take(subscriber));
      } finally {
        rhea.message.decode = original;
      }
      for (const d of deliveries) {
        await d.accept();
        expectEquivalent(d.event, event, "typed via RabbitMQ");
        expect(d.event?.priority).toBe(70000);
        expect(d.event?.flagged).toBe(false);
      }
      const types = raw.map(propertyTypes);
      expect(types[0]).toMatchObject({
        "cloudEvents:priority": "Long",
        "cloudEvents:flagged": "False",
        "cloudEvents:sig": "Vbin8",
        "cloudEvents:time": "Timestamp",
      });
      expect(types[1]?.["cloudEvents:priority"]).toBe("Int");
      await Promise.all([longs.close(), ints.close(), subscriber.close()]);
    });

    it("accept removes the message from the queue", async () => {
      const queue = await admin.queue(uniqueName("accept"));
      const subscriber = amqpSubscriber(connection, { address: `/amq/queue/${queue}` });
      const publisher = amqpPublisher(connection, { address: `/amq/queue/${queue}` });
      await Promise.all([subscriber.ready, publisher.ready]);
      await publisher.publish(vector("typical").event);
      const delivery = await take(subscriber);
      expect(delivery.deliveryCount).toBe(1);
      await delivery.accept();
      await subscriber.close();
      expect(await admin.get(queue)).toBe(false);
      await publisher.close();
    });

    it("leaving a for-await loop closes the subscriber: the delivery in hand goes back to the queue", async () => {
      const queue = await admin.queue(uniqueName("leave-loop"));
      const subscriber = amqpSubscriber(connection, { address: `/amq/queue/${queue}` });
      const publisher = amqpPublisher(connection, { address: `/amq/queue/${queue}` });
      await Promise.all([subscriber.ready, publisher.ready]);
      await publisher.publish(vector("typical").event);
      let kept: Delivery | undefined;
      for await (const d of subscriber) {
        kept = d;
        break;
      }
      const err = await kept?.accept().catch((e: unknown) => e);
      expect(isPosthornError(err, "SettlementFailed")).toBe(true);
      // Released by the close, and the link detached: the broker has it again. RabbitMQ requeues
      // a released message asynchronously, so another connection may look a moment too early.
      let back = await admin.get(queue);
      for (let tries = 0; back === false && tries < 40; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        back = await admin.get(queue);
      }
      expect(back === false ? undefined : back.fields.redelivered).toBe(true);
      await publisher.close();
    });

    it("release redelivers the message with its delivery count raised", async () => {
      const queue = await admin.queue(uniqueName("release"));
      const subscriber = amqpSubscriber(connection, { address: `/amq/queue/${queue}` });
      const publisher = amqpPublisher(connection, { address: `/amq/queue/${queue}` });
      await Promise.all([subscriber.ready, publisher.ready]);
      await publisher.publish(vector("typical").event);
      const first = await take(subscriber);
      expect(first.deliveryCount).toBe(1);
      await first.release();
      const again = await take(subscriber);
      expectEquivalent(again.event, vector("typical").event, "redelivered");
      // RabbitMQ 3.x sends no delivery-count; it marks the redelivery first-acquirer=false.
      expect(again.deliveryCount).toBeGreaterThanOrEqual(2);
      expect(again.message.metadata?.firstAcquirer).toBe(false);
      await again.accept();
      await subscriber.close();
      expect(await admin.get(queue)).toBe(false);
      await publisher.close();
    });

    it("reject dead-letters the message to the queue's dead-letter exchange", async () => {
      const dlx = await admin.fanout(uniqueName("dlx"));
      const dlq = await admin.queue(uniqueName("dlq"));
      await (await admin.channel()).bindQueue(dlq, dlx, "");
      const queue = await admin.queue(uniqueName("jobs"), { "x-dead-letter-exchange": dlx });
      const subscriber = amqpSubscriber(connection, { address: `/amq/queue/${queue}` });
      const deadLetters = amqpSubscriber(connection, { address: `/amq/queue/${dlq}` });
      const publisher = amqpPublisher(connection, { address: `/amq/queue/${queue}` });
      await Promise.all([subscriber.ready, deadLetters.ready, publisher.ready]);
      const event = vector("ext-many").event;
      await publisher.publish(event);
      await (await take(subscriber)).reject("cannot process");
      const dead = await take(deadLetters);
      expectEquivalent(dead.event, event, "dead-lettered");
      await dead.accept();
      await subscriber.close();
      expect(await admin.get(queue)).toBe(false);
      await Promise.all([deadLetters.close(), publisher.close()]);
    });

    it("two competing consumers share 1,000 jobs: none lost, none handled twice", async () => {
      const queue = await admin.queue(uniqueName("compete"));
      const total = 1000;
      const second = await connect();
      const consumers = [
        amqpSubscriber(connection, { address: `/amq/queue/${queue}`, credit: 20 }),
        amqpSubscriber(second, { address: `/amq/queue/${queue}`, credit: 20 }),
      ];
      const publisher = amqpPublisher(connection, { address: `/amq/queue/${queue}` });
      await Promise.all([...consumers.map((c) => c.ready), publisher.ready]);
      const seen = new Map<string, number>();
      const perConsumer = [0, 0];
      let accepted = 0;
      let done: () => void = () => {};
      const allSeen = new Promise<void>((resolve) => {
        done = resolve;
      });
      const loops = consumers.map(async (consumer, index) => {
        for await (const job of consumer) {
          const id = job.event?.id ?? "?";
          seen.set(id, (seen.get(id) ?? 0) + 1);
          perConsumer[index] = (perConsumer[index] ?? 0) + 1;
          // Some work, so both consumers hold jobs at once.
          if (perConsumer[index] % 50 === 0) await new Promise((r) => setTimeout(r, 1));
          await job.accept();
          // Every job accepted, not merely seen: the other consumer may still hold the last one
          // seen, and closing it then released that job and failed its accept().
          if (++accepted === total) done();
        }
      });
      const base = vector("typical").event;
      await publisher.publish(
        Array.from({ length: total }, (_, i) => base.cloneWith({ id: `job-${i}` })),
      );
      await Promise.race([
        allSeen,
        new Promise((_, reject) => setTimeout(() => reject(new Error("jobs missing")), 20_000)),
      ]);
      await Promise.all(consumers.map((c) => c.close()));
      await Promise.all(loops);
      const duplicates = [...seen.values()].filter((n) => n > 1).length;
      console.log(
        `competing consumers: sent ${total}, received ${seen.size}, duplicates ${duplicates}, split ${perConsumer.join("/")}`,
      );
      expect(seen.size).toBe(total);
      expect(duplicates).toBe(0);
      expect(perConsumer[0]).toBeGreaterThan(0);
      expect(perConsumer[1]).toBeGreaterThan(0);
      expect(await admin.get(queue)).toBe(false);
      await publisher.close();
    });

    it("a link to an exchange that does not exist fails with the broker's condition, and only that link", async () => {
      // RabbitMQ ends the session; the publisher's own session keeps the other links alive.
      const queue = await admin.queue(uniqueName("survivor"));
      const survivor = amqpPublisher(connection, { address: `/amq/queue/${queue}` });
      await survivor.ready;
      const publisher = amqpPublisher(connection, {
        address: `/exchange/${uniqueName("missing")}/key`,
      });
      let thrown: unknown;
      try {
        await publisher.ready;
      } catch (err) {
        thrown = err;
      }
      expect(isPosthornError(thrown)).toBe(true);
      expect((thrown as { protocolCode?: unknown }).protocolCode).toBe("amqp:not-found");
      await expect(publisher.publish(vector("minimal").event)).rejects.toMatchObject({
        name: "PosthornError",
      });
      await publisher.close();
      await survivor.publish(vector("minimal").event);
      expect(await admin.get(queue)).not.toBe(false);
      await survivor.close();
    });

    it("addresses: /queue/<name> and /exchange/<name>/<routing key> publish into a queue", async () => {
      // /queue/<name> declares a durable queue of that name itself (so it is not declared here).
      const queue = admin.adopt(uniqueName("addr"));
      const viaQueue = amqpPublisher(connection, { address: `/queue/${queue}` });
      await viaQueue.ready;
      await (await admin.channel()).bindQueue(queue, "amq.topic", `${queue}.created`);
      const subscriber = amqpSubscriber(connection, { address: `/amq/queue/${queue}` });
      const viaExchange = amqpPublisher(connection, {
        address: `/exchange/amq.topic/${queue}.created`,
      });
      await Promise.all([subscriber.ready, viaQueue.ready, viaExchange.ready]);
      await viaQueue.publish(vector("minimal").event);
      await viaExchange.publish(vector("typical").event);
      const iterator = subscriber[Symbol.asyncIterator]();
      const a = await nextDelivery(iterator);
      const b = await nextDelivery(iterator);
      expectEquivalent(a.event, vector("minimal").event, "via /queue/");
      expectEquivalent(b.event, vector("typical").event, "via /exchange/");
      await Promise.all([a.accept(), b.accept()]);
      await Promise.all([subscriber.close(), viaQueue.close(), viaExchange.close()]);
    });
  });
});

/** The AMQP type names of the application properties in an encoded message. */
function propertyTypes(buffer: Buffer): Record<string, string> {
  const { Reader } = rhea.types as unknown as {
    Reader: new (b: Buffer) => { remaining(): number; read(): unknown };
  };
  const reader = new Reader(buffer);
  const out: Record<string, string> = {};
  while (reader.remaining()) {
    const s = reader.read() as {
      descriptor?: { value: unknown };
      value: Array<{ type: { name: string }; value: unknown }>;
    };
    if (Number(s.descriptor?.value) !== 0x74) continue;
    for (let i = 0; i + 1 < s.value.length; i += 2) {
      out[String(s.value[i]?.value)] = s.value[i + 1]?.type.name ?? "";
    }
  }
  return out;
}
