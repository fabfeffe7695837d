import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { kafkaPublisher, kafkaSubscriber } from "@posthorn/binding-kafka";
import {
  jetStreamPublisher,
  jetStreamSubscriber,
  natsPublisher,
  natsSubscriber,
} from "@posthorn/binding-nats";
import type { Delivery, Subscriber } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { startKafkaBroker, startNatsServer } from "@posthorn/testkit";
import { Kafka, logLevel } from "kafkajs";
import {
  type E2eTransport,
  type Endpoint,
  jetStreamTransport,
  kafkaTransport,
  mqttTransport,
  natsCoreTransport,
  payloadEvents,
} from "../e2e.ts";
import { type BenchSuite, collectGarbage, type Row, sleep } from "../lib.ts";

// Memory, two questions from issue 10:
// 1. heap and RSS per 100,000 events published (1 KiB each, batches of 100, received and
//    accepted by a subscriber in the same process): the peak above the starting point while
//    publishing, and what is still held after a full GC (a leak shows there), for Posthorn and
//    for the raw client doing the same with pre-encoded bytes;
// 2. per 10,000 unsettled deliveries held by a subscriber: the heap the held deliveries take,
//    per delivery, and whether the subscriber bounds how many it hands out.
// Run with --expose-gc (npm run bench does) or the figures include garbage.
const MiB = 1 << 20;

interface Usage {
  heapPeakMiB: number;
  heapRetainedMiB: number;
  rssPeakMiB: number;
}

async function publishUsage(endpoint: Endpoint, count: number, scale: number): Promise<Usage> {
  collectGarbage();
  await sleep(50);
  const start = process.memoryUsage();
  let heapPeak = start.heapUsed;
  let rssPeak = start.rss;
  const batch = 100;
  const done = endpoint.arrivals.more(count);
  for (let i = 0; i < count; i += batch) {
    await endpoint.send(i, Math.min(batch, count - i));
    if ((i / batch) % 10 === 0) {
      const m = process.memoryUsage();
      if (m.heapUsed > heapPeak) heapPeak = m.heapUsed;
      if (m.rss > rssPeak) rssPeak = m.rss;
    }
  }
  await endpoint.finish?.();
  await done;
  const end = process.memoryUsage();
  heapPeak = Math.max(heapPeak, end.heapUsed);
  rssPeak = Math.max(rssPeak, end.rss);
  collectGarbage();
  await sleep(50);
  const after = process.memoryUsage();
  const round = (n: number) => Math.round(n * 10) / 10;
  return {
    heapPeakMiB: round(((heapPeak - start.heapUsed) * scale) / MiB),
    heapRetainedMiB: round(((after.heapUsed - start.heapUsed) * scale) / MiB),
    rssPeakMiB: round(((rssPeak - start.rss) * scale) / MiB),
  };
}

/** Iterates a subscriber, keeping every delivery unsettled, until `count` are held or it stalls. */
async function hold(subscriber: Subscriber, count: number, stallMs: number): Promise<Delivery[]> {
  const held: Delivery[] = [];
  const it = subscriber[Symbol.asyncIterator]();
  for (;;) {
    const next = await Promise.race([it.next(), sleep(stallMs).then(() => undefined)]);
    if (next === undefined || next.done) break;
    held.push(next.value);
    if (held.length >= count) break;
  }
  return held;
}

async function heldRow(
  name: string,
  count: number,
  setup: () => Promise<{
    /** Starts the subscriber (before publishing for transports that do not store messages). */
    subscribe: () => Promise<Subscriber>;
    publish: (n: number) => Promise<void>;
    /** Publish everything first (the broker stores it), then subscribe and measure. */
    publishFirst: boolean;
    close: () => Promise<void>;
  }>,
  note: string,
): Promise<Row> {
  const s = await setup();
  try {
    // Where the broker stores messages (the in-process Kafka test broker), they are published
    // before the starting point is taken, so their storage is not counted as the subscriber's.
    if (s.publishFirst) await s.publish(count);
    collectGarbage();
    await sleep(50);
    const before = process.memoryUsage();
    const subscriber = await s.subscribe();
    const holding = hold(subscriber, count, 1500);
    if (!s.publishFirst) await s.publish(count);
    const held = await holding;
    collectGarbage();
    await sleep(50);
    const after = process.memoryUsage();
    const perDelivery = held.length > 0 ? (after.heapUsed - before.heapUsed) / held.length : 0;
    for (const d of held) await d.accept().catch(() => undefined);
    return {
      group: "memory: unsettled deliveries held by a subscriber (1 KiB events)",
      name,
      ours: {
        label: "posthorn subscriber",
        opsPerSec: 0,
        // A negative delta means the garbage collector freed more than the deliveries took:
        // below the noise, so no per-delivery figure.
        extra:
          perDelivery > 0
            ? {
                published: count,
                held: held.length,
                heapBytesPerDelivery: Math.round(perDelivery),
                heapMiBPer10k: Math.round((perDelivery * 10_000 * 10) / MiB) / 10,
              }
            : { published: count, held: held.length },
      },
      note: perDelivery > 0 ? note : `${note}; heap delta below GC noise in this run`,
    };
  } finally {
    await s.close();
  }
}

