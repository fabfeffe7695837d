import { kafkaPublisher } from "@posthorn/binding-kafka";
import { isPosthornError } from "@posthorn/core";
import { shutdownEvent, unencodableEvent } from "@posthorn/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalKafkaOk, type KafkaEnv, kafkaEnv } from "./env.js";

// Against the testkit's Kafka-protocol broker (or KAFKA_BROKERS): an array with an event that
// cannot be encoded, or a call already aborted, fails before anything is sent.
const ok = await externalKafkaOk();

describe.skipIf(!ok)(
  "kafkaPublisher: a call that fails before sending writes nothing (skipped: KAFKA_BROKERS unreachable outside CI)",
  () => {
    let env: KafkaEnv;
    beforeAll(async () => {
      env = await kafkaEnv();
    });
    afterAll(async () => {
      await env?.stop();
    });

    it("rejects with the encoding error and writes none of the array to the topic", async () => {
      const topic = env.topicName("array-invalid");
      await env.createTopic(topic, 1);
      const publisher = kafkaPublisher(await env.producer(), { topic, acks: 1 });
      const invalid = unencodableEvent("kafka");
      const err = await publisher
        .publish([shutdownEvent("kafka", 1), invalid, shutdownEvent("kafka", 3)])
        .catch((e: unknown) => e);
      expect(isPosthornError(err, "InvalidEvent")).toBe(true);
      // One record after: the partition's end offset counts every record the topic ever got.
      await publisher.publish(shutdownEvent("kafka", 4));
      await publisher.close();
      const admin = env.kafka.admin();
      await admin.connect();
      try {
        const [partition] = await admin.fetchTopicOffsets(topic);
        expect(partition?.high).toBe("1");
      } finally {
        await admin.disconnect();
      }
    });

    it("rejects with Aborted and writes nothing when the abortSignal was aborted before the call", async () => {
      const topic = env.topicName("aborted");
      await env.createTopic(topic, 1);
      const publisher = kafkaPublisher(await env.producer(), { topic, acks: 1 });
      const abortSignal = AbortSignal.abort();
      for (const events of [shutdownEvent("kafka", 1), [shutdownEvent("kafka", 2)]]) {
        const err = await publisher.publish(events, { abortSignal }).catch((e: unknown) => e);
        expect(isPosthornError(err, "Aborted")).toBe(true);
      }
      await publisher.publish(shutdownEvent("kafka", 3));
      await publisher.close();
      const admin = env.kafka.admin();
      await admin.connect();
      try {
        const [partition] = await admin.fetchTopicOffsets(topic);
        expect(partition?.high).toBe("1");
      } finally {
        await admin.disconnect();
      }
    });
  },
);
