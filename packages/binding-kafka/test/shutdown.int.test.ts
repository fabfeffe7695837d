import { kafkaPublisher, kafkaSubscriber } from "@posthorn/binding-kafka";
import { json } from "@posthorn/format-json";
import {
  baselineHandles,
  expectNoLeakedHandles,
  type KafkaTestBroker,
  type OpenHandles,
  shutdownEvent,
  startKafkaBroker,
  takeDeliveries,
} from "@posthorn/testkit";
import { type Consumer, Kafka, logLevel } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Graceful shutdown against the testkit's Kafka broker, started by this file: close() resolves
// with sends in flight and deliveries in hand, commits what was accepted, leaves the rest to the
// next member, and nothing stays open once the clients are disconnected.
let broker: KafkaTestBroker;
let kafka: Kafka;
let baseline: OpenHandles;

beforeAll(async () => {
  broker = await startKafkaBroker({ log: () => {} });
  kafka = new Kafka({
    clientId: "posthorn-shutdown",
    brokers: broker.brokers,
    logLevel: logLevel.NOTHING,
    retry: { retries: 5, initialRetryTime: 50, maxRetryTime: 500 },
  });
  baseline = await baselineHandles();
});

afterAll(async () => {
  await broker?.stop();
});

async function consumer(groupId: string): Promise<Consumer> {
  const c = kafka.consumer({
    groupId,
    sessionTimeout: 6000,
    rebalanceTimeout: 3000,
    heartbeatInterval: 300,
    maxWaitTimeInMs: 50,
  });
  await c.connect();
  return c;
}

describe("Kafka graceful shutdown", () => {
  it("close() resolves with sends in flight and deliveries in hand; the next member gets exactly the unaccepted ones; nothing is left open", async () => {
    const topic = `posthorn-shutdown-${process.pid}-${Date.now().toString(36)}`;
    broker.createTopic(topic, 1);
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    const publisher = kafkaPublisher(producer, { topic });
    // One send of four records, in flight when close() is called: close() waits for it.
    const sent = publisher.publish([0, 1, 2, 3].map((i) => shutdownEvent("kafka", i)));
    await publisher.close();
    await sent;
    await expect(publisher.publish(shutdownEvent("kafka", 9))).rejects.toMatchObject({
      code: "Closed",
    });

    const groupId = `${topic}-group`;
    const firstConsumer = await consumer(groupId);
    const first = kafkaSubscriber(firstConsumer, {
      topics: [topic],
      fromBeginning: true,
      formats: [json],
      drainTimeoutMs: 500,
    });
    await first.ready;
    const it = first[Symbol.asyncIterator]();
    const got = await takeDeliveries(it, 4, 10_000);
    expect(got.map((d) => d.event?.id)).toEqual([
      "shutdown-0",
      "shutdown-1",
      "shutdown-2",
      "shutdown-3",
    ]);
    await got[0]?.accept();
    // In hand during close(): settled within drainTimeoutMs, so it counts.
    const closing = first.close();
    await got[1]?.accept();
    await closing;
    expect((await it.next()).done).toBe(true);
    await expect(got[2]?.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
    await firstConsumer.disconnect();

    const secondConsumer = await consumer(groupId);
    const second = kafkaSubscriber(secondConsumer, {
      topics: [topic],
      fromBeginning: true,
      formats: [json],
    });
    await second.ready;
    const again = await takeDeliveries(second[Symbol.asyncIterator](), 2, 10_000);
    expect(again.map((d) => d.event?.id)).toEqual(["shutdown-2", "shutdown-3"]);
    for (const d of again) await d.accept();
    await second.close();
    await secondConsumer.disconnect();
    await producer.disconnect();

    await expectNoLeakedHandles(baseline);
  });
});
