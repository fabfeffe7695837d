import { kafkaPublisher, kafkaSubscriber } from "@posthorn/binding-kafka";
import { CloudEvent, type Delivery, type Subscriber } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalKafkaOk, type KafkaEnv, kafkaEnv } from "./env.js";

// Core's Subscriber.ready: once it resolves, a record published is delivered. A new group that
// does not read from the beginning starts at the end of the log, so a record published before
// the consumer knows where that end is would be skipped.
const ok = await externalKafkaOk();

/** The first delivery, or `undefined` when none comes within `timeoutMs`. */
async function firstWithin(
  subscriber: Subscriber,
  timeoutMs: number,
): Promise<Delivery | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      subscriber[Symbol.asyncIterator]()
        .next()
        .then((r) => (r.done ? undefined : r.value)),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe.skipIf(!ok)(
  "kafkaSubscriber ready (skipped: KAFKA_BROKERS unreachable outside CI)",
  () => {
    let env: KafkaEnv;
    beforeAll(async () => {
      env = await kafkaEnv();
    });
    afterAll(async () => {
      await env?.stop();
    });

    it("resolves once the consumer joined its group, and a record published then arrives, for new groups reading from the end", {
      timeout: 60_000,
    }, async () => {
      const producer = await env.producer();
      const missed: number[] = [];
      for (let i = 0; i < 10; i++) {
        const topic = env.topicName("ready");
        await env.createTopic(topic, 1);
        const subscriber = kafkaSubscriber(await env.consumer(env.topicName("group")), {
          topics: [topic],
          fromBeginning: false,
          formats: [json],
        });
        await subscriber.ready;
        const event = new CloudEvent({
          specversion: "1.0",
          id: `r-${i}`,
          source: "/ready",
          type: "com.example.ready",
        });
        await kafkaPublisher(producer, { topic }).publish(event);
        const delivery = await firstWithin(subscriber, 5000);
        if (delivery?.event?.id === `r-${i}`) await delivery.accept();
        else missed.push(i);
        await subscriber.close();
      }
      expect(missed).toEqual([]);
    });
  },
);
