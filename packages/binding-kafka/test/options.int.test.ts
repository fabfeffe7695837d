import { kafkaPublisher, kafkaSubscriber } from "@posthorn/binding-kafka";
import { CloudEvent } from "@posthorn/core";
import { refusedOption } from "@posthorn/testkit";
import type { Consumer, Producer } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalKafkaOk, type KafkaEnv, kafkaEnv } from "./env.js";

// Numeric options are checked where the publisher or subscriber is made, with a real producer
// and consumer of the testkit's broker (or KAFKA_BROKERS).
const ok = await externalKafkaOk();

const refused = refusedOption;

const NaN_ = Number.NaN;

describe.skipIf(!ok)(
  "Kafka numeric options (skipped: KAFKA_BROKERS unreachable outside CI)",
  () => {
    let env: KafkaEnv;
    let producer: Producer;
    let consumer: Consumer;
    beforeAll(async () => {
      env = await kafkaEnv();
      producer = await env.producer();
      consumer = await env.consumer(env.topicName("opts-group"));
    });
    afterAll(async () => {
      await env?.stop();
    });

    it("kafkaPublisher refuses a bad timeoutMs, at construction and per call", async () => {
      const topic = env.topicName("opts");
      expect(() => kafkaPublisher(producer, { topic, timeoutMs: NaN_ })).toThrow(
        refused("timeoutMs", "NaN"),
      );
      expect(() => kafkaPublisher(producer, { topic, timeoutMs: -1 })).toThrow(
        refused("timeoutMs", "-1"),
      );
      expect(() => kafkaPublisher(producer, { topic, closeTimeoutMs: NaN_ })).toThrow(
        refused("closeTimeoutMs", "NaN"),
      );
      const publisher = kafkaPublisher(producer, { topic, timeoutMs: Infinity });
      // NaN made a timer that fired at once: Timeout, with the record sent anyway.
      const event = new CloudEvent({ specversion: "1.0", id: "x", source: "/o", type: "t" });
      await expect(publisher.publish(event, { timeoutMs: NaN_ })).rejects.toEqual(
        refused("timeoutMs", "NaN"),
      );
      await publisher.close();
    });

    it('kafkaPublisher refuses an acks other than -1, "all", 0 or 1, before anything is sent', async () => {
      const topic = env.topicName("opts-acks");
      // The test broker took 2, 5 and -2 (Kafka answers INVALID_REQUIRED_ACKS); with NaN or 0.5
      // the publish never got an answer. kafkajs writes a string as 0 and still waits.
      for (const [acks, shown] of [
        [2, "2"],
        [-2, "-2"],
        [NaN_, "NaN"],
        [0.5, "0.5"],
        ["1", 'string "1"'],
        ["ALL", 'string "ALL"'],
        [null, "object null"],
      ] as const) {
        expect(() => kafkaPublisher(producer, { topic, acks: acks as never })).toThrow(
          refused("acks", shown),
        );
      }
      const event = new CloudEvent({ specversion: "1.0", id: "a", source: "/o", type: "t" });
      for (const acks of [-1, "all", 0, 1] as const) {
        const publisher = kafkaPublisher(producer, { topic, acks });
        await expect(publisher.publish(event)).resolves.toBeUndefined();
        await publisher.close();
      }
    });

    it('acks "all" is -1: an idempotent producer, which takes nothing else, publishes with it', async () => {
      const topic = env.topicName("opts-acks-all");
      await env.createTopic(topic, 1);
      const idempotent = await env.producer({ idempotent: true });
      const publisher = kafkaPublisher(idempotent, { topic, acks: "all" });
      const event = new CloudEvent({ specversion: "1.0", id: "all", source: "/o", type: "t" });
      await expect(publisher.publish(event, { partition: 0 })).resolves.toBeUndefined();
      await publisher.close();
      const admin = env.kafka.admin();
      await admin.connect();
      try {
        const [offsets] = await admin.fetchTopicOffsets(topic);
        expect(offsets?.high).toBe("1");
      } finally {
        await admin.disconnect();
      }
    });

    it("kafkaPublisher refuses a topic that names none, made or per call, and a key that is not a string, bytes or null", async () => {
      // kafkajs took "" and every publish failed with the broker's "Invalid topic".
      expect(() => kafkaPublisher(producer, { topic: "" })).toThrow(refused("topic", '""'));
      expect(() => kafkaPublisher(producer, { topic: 7 as never })).toThrow(refused("topic", "7"));
      const sends: unknown[] = [];
      const counting = {
        send: (record: Parameters<Producer["send"]>[0]) => {
          sends.push(record);
          return producer.send(record);
        },
      };
      const topic = env.topicName("opts-topic");
      const event = new CloudEvent({ specversion: "1.0", id: "k", source: "/o", type: "t" });
      const publisher = kafkaPublisher(counting, { topic });
      await expect(publisher.publish(event, { topic: "" })).rejects.toEqual(refused("topic", '""'));
      // A key mapper returning a number failed inside the client with Node's own wording
      // ('The "string" argument must be of type string...') as PublishRejected.
      const mapped = kafkaPublisher(counting, { topic, keyMapper: () => 42 as never });
      await expect(mapped.publish(event)).rejects.toMatchObject({
        code: "NotSupported",
        attribute: "key",
        message: expect.stringMatching(/^the keyMapper returned a number: a Kafka record key is/),
      });
      await expect(publisher.publish(event, { key: 42 as never })).rejects.toMatchObject({
        code: "NotSupported",
        attribute: "key",
      });
      expect(sends).toEqual([]);
      // What a key may be still goes out.
      for (const key of ["k", new Uint8Array([1, 2]), null]) {
        await expect(publisher.publish(event, { key })).resolves.toBeUndefined();
      }
      expect(sends).toHaveLength(3);
      await publisher.close();
    });

    it("a timeoutMs of 0 fails the publish with Timeout and sends nothing", async () => {
      const topic = env.topicName("opts-zero");
      const sends: unknown[] = [];
      const counting = {
        send: (record: Parameters<Producer["send"]>[0]) => {
          sends.push(record);
          return producer.send(record);
        },
      };
      const event = new CloudEvent({ specversion: "1.0", id: "z", source: "/o", type: "t" });
      // The records went out, and the caller was told Timeout.
      const given = kafkaPublisher(counting, { topic, timeoutMs: 0 });
      await expect(given.publish(event)).rejects.toMatchObject({ code: "Timeout" });
      const perCall = kafkaPublisher(counting, { topic });
      await expect(perCall.publish(event, { timeoutMs: 0 })).rejects.toMatchObject({
        code: "Timeout",
      });
      expect(sends).toHaveLength(0);
      await perCall.publish(event, { timeoutMs: 5000 });
      expect(sends).toHaveLength(1);
    });

    it("kafkaSubscriber refuses bad counts, intervals and limits before it subscribes", () => {
      const topics = [env.topicName("opts-sub")];
      const cases: [object, string, string][] = [
        // Math.max(1, NaN) is NaN: the subscriber never paused a partition.
        [{ maxInFlight: NaN_ }, "maxInFlight", "NaN"],
        [{ maxInFlight: 0 }, "maxInFlight", "0"],
        [{ maxInFlight: 2.5 }, "maxInFlight", "2.5"],
        [{ partitionsConsumedConcurrently: 0 }, "partitionsConsumedConcurrently", "0"],
        [
          { partitionsConsumedConcurrently: Infinity },
          "partitionsConsumedConcurrently",
          "Infinity",
        ],
        // setTimeout fired an interval of Infinity after 1 ms, with a TimeoutOverflowWarning.
        [{ commitIntervalMs: Infinity }, "commitIntervalMs", "Infinity"],
        [{ commitIntervalMs: -1 }, "commitIntervalMs", "-1"],
        [{ drainTimeoutMs: NaN_ }, "drainTimeoutMs", "NaN"],
        [{ maxPayloadBytes: NaN_ }, "maxPayloadBytes", "NaN"],
        [{ maxValueBytes: -1 }, "maxValueBytes", "-1"],
        [{ maxHeaders: 1.5 }, "maxHeaders", "1.5"],
        [{ json: { maxDepth: NaN_ } }, "json.maxDepth", "NaN"],
        // kafkajs subscribed to nothing, or to "o", "r", "d", ..., and no record ever came.
        [{ topics: [] }, "topics", "[]"],
        [{ topics: "orders" }, "topics", '"orders"'],
        [{ topics: ["orders", ""] }, "topics", '["orders", ""]'],
        [{ deadLetterTopic: "", producer: { send: async () => [] } }, "deadLetterTopic", '""'],
        // 0 would fail every reject before the dead-letter write could be acknowledged.
        [{ deadLetterTimeoutMs: 0 }, "deadLetterTimeoutMs", "0"],
        [{ deadLetterTimeoutMs: NaN_ }, "deadLetterTimeoutMs", "NaN"],
        [{ deadLetterTimeoutMs: "100" }, "deadLetterTimeoutMs", 'string "100"'],
      ];
      for (const [options, option, shown] of cases) {
        expect(() => kafkaSubscriber(consumer, { topics, ...options })).toThrow(
          refused(option, shown),
        );
      }
    });
  },
);
