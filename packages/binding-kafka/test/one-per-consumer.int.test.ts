import { kafkaPublisher, kafkaSubscriber } from "@posthorn/binding-kafka";
import { CloudEvent, isPosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalKafkaOk, type KafkaEnv, kafkaEnv } from "./env.js";

// A kafkajs consumer subscribes and runs once. A second subscriber on it failed only once it
// started, as PublishRejected ("Cannot subscribe to topic while consumer is running").
const ok = await externalKafkaOk();

describe.skipIf(!ok)(
  "one subscriber per consumer (skipped: KAFKA_BROKERS unreachable outside CI)",
  () => {
    let env: KafkaEnv;
    beforeAll(async () => {
      env = await kafkaEnv();
    });
    afterAll(async () => {
      await env?.stop();
    });

    it("a second kafkaSubscriber on a consumer is NotSupported at once; after close() the consumer takes another", async () => {
      const topic = env.topicName("one-per-consumer");
      await env.createTopic(topic, 1);
      const consumer = await env.consumer(env.topicName("one-group"));
      const first = kafkaSubscriber(consumer, { topics: [topic], formats: [json] });
      await first.ready;
      let thrown: unknown;
      try {
        kafkaSubscriber(consumer, { topics: [`${topic}-other`], formats: [json] });
      } catch (err) {
        thrown = err;
      }
      expect(isPosthornError(thrown) && thrown.code).toBe("NotSupported");
      expect((thrown as Error).message).toMatch(/already has a kafkaSubscriber/);
      await first.close();

      const second = kafkaSubscriber(consumer, {
        topics: [topic],
        formats: [json],
        fromBeginning: true,
      });
      await second.ready;
      const event = new CloudEvent({ specversion: "1.0", id: "after", source: "/s", type: "t" });
      await kafkaPublisher(await env.producer(), { topic }).publish(event);
      const next = await second[Symbol.asyncIterator]().next();
      expect(next.value?.event?.id).toBe("after");
      await next.value?.accept();
      await second.close();
    });

    it("a consumer the application already runs: ready rejects with NotSupported saying so, and close() leaves the application's run alone", async () => {
      const topic = env.topicName("already-running");
      await env.createTopic(topic, 1);
      const consumer = await env.consumer(env.topicName("running-group"));
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      const seen: string[] = [];
      await consumer.run({
        eachMessage: async ({ message }) => {
          seen.push(String(message.headers?.ce_id));
        },
      });
      const subscriber = kafkaSubscriber(consumer, { topics: [topic], formats: [json] });
      await expect(subscriber.ready).rejects.toMatchObject({
        code: "NotSupported",
        message: expect.stringMatching(/already running \(consumer\.run\(\) was called/),
      });
      await subscriber.close();
      // The subscriber never ran this consumer: its close() used to stop the application's run,
      // and nothing more was read.
      const event = new CloudEvent({ specversion: "1.0", id: "app", source: "/s", type: "t" });
      await kafkaPublisher(await env.producer(), { topic }).publish(event);
      const deadline = Date.now() + 10_000;
      while (seen.length === 0 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      expect(seen).toEqual(["app"]);
    });
  },
);
