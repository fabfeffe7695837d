import { kafkaPublisher, kafkaSubscriber } from "@posthorn/binding-kafka";
import { CloudEvent, isPosthornError, type PosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { nextDelivery, settledWithin } from "@posthorn/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalKafkaOk, type KafkaEnv, kafkaEnv } from "./env.js";
import { cuttableConnections } from "./sockets.js";

// A consumer that crashes for good: kafkajs gives up on it (here its connections are cut and
// restartOnFailure says no), disconnects it, and reports the crash. The cluster carries on.
const ok = await externalKafkaOk();

/**
 * A consumer of `groupId` over `connections`, which the test cuts to crash it: kafkajs retries
 * once, quickly, then asks `restartOnFailure` whether to restart it.
 */
function crashingConsumer(
  env: KafkaEnv,
  groupId: string,
  connections: ReturnType<typeof cuttableConnections>,
  restartOnFailure: () => Promise<boolean>,
) {
  const retry = { retries: 1, initialRetryTime: 50, maxRetryTime: 100, restartOnFailure };
  return env.consumer(groupId, { retry }, connections.factory);
}

function crashEvent(id: string): CloudEvent {
  return new CloudEvent({ specversion: "1.0", id, source: "/crash", type: "com.example.crash" });
}

describe.skipIf(!ok)(
  "kafkaSubscriber after its consumer crashed (skipped: KAFKA_BROKERS unreachable outside CI)",
  () => {
    let env: KafkaEnv;
    beforeAll(async () => {
      env = await kafkaEnv();
    });
    afterAll(async () => {
      await env?.stop();
    });

    it("iteration fails with ConnectionFailed, settling is SettlementFailed naming the crash, close() does not wait or commit, and the next member gets the unsettled records", {
      timeout: 60_000,
    }, async () => {
      const topic = env.topicName("crash");
      await env.createTopic(topic, 1);
      await kafkaPublisher(await env.producer(), { topic }).publish(
        ["a", "b", "c"].map(crashEvent),
      );
      const groupId = env.topicName("crash-group");
      const connections = cuttableConnections();
      const consumer = await crashingConsumer(env, groupId, connections, async () => false);
      const errors: PosthornError[] = [];
      const subscriber = kafkaSubscriber(consumer, {
        topics: [topic],
        fromBeginning: true,
        formats: [json],
        drainTimeoutMs: 30_000,
        onError: (e) => errors.push(e),
      });
      const iterator = subscriber[Symbol.asyncIterator]();
      const [a, b, c] = [
        await nextDelivery(iterator, 10_000),
        await nextDelivery(iterator, 10_000),
        await nextDelivery(iterator, 10_000),
      ];
      expect([a.event?.id, b.event?.id, c.event?.id]).toEqual(["a", "b", "c"]);
      await a.accept();
      await new Promise((r) => setTimeout(r, 500)); // the commit of "a" reaches the broker

      connections.cut();
      // The crash ends iteration with what went wrong: the connection, not a refused publish.
      const crash = await settledWithin(iterator.next(), 20_000);
      const error = (crash as { rejected?: unknown }).rejected;
      expect(isPosthornError(error) && [error.code, error.retryable]).toEqual([
        "ConnectionFailed",
        true,
      ]);

      // Nothing can be committed or sought now: settling says so instead of resolving.
      for (const settle of [() => b.accept(), () => c.release()]) {
        const failed = await settle().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isPosthornError(failed, "SettlementFailed")).toBe(true);
        expect((failed as Error).message).toMatch(/crash/);
      }

      // Nothing will settle: close() does not wait out drainTimeoutMs, and commits nothing.
      expect(await settledWithin(subscriber.close(), 5000)).toEqual({ resolved: undefined });
      expect(errors.map((e) => e.message)).toEqual([]);

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
      expect(ids).toEqual(["b", "c"]);
      await next.close();
    });

    it("a release() that fails while kafkajs restarts the crashed consumer still counts as settled: close() does not wait for it, and the record comes again after the restart", {
      timeout: 60_000,
    }, async () => {
      const topic = env.topicName("crash-restart");
      await env.createTopic(topic, 1);
      await kafkaPublisher(await env.producer(), { topic }).publish(["a", "b"].map(crashEvent));
      const connections = cuttableConnections();
      let crashed!: () => void;
      const crash = new Promise<void>((r) => {
        crashed = r;
      });
      let restart!: () => void;
      const restarting = new Promise<void>((r) => {
        restart = r;
      });
      const consumer = await crashingConsumer(
        env,
        env.topicName("crash-restart-group"),
        connections,
        // kafkajs has disconnected the consumer when it asks: it restarts once let.
        async () => {
          crashed();
          await restarting;
          return true;
        },
      );
      const subscriber = kafkaSubscriber(consumer, {
        topics: [topic],
        fromBeginning: true,
        formats: [json],
        drainTimeoutMs: 30_000,
      });
      const iterator = subscriber[Symbol.asyncIterator]();
      const a = await nextDelivery(iterator, 10_000);
      const b = await nextDelivery(iterator, 10_000);
      await a.accept();
      await new Promise((r) => setTimeout(r, 500));

      connections.cut();
      await crash;
      // No consumer group to seek in until the restart: the release fails, typed.
      const failed = await b.release().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isPosthornError(failed, "SettlementFailed")).toBe(true);
      connections.restore();
      restart();
      const again = await nextDelivery(iterator, 20_000);
      expect([again.event?.id, again.deliveryCount]).toEqual(["b", 2]);
      await again.accept();
      // Every delivery was settled once: close() has nothing to wait for.
      expect(await settledWithin(subscriber.close(), 5000)).toEqual({ resolved: undefined });
    });

    it("a restartOnFailure that answers after more than a second is not taken for the owner's stop: the consumer restarts, the held record settles, and later records arrive", {
      timeout: 60_000,
    }, async () => {
      const topic = env.topicName("crash-slow-restart");
      await env.createTopic(topic, 1);
      const publisher = kafkaPublisher(await env.producer(), { topic });
      await publisher.publish(["a", "b"].map(crashEvent));
      const connections = cuttableConnections();
      let asked = 0;
      const consumer = await crashingConsumer(
        env,
        env.topicName("crash-slow-restart-group"),
        connections,
        // An application that checks something before letting kafkajs restart.
        async () => {
          asked++;
          await new Promise((r) => setTimeout(r, 1500));
          connections.restore();
          return true;
        },
      );
      const subscriber = kafkaSubscriber(consumer, {
        topics: [topic],
        fromBeginning: true,
        formats: [json],
      });
      const iterator = subscriber[Symbol.asyncIterator]();
      const a = await nextDelivery(iterator, 10_000);
      const b = await nextDelivery(iterator, 10_000);
      await a.accept();
      await new Promise((r) => setTimeout(r, 500)); // the commit of "a" reaches the broker
      connections.cut();
      await publisher.publish(crashEvent("c"));
      // The subscriber took kafkajs's stop for its owner's after 1 s and ended iteration with
      // Closed, though kafkajs restarted the consumer half a second later.
      const c = await nextDelivery(iterator, 20_000);
      expect(asked).toBe(1);
      expect(c.event?.id).toBe("c");
      // "b", still held, belongs to the same member after the restart: it settles.
      await b.accept();
      await c.accept();
      expect(await settledWithin(subscriber.close(), 5000)).toEqual({ resolved: undefined });
    });
  },
);
