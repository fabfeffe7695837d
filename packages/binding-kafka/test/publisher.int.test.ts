import {
  type KafkaProducerLike,
  type KafkaSendRecord,
  kafkaPublisher,
  kafkaSubscriber,
  partitionKeyMapper,
} from "@posthorn/binding-kafka";
import { CloudEvent, isPosthornError } from "@posthorn/core";
import { watchTimerOverflows } from "@posthorn/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalKafkaOk, type KafkaEnv, kafkaEnv } from "./env.js";

const ok = await externalKafkaOk();

const event = (id: string, extra: Record<string, unknown> = {}) =>
  new CloudEvent({ specversion: "1.0", id, source: "/pub", type: "t", ...extra });

describe.skipIf(!ok)("kafkaPublisher (skipped: KAFKA_BROKERS unreachable outside CI)", () => {
  let env: KafkaEnv;
  beforeAll(async () => {
    env = await kafkaEnv();
  });
  afterAll(async () => {
    await env?.stop();
  });

  it("sends an array in one request, waits for the ack, and works with the idempotent producer", async () => {
    const topic = env.topicName("pub-batch");
    await env.createTopic(topic, 2);
    const producer = await env.producer({ idempotent: true });
    const sends: KafkaSendRecord[] = [];
    const counting: KafkaProducerLike = {
      send: (record) => {
        sends.push(record);
        return producer.send(record as never);
      },
    };
    const publisher = kafkaPublisher(counting, { topic, keyMapper: partitionKeyMapper });
    await publisher.publish([
      event("p1", { partitionkey: "k-a" }),
      event("p2", { partitionkey: "k-b" }),
      event("p3"),
    ]);
    expect(sends).toHaveLength(1);
    expect(sends[0]?.messages).toHaveLength(3);
    await publisher.close();
    await expect(publisher.publish(event("late"))).rejects.toMatchObject({ code: "Closed" });

    const consumer = await env.consumer(env.topicName("g"));
    const subscriber = kafkaSubscriber(consumer, { topics: [topic], fromBeginning: true });
    const keys = new Map<string, string | null>();
    for await (const d of subscriber) {
      const key = d.message.metadata?.key as Buffer | null;
      keys.set(d.event?.id ?? "?", key === null ? null : key.toString());
      await d.accept();
      if (keys.size === 3) break;
    }
    await subscriber.close();
    // Kafka binding 3.1: the opt-in mapper keys by partitionkey; without one, no key.
    expect(Object.fromEntries(keys)).toEqual({ p1: "k-a", p2: "k-b", p3: null });
  });

  it("timeoutMs Infinity sets no limit: the publish waits for the acknowledgement", async () => {
    const overflows = watchTimerOverflows();
    try {
      const topic = env.topicName("pub-no-limit");
      await env.createTopic(topic, 1);
      const producer = await env.producer();
      const publisher = kafkaPublisher(producer, { topic, timeoutMs: Infinity });
      await expect(
        publisher.publish(Array.from({ length: 50 }, (_, i) => event(`nl-${i}`))),
      ).resolves.toBeUndefined();
      await expect(
        publisher.publish(event("nl-50"), { timeoutMs: 2 ** 40 }),
      ).resolves.toBeUndefined();
      expect(overflows.count()).toBe(0);
    } finally {
      overflows.stop();
    }
  });

  it("uses the caller's key by default", async () => {
    const topic = env.topicName("pub-key");
    await env.createTopic(topic, 1);
    const producer = await env.producer();
    const publisher = kafkaPublisher(producer, { topic, acks: 1 });
    await publisher.publish(event("k1", { partitionkey: "ignored" }), { key: "caller-key" });
    const consumer = await env.consumer(env.topicName("g"));
    const subscriber = kafkaSubscriber(consumer, { topics: [topic], fromBeginning: true });
    // Pulled with next(): returning out of a for-await loop would close the subscriber first.
    const first = await subscriber[Symbol.asyncIterator]().next();
    const d = first.done ? undefined : first.value;
    expect(String(d?.message.metadata?.key)).toBe("caller-key");
    expect(d?.event?.partitionkey).toBe("ignored");
    await d?.accept();
    await subscriber.close();
  });

  it("a partition the topic does not have fails the publish instead of resolving with nothing written", async () => {
    const topic = env.topicName("pub-partition");
    await env.createTopic(topic, 2);
    const producer = await env.producer();
    const publisher = kafkaPublisher(producer, { topic });
    // kafkajs drops the records of a partition it has no metadata for, and resolves.
    for (const partition of [2, 7]) {
      const err = await publisher.publish(event(`p${partition}`), { partition }).catch((e) => e);
      expect(isPosthornError(err, "PublishRejected") && err.attribute).toBe("partition");
      expect((err as Error).message).toMatch(`no partition ${partition}`);
    }
    // Not a partition number at all: refused before anything is sent, naming the option.
    for (const partition of [-1, 0.5, Number.NaN]) {
      const err = await publisher.publish(event("bad"), { partition }).catch((e) => e);
      expect(isPosthornError(err, "NotSupported") && err.attribute).toBe("partition");
    }
    await publisher.publish(event("p1"), { partition: 1 });
    const admin = env.kafka.admin();
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets(topic);
    await admin.disconnect();
    expect(offsets.map((o) => [o.partition, o.high]).sort()).toEqual([
      [0, "0"],
      [1, "1"],
    ]);
  });

  it("turns client failures into typed errors", async () => {
    const failing: KafkaProducerLike = {
      send: () =>
        Promise.reject(
          Object.assign(new Error("too big"), {
            name: "KafkaJSProtocolError",
            type: "MESSAGE_TOO_LARGE",
            retriable: false,
          }),
        ),
    };
    const err = await kafkaPublisher(failing, { topic: "x" })
      .publish(event("x"))
      .catch((e: unknown) => e);
    expect(isPosthornError(err, "PayloadTooLarge")).toBe(true);
    const never: KafkaProducerLike = { send: () => new Promise(() => {}) };
    await expect(
      kafkaPublisher(never, { topic: "x" }).publish(event("t"), { timeoutMs: 20 }),
    ).rejects.toMatchObject({
      code: "Timeout",
    });
    const controller = new AbortController();
    const aborted = kafkaPublisher(never, { topic: "x" }).publish(event("a"), {
      abortSignal: controller.signal,
    });
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ code: "Aborted" });
    await expect(
      kafkaPublisher(never, { topic: "x" }).publish(event("b"), { mode: "batch" }),
    ).rejects.toMatchObject({
      code: "NotSupported",
    });
  });
});