export const suite: BenchSuite = {
  name: "Memory: heap and RSS per 100,000 events published; per 10,000 unsettled deliveries",
  async run(ctx) {
    const rows: Row[] = [];
    const published = ctx.quick ? 10_000 : 100_000;
    const scale = 100_000 / published;
    const transports: (() => E2eTransport)[] = [
      natsCoreTransport,
      mqttTransport,
      jetStreamTransport,
      kafkaTransport,
    ];
    for (const make of transports) {
      const transport = make();
      const session = await transport.open();
      try {
        const sides = session.prepare(payloadEvents(1024, 100));
        const raw = await publishUsage(sides.raw, published, scale);
        const ours = await publishUsage(sides.ours, published, scale);
        rows.push({
          group: "memory: per 100,000 events published and received (1 KiB, batches of 100)",
          name: transport.name,
          ours: { label: "posthorn", opsPerSec: 0, extra: { ...ours } },
          baseline: { label: transport.rawLabel, opsPerSec: 0, extra: { ...raw } },
          ...(scale === 1 ? {} : { note: `measured over ${published} events, scaled` }),
        });
      } finally {
        await session.close();
      }
    }

    const held = 10_000;
    const data = payloadEvents(1024, held, "held");
    rows.push(
      await heldRow(
        "NATS core",
        held,
        async () => {
          const server = await startNatsServer();
          const nc = await connect({ servers: server.url });
          const subject = `bench.held.${process.pid}`;
          let subscriber: Subscriber | undefined;
          const publisher = natsPublisher(nc, { subject });
          return {
            publishFirst: false,
            subscribe: async () => {
              subscriber = natsSubscriber(nc, { subject, formats: [json] });
              await nc.flush();
              return subscriber;
            },
            publish: async (n) => {
              for (let i = 0; i < n; i += 100) await publisher.publish(data.slice(i, i + 100));
              await nc.flush();
            },
            close: async () => {
              await subscriber?.close();
              await nc.close();
              await server.stop();
            },
          };
        },
        "at most once: nothing to settle, the deliveries are plain objects; those not yet pulled are bounded by maxPending (default 65,536; beyond it messages are dropped and counted)",
      ),
    );
    rows.push(
      await heldRow(
        "NATS JetStream (consumer max_ack_pending 20,000)",
        held,
        async () => {
          const server = await startNatsServer();
          const nc = await connect({ servers: server.url });
          const jsm = await jetstreamManager(nc);
          const stream = `HELD_${process.pid}`;
          await jsm.streams.add({
            name: stream,
            subjects: [`held.${process.pid}`],
            storage: StorageType.Memory,
            retention: RetentionPolicy.Limits,
          });
          await jsm.consumers.add(stream, {
            durable_name: "held",
            ack_policy: "explicit" as never,
            max_ack_pending: 20_000,
          });
          const js = jetstream(nc);
          let subscriber: Subscriber | undefined;
          const publisher = jetStreamPublisher(js, { subject: `held.${process.pid}` });
          return {
            publishFirst: true,
            subscribe: async () => {
              subscriber = await jetStreamSubscriber(js, {
                stream,
                consumer: "held",
                formats: [json],
              });
              return subscriber;
            },
            publish: async (n) => {
              for (let i = 0; i < n; i += 100) await publisher.publish(data.slice(i, i + 100));
            },
            close: async () => {
              await subscriber?.close();
              await nc.close();
              await server.stop();
            },
          };
        },
        "bounded by the consumer's max_ack_pending (the server stops sending)",
      ),
    );
    for (const maxInFlight of [1000, 20_000]) {
      rows.push(
        await heldRow(
          `Kafka, maxInFlight ${maxInFlight}`,
          held,
          async () => {
            const broker = await startKafkaBroker({ log: () => {} });
            const kafka = new Kafka({ brokers: broker.brokers, logLevel: logLevel.NOTHING });
            const producer = kafka.producer();
            await producer.connect();
            const topic = `held-${process.pid}-${maxInFlight}`;
            broker.createTopic(topic, 1);
            const consumer = kafka.consumer({ groupId: topic, maxWaitTimeInMs: 50 });
            await consumer.connect();
            let subscriber: Subscriber | undefined;
            const publisher = kafkaPublisher(producer, { topic });
            return {
              publishFirst: true,
              subscribe: async () => {
                const s = kafkaSubscriber(consumer, {
                  topics: [topic],
                  formats: [json],
                  fromBeginning: true,
                  maxInFlight,
                });
                subscriber = s;
                await s.ready;
                return s;
              },
              publish: async (n) => {
                for (let i = 0; i < n; i += 100) await publisher.publish(data.slice(i, i + 100));
              },
              close: async () => {
                await subscriber?.close();
                await consumer.disconnect();
                await producer.disconnect();
                await broker.stop();
              },
            };
          },
          maxInFlight < held
            ? "bounded: the subscriber pauses the partition at maxInFlight unsettled records (plus the batch in hand)"
            : "maxInFlight above the count: every record handed out",
        ),
      );
    }
    return rows;
  },
};
