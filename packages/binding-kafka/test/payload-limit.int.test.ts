import {
  type KafkaSubscriberOptions,
  kafkaPublisher,
  kafkaSubscriber,
} from "@posthorn/binding-kafka";
import { CloudEvent, type Delivery } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalKafkaOk, type KafkaEnv, kafkaEnv } from "./env.js";

// The subscriber's size limit, under its name in every binding (maxPayloadBytes) and its former
// one (maxValueBytes), over real connections to the testkit broker (or KAFKA_BROKERS).
const ok = await externalKafkaOk();

function event(id: string, size: number): CloudEvent {
  return new CloudEvent({
    specversion: "1.0",
    id,
    source: "/tests/limit",
    type: "t",
    datacontenttype: "application/octet-stream",
    data: new Uint8Array(size),
  });
}

async function next(it: AsyncIterator<Delivery>, ms = 10_000): Promise<Delivery> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([
    it.next(),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no delivery within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
  if (r.done) throw new Error("the subscriber ended");
  return r.value;
}

describe.skipIf(!ok)("kafkaSubscriber size limit (skipped: KAFKA_BROKERS unreachable)", () => {
  let env: KafkaEnv;
  beforeAll(async () => {
    env = await kafkaEnv();
  });
  afterAll(async () => {
    await env?.stop();
  });

  /** Publishes a 1,500-byte and a 500-byte event, and returns the two deliveries, in order. */
  async function receive(
    limits: Pick<KafkaSubscriberOptions, "maxPayloadBytes" | "maxValueBytes">,
  ): Promise<[Delivery, Delivery]> {
    const topic = env.topicName("limit");
    await env.createTopic(topic, 1);
    const producer = await env.producer();
    await kafkaPublisher(producer, { topic }).publish([event("big", 1500), event("small", 500)]);
    const subscriber = kafkaSubscriber(await env.consumer(env.topicName("group")), {
      topics: [topic],
      fromBeginning: true,
      formats: [json],
      ...limits,
    });
    await subscriber.ready;
    try {
      const it = subscriber[Symbol.asyncIterator]();
      const first = await next(it);
      await first.accept();
      const second = await next(it);
      await second.accept();
      return [first, second];
    } finally {
      await subscriber.close();
    }
  }

  it("maxPayloadBytes: a value past it is a PayloadTooLarge delivery, a smaller one an event", async () => {
    const [big, small] = await receive({ maxPayloadBytes: 1000 });
    expect(big.event).toBeUndefined();
    expect(big.error?.code).toBe("PayloadTooLarge");
    expect(small.event?.id).toBe("small");
  });

  it("the deprecated maxValueBytes still limits", async () => {
    const [big, small] = await receive({ maxValueBytes: 1000 });
    expect(big.error?.code).toBe("PayloadTooLarge");
    expect(small.event?.id).toBe("small");
  });

  it("maxPayloadBytes wins when both are given", async () => {
    const [big] = await receive({ maxPayloadBytes: 2000, maxValueBytes: 1000 });
    expect(big.error).toBeUndefined();
    expect(big.event?.id).toBe("big");
  });
});
