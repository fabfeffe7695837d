import {
  type KafkaConsumerLike,
  type KafkaProducerLike,
  type KafkaSubscriber,
  type KafkaSubscriberOptions,
  kafkaPublisher,
  kafkaSubscriber,
} from "@posthorn/binding-kafka";
import type { CloudEvent, Delivery, EventFormat } from "@posthorn/core";
import type { BindingHarness } from "@posthorn/testkit";
import { type KafkaEnv, kafkaEnv } from "./env.js";

/** How a harness gets its clients: a producer and a consumer in a group, and how to stop them. */
export interface KafkaClients {
  producer(): Promise<KafkaProducerLike>;
  consumer(groupId: string): Promise<KafkaConsumerLike>;
  stop(): Promise<void>;
}

/**
 * Every vector through a real producer, the broker, and a consumer group, for one mode (binary
 * headers are untyped strings; the JSON format keeps types). One single-partition topic per
 * harness keeps the records in order, so each round trip reads the next delivery.
 */
export function kafkaHarness(options: {
  name: string;
  mode: "binary" | "structured";
  format?: EventFormat | undefined;
  timeoutMs: number;
  clients: (env: KafkaEnv) => KafkaClients;
  subscriber: Omit<KafkaSubscriberOptions, "topics">;
}): BindingHarness {
  const { mode, format } = options;
  let env: KafkaEnv;
  let clients: KafkaClients | undefined;
  let subscriber: KafkaSubscriber;
  let iterator: AsyncIterator<Delivery>;
  let publish: (event: CloudEvent) => Promise<void>;
  return {
    name: options.name,
    paths: format ? [{ mode, format }] : [{ mode }],
    typed: mode === "structured",
    caseSensitive: true,
    timeoutMs: options.timeoutMs,
    async setup() {
      env = await kafkaEnv();
      clients = options.clients(env);
      const topic = env.topicName(`conformance-${mode}`);
      await env.createTopic(topic, 1);
      const publisher = kafkaPublisher(await clients.producer(), {
        topic,
        mode,
        ...(format ? { format } : {}),
      });
      publish = (event) => publisher.publish(event);
      subscriber = kafkaSubscriber(await clients.consumer(env.topicName("group")), {
        ...options.subscriber,
        topics: [topic],
      });
      await subscriber.ready;
      iterator = subscriber[Symbol.asyncIterator]();
    },
    async teardown() {
      await subscriber?.close();
      await clients?.stop();
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
