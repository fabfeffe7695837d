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

  it("both limits apply to every record: structured ones past maxHeaders, and records that are no CloudEvent past either", async () => {
    // A structured record's headers were never counted (1,000 with maxHeaders 10 decoded), and a
    // record that is no CloudEvent was handed out as a Message whatever its size and headers.
    const topic = env.topicName("limit-any");
    await env.createTopic(topic, 1);
    const producer = await env.producer();
    const many = (n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-h${i}`, "v"]));
    const structured = new TextEncoder().encode(
      JSON.stringify({ specversion: "1.0", id: "s", source: "/l", type: "t" }),
    );
    const ct = { "content-type": "application/cloudevents+json" };
    await producer.send({
      topic,
      messages: [
        { value: Buffer.from(structured), headers: { ...ct, ...many(1000) } },
        { value: Buffer.from(structured), headers: { ...ct, ...many(5) } },
        { value: Buffer.alloc(100, 1), headers: { "x-kind": "plain" } },
        { value: Buffer.from("a"), headers: many(11) },
        { value: Buffer.from("b"), headers: { "x-kind": "plain" } },
      ],
    });
    const subscriber = kafkaSubscriber(await env.consumer(env.topicName("group")), {
      topics: [topic],
      fromBeginning: true,
      formats: [json],
      maxHeaders: 10,
      maxPayloadBytes: 80,
    });
    try {
      const it = subscriber[Symbol.asyncIterator]();
      const got: Delivery[] = [];
      for (let i = 0; i < 5; i++) {
        const d = await next(it);
        got.push(d);
        await d.accept();
      }
      const [tooMany, fits, plainBig, plainMany, plain] = got as [
        Delivery,
        Delivery,
        Delivery,
        Delivery,
        Delivery,
      ];
      expect(tooMany.event).toBeUndefined();
      expect(tooMany.error).toMatchObject({
        code: "PayloadTooLarge",
        message: expect.stringMatching(/more than 10 headers \(maxHeaders\)/),
      });
      expect(fits.event?.id).toBe("s");
      expect(plainBig.error).toMatchObject({
        code: "PayloadTooLarge",
        message: expect.stringMatching(/100 bytes exceeds the limit of 80 \(maxPayloadBytes\)/),
      });
      // Still handed out as the message it is, beside the error.
      expect(plainBig.message.metadata?.offset).toBe("2");
      expect(plainMany.error?.code).toBe("PayloadTooLarge");
      expect(plain.error).toBeUndefined();
      expect(plain.event).toBeUndefined();
      expect(new TextDecoder().decode(plain.message.body as Uint8Array)).toBe("b");
    } finally {
      await subscriber.close();
    }
  });

  it("maxPayloadBytes wins when both are given", async () => {
    const [big] = await receive({ maxPayloadBytes: 2000, maxValueBytes: 1000 });
    expect(big.error).toBeUndefined();
    expect(big.event?.id).toBe("big");
  });
});
