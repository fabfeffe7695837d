import { kafkaPublisher, kafkaSubscriber } from "@posthorn/binding-kafka";
import { CloudEvent, isPosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { nextDelivery, settledWithin } from "@posthorn/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalKafkaOk, type KafkaEnv, kafkaEnv } from "./env.js";

// The owner stops or disconnects the consumer while its subscriber still runs (a shutdown in the
// wrong order). Iteration used to wait for ever, and settling resolved with nothing committed.
const ok = await externalKafkaOk();

function event(id: string): CloudEvent {
  return new CloudEvent({ specversion: "1.0", id, source: "/owner", type: "com.example.owner" });
}

describe.skipIf(!ok)(
  "kafkaSubscriber whose consumer its owner stops (skipped: KAFKA_BROKERS unreachable outside CI)",
  () => {
    let env: KafkaEnv;
    beforeAll(async () => {
      env = await kafkaEnv();
    });
    afterAll(async () => {
      await env?.stop();
    });

    for (const how of ["disconnect", "stop"] as const) {
      it(`consumer.${how}() under a running subscriber: iteration fails with Closed, settling is SettlementFailed, close() returns, and the next member gets the records`, {
        timeout: 60_000,
      }, async () => {
        const topic = env.topicName(`owner-${how}`);
        await env.createTopic(topic, 1);
        await kafkaPublisher(await env.producer(), { topic }).publish([event("a"), event("b")]);
        const groupId = env.topicName("group");
        const consumer = await env.consumer(groupId);
        const subscriber = kafkaSubscriber(consumer, {
          topics: [topic],
          fromBeginning: true,
          formats: [json],
          drainTimeoutMs: 30_000,
        });
        const iterator = subscriber[Symbol.asyncIterator]();
        const a = await nextDelivery(iterator, 10_000);
        const b = await nextDelivery(iterator, 10_000);
        expect([a.event?.id, b.event?.id]).toEqual(["a", "b"]);
        const waiting = iterator.next();
        await consumer[how]();

        const ended = await settledWithin(waiting, 10_000);
        const error = (ended as { rejected?: unknown }).rejected;
        expect(isPosthornError(error) && [error.code, error.retryable]).toEqual(["Closed", false]);
        const failed = await a.accept().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isPosthornError(failed, "SettlementFailed")).toBe(true);
        expect((failed as Error).message).toMatch(/stopped or disconnected by its owner/);
        // Nothing can settle: close() does not wait out drainTimeoutMs.
        expect(await settledWithin(subscriber.close(), 5000)).toEqual({ resolved: undefined });

        const next = kafkaSubscriber(await env.consumer(groupId), {
          topics: [topic],
          fromBeginning: true,
          formats: [json],
        });
        const again = next[Symbol.asyncIterator]();
        const ids: (string | undefined)[] = [];
        for (let i = 0; i < 2; i++) {
          const d = await nextDelivery(again, 15_000);
          ids.push(d.event?.id);
          await d.accept();
        }
        expect(ids).toEqual(["a", "b"]);
        await next.close();
      });
    }

    it("consumer.stop() while a reject() writes to a dead-letter topic that cannot be written: the reject fails once the stop is taken as the owner's, not deadLetterTimeoutMs later", {
      timeout: 60_000,
    }, async () => {
      // The write kept waiting for its own timer (deadLetterTimeoutMs, 30 s by default) although
      // nothing could be committed any more.
      const topic = env.topicName("owner-reject");
      await env.createTopic(topic, 1);
      await kafkaPublisher(await env.producer(), { topic }).publish(event("r"));
      const producer = await env.producer({
        allowAutoTopicCreation: false,
        retry: { retries: 1000, initialRetryTime: 100, maxRetryTime: 1000 },
      });
      const consumer = await env.consumer(env.topicName("group"));
      const subscriber = kafkaSubscriber(consumer, {
        topics: [topic],
        fromBeginning: true,
        formats: [json],
        deadLetterTopic: env.topicName("missing-dlq"),
        producer,
      });
      const d = await nextDelivery(subscriber[Symbol.asyncIterator](), 10_000);
      const rejected = d.reject("poison");
      rejected.catch(() => {});
      await consumer.stop();
      const outcome = await settledWithin(rejected, 5000);
      expect(outcome).toMatchObject({
        rejected: {
          code: "SettlementFailed",
          message: expect.stringMatching(
            /stopped or disconnected by its owner before the dead-letter write/,
          ),
          cause: { code: "Closed" },
        },
      });
      await subscriber.close();
    });
  },
);
