import { type KafkaSubscriber, kafkaPublisher, kafkaSubscriber } from "@posthorn/binding-kafka";
import type { CloudEvent, Delivery, EventFormat } from "@posthorn/core";
import { avro } from "@posthorn/format-avro";
import { json } from "@posthorn/format-json";
import { protobuf } from "@posthorn/format-protobuf";
import { type BindingHarness, describeBindingConformance } from "@posthorn/testkit";
import type { Producer } from "kafkajs";
import { describe } from "vitest";
import { externalKafkaOk, type KafkaEnv, kafkaEnv } from "./env.js";

const ok = await externalKafkaOk();

// Every vector through a real producer, the broker, and a consumer group, one harness per mode
// (binary headers are untyped strings; the JSON format keeps types). One single-partition topic
// per harness keeps the records in order, so each round trip reads the next delivery.
function harness(mode: "binary" | "structured", format?: EventFormat): BindingHarness {
  let env: KafkaEnv;
  let producer: Producer;
  let subscriber: KafkaSubscriber;
  let iterator: AsyncIterator<Delivery>;
  let publish: (event: CloudEvent) => Promise<void>;
  return {
    name: `kafka (${process.env.KAFKA_BROKERS ? "KAFKA_BROKERS" : "test broker"}, ${mode})`,
    paths: format ? [{ mode, format }] : [{ mode }],
    typed: mode === "structured",
    caseSensitive: true,
    timeoutMs: 15_000,
    async setup() {
      env = await kafkaEnv();
      const topic = env.topicName(`conformance-${mode}`);
      await env.createTopic(topic, 1);
      producer = await env.producer({ idempotent: true });
      const publisher = kafkaPublisher(producer, { topic, mode, ...(format ? { format } : {}) });
      publish = (event) => publisher.publish(event);
      const consumer = await env.consumer(env.topicName("group"));
      subscriber = kafkaSubscriber(consumer, {
        topics: [topic],
        fromBeginning: true,
        formats: [json, avro, protobuf],
      });
      await subscriber.ready;
      iterator = subscriber[Symbol.asyncIterator]();
    },
    async teardown() {
      await subscriber?.close();
      await env?.stop();
    },
    async roundTrip(event) {
      await publish(event);
      const next = await iterator.next();
      if (next.done) throw new Error("the subscriber ended");
      const delivery = next.value;
      await delivery.accept();
      if (delivery.error) throw delivery.error;
      if (!delivery.event) throw new Error("the record did not arrive as a CloudEvent");
      return delivery.event;
    },
  };
}

describe.skipIf(!ok)(
  "Kafka binding over real connections (skipped: KAFKA_BROKERS unreachable outside CI)",
  () => {
    describeBindingConformance(harness("binary"));
    describeBindingConformance(harness("structured", json));
    describeBindingConformance(harness("structured", avro));
    describeBindingConformance(harness("structured", protobuf));
  },
);
