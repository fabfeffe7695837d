import {
  type KafkaProducerLike,
  type KafkaSendRecord,
  kafkaPublisher,
  kafkaSubscriber,
  partitionKeyMapper,
} from "@posthorn/binding-kafka";
import { CloudEvent, type EventFormat, isPosthornError, PosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { settledWithin, watchTimerOverflows } from "@posthorn/testkit";
import { Kafka, logLevel } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalKafkaOk, type KafkaEnv, kafkaEnv } from "./env.js";
import { slowProduces } from "./sockets.js";

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

  it("a keyMapper, a format's encode or a producer's send that throws fails the publish with a typed error, the original as cause, and nothing sent", async () => {
    // Each reached the caller as the raw error it threw (a TypeError, not a PosthornError).
    const topic = env.topicName("pub-throws");
    await env.createTopic(topic, 1);
    const producer = await env.producer();
    const sends: KafkaSendRecord[] = [];
    const counting: KafkaProducerLike = {
      send: (record) => {
        sends.push(record);
        return producer.send(record as never);
      },
    };
    const boom = new TypeError("Cannot read properties of undefined (reading 'tenant')");
    const mapperThrows = kafkaPublisher(counting, {
      topic,
      keyMapper: () => {
        throw boom;
      },
    });
    const fromMapper = await mapperThrows.publish([event("m1"), event("m2")]).catch((e) => e);
    expect(fromMapper).toMatchObject({
      name: "PosthornError",
      code: "InvalidEvent",
      attribute: "key",
      retryable: false,
      message: expect.stringMatching(/^the keyMapper threw for event "m1": Cannot read/),
      cause: boom,
    });
    // A PosthornError it throws is kept as it is.
    const own = new PosthornError("InvalidEvent", "no tenant", { attribute: "tenant" });
    const mapperRefuses = kafkaPublisher(counting, {
      topic,
      keyMapper: () => {
        throw own;
      },
    });
    expect(await mapperRefuses.publish(event("m3")).catch((e) => e)).toBe(own);
    const format: EventFormat = {
      ...json,
      encode: () => {
        throw new RangeError("Maximum call stack size exceeded");
      },
    };
    const encodeThrows = kafkaPublisher(counting, { topic, mode: "structured", format });
    expect(await encodeThrows.publish(event("f1")).catch((e) => e)).toMatchObject({
      code: "InvalidEvent",
      attribute: "value",
      message: expect.stringMatching(/format's encode threw for event "f1": Maximum call stack/),
      cause: { name: "RangeError" },
    });
    expect(sends).toHaveLength(0);

    const sendThrows: KafkaProducerLike = {
      send: () => {
        throw new TypeError("producer.send is not ready");
      },
    };
    const fromSend = await kafkaPublisher(sendThrows, { topic })
      .publish(event("s1"))
      .catch((e) => e);
    expect(fromSend).toMatchObject({
      name: "PosthornError",
      code: "PublishRejected",
      message: expect.stringMatching(/publish to .* failed: producer.send is not ready/),
      cause: { name: "TypeError" },
    });
    const admin = env.kafka.admin();
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets(topic);
    await admin.disconnect();
    expect(offsets.map((o) => o.high)).toEqual(["0"]);
  });

  /** A producer whose sends are acknowledged `delayMs` late, and the topic's record count. */
  async function slowProducer(delayMs: number) {
    const producer = new Kafka({
      clientId: "posthorn-slow-produce",
      brokers: env.brokers,
      logLevel: logLevel.NOTHING,
      socketFactory: slowProduces(delayMs),
    }).producer();
    await producer.connect();
    return producer;
  }

  async function written(topic: string): Promise<string> {
    const admin = env.kafka.admin();
    await admin.connect();
    try {
      const [p0] = await admin.fetchTopicOffsets(topic);
      return p0?.high ?? "?";
    } finally {
      await admin.disconnect();
    }
  }

  it("close() waits for sends whose publish already ended with Timeout or Aborted: the producer still had them", {
    timeout: 30_000,
  }, async () => {
    // close() waited only for publishes still waiting, and resolved at once while kafkajs still
    // had both sends (the docs said it waits for sends in flight).
    const topic = env.topicName("pub-close-after-timeout");
    await env.createTopic(topic, 1);
    const producer = await slowProducer(1500);
    try {
      const publisher = kafkaPublisher(producer, { topic });
      const started = Date.now();
      await expect(publisher.publish(event("t1"), { timeoutMs: 100 })).rejects.toMatchObject({
        code: "Timeout",
      });
      const controller = new AbortController();
      const aborted = publisher.publish(event("a1"), { abortSignal: controller.signal });
      controller.abort();
      await expect(aborted).rejects.toMatchObject({ code: "Aborted" });
      await publisher.close();
      expect(Date.now() - started).toBeGreaterThanOrEqual(1200);
      // Both were written by the time close() resolved.
      expect(await written(topic)).toBe("2");
    } finally {
      await producer.disconnect();
    }
  });

  it("close() is bounded by closeTimeoutMs: past it, it rejects with Timeout saying how many sends the producer still has, and the publish settles when the producer answers", {
    timeout: 30_000,
  }, async () => {
    // close() waited as long as kafkajs did (its retries: minutes), with no bound of its own.
    const topic = env.topicName("pub-close-bounded");
    await env.createTopic(topic, 1);
    const producer = await slowProducer(2500);
    try {
      const publisher = kafkaPublisher(producer, { topic, closeTimeoutMs: 300 });
      const sent = publisher.publish([event("b1"), event("b2")]);
      const started = Date.now();
      const closing = publisher.close();
      expect(await settledWithin(closing, 2000)).toMatchObject({
        rejected: {
          code: "Timeout",
          message: expect.stringMatching(
            /^1 send to Kafka still unanswered after closeTimeoutMs \(300 ms\)/,
          ),
        },
      });
      expect(Date.now() - started).toBeLessThan(2000);
      // Not recalled: the producer writes it, and the publish resolves.
      await expect(sent).resolves.toBeUndefined();
      expect(await written(topic)).toBe("2");
      // A second close() says the same (it does not wait again).
      await expect(publisher.close()).rejects.toMatchObject({ code: "Timeout" });
    } finally {
      await producer.disconnect();
    }
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
