import { kafkaPublisher, kafkaSubscriber } from "@posthorn/binding-kafka";
import { CloudEvent, type Delivery, isPosthornError, type Subscriber } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { settledWithin } from "@posthorn/testkit";
import type { Consumer, Producer } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalKafkaOk, type KafkaEnv, kafkaEnv } from "./env.js";
import { failingJoins, slowOffsetLookups } from "./sockets.js";

// Core's Subscriber.ready: once it resolves, a record published is delivered. A new group that
// does not read from the beginning starts at the end of the log, and kafkajs looks that end up at
// its first fetch after joining the group (after run() returned): a record published before the
// lookup is behind the start and skipped. On the in-process broker the lookup is quick enough to
// win that race, so most tests here hold the consumer's ListOffsets requests back for a while
// (slowOffsetLookups): with `ready` resolving at run(), every one of their records was missed.
const ok = await externalKafkaOk();

/** How long the slow consumers' offset lookups are held back. */
const SLOW_LOOKUP_MS = 300;

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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The event ids each subscriber receives (accepting each) until `count` came in all or
 * `timeoutMs` passed, and then for `graceMs` more, so that a duplicate would show; closes them.
 */
async function collectIds(
  subscribers: readonly Subscriber[],
  count: number,
  timeoutMs: number,
  graceMs = 300,
): Promise<string[][]> {
  const ids = subscribers.map(() => [] as string[]);
  let total = 0;
  let enough!: () => void;
  const gotEnough = new Promise<void>((r) => {
    enough = r;
  });
  const loops = subscribers.map(async (subscriber, k) => {
    for await (const delivery of subscriber) {
      (ids[k] as string[]).push(delivery.event?.id ?? `undecodable: ${String(delivery.error)}`);
      await delivery.accept().catch(() => undefined);
      if (++total >= count) enough();
    }
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    gotEnough,
    new Promise<void>((r) => {
      timer = setTimeout(r, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  await sleep(graceMs);
  await Promise.all(subscribers.map((s) => s.close()));
  await Promise.all(loops);
  return ids;
}

function readyEvent(id: string): CloudEvent {
  return new CloudEvent({ specversion: "1.0", id, source: "/ready", type: "com.example.ready" });
}

describe.skipIf(!ok)(
  "kafkaSubscriber ready (skipped: KAFKA_BROKERS unreachable outside CI)",
  () => {
    let env: KafkaEnv;
    let producer: Producer;
    beforeAll(async () => {
      env = await kafkaEnv();
      producer = await env.producer();
    });
    afterAll(async () => {
      await env?.stop();
    });

    /** A consumer in `groupId` whose offset lookups take SLOW_LOOKUP_MS longer. */
    const slowConsumer = (groupId: string): Promise<Consumer> =>
      env.consumer(groupId, {}, slowOffsetLookups(SLOW_LOOKUP_MS));

    it("resolves once the consumer joined its group, and a record published then arrives, for new groups reading from the end", {
      timeout: 60_000,
    }, async () => {
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
        await kafkaPublisher(producer, { topic }).publish(readyEvent(`r-${i}`));
        const delivery = await firstWithin(subscriber, 5000);
        if (delivery?.event?.id === `r-${i}`) await delivery.accept();
        else missed.push(i);
        await subscriber.close();
      }
      expect(missed).toEqual([]);
    });

    it("waits until the start offsets are known: a record published right after it arrives, for 20 new groups reading from the end whose offset lookups are slow", {
      timeout: 120_000,
    }, async () => {
      const missed: number[] = [];
      for (let i = 0; i < 20; i++) {
        const topic = env.topicName("ready-slow");
        await env.createTopic(topic, 1);
        const subscriber = kafkaSubscriber(await slowConsumer(env.topicName("group")), {
          topics: [topic],
          formats: [json],
        });
        await subscriber.ready;
        await kafkaPublisher(producer, { topic }).publish(readyEvent(`s-${i}`));
        const delivery = await firstWithin(subscriber, 3000);
        if (delivery?.event?.id === `s-${i}`) await delivery.accept();
        else missed.push(i);
        await subscriber.close();
      }
      expect(missed).toEqual([]);
    });

    it("with 4 partitions, a record published to each partition right after ready arrives from every one", {
      timeout: 90_000,
    }, async () => {
      for (let i = 0; i < 5; i++) {
        const topic = env.topicName("ready-partitions");
        await env.createTopic(topic, 4);
        const subscriber = kafkaSubscriber(await slowConsumer(env.topicName("group")), {
          topics: [topic],
          formats: [json],
        });
        await subscriber.ready;
        const publisher = kafkaPublisher(producer, { topic });
        const expected = [0, 1, 2, 3].map((p) => `p-${i}-${p}`);
        for (const [p, id] of expected.entries()) {
          await publisher.publish(readyEvent(id), { partition: p });
        }
        const [ids] = await collectIds([subscriber], expected.length, 5000);
        expect({ round: i, ids: [...(ids ?? [])].sort() }).toEqual({ round: i, ids: expected });
      }
    });

    it("two subscribers in one group, both ready: records published to every partition arrive exactly once across the two", {
      timeout: 90_000,
    }, async () => {
      for (let i = 0; i < 5; i++) {
        const topic = env.topicName("ready-group");
        await env.createTopic(topic, 4);
        const group = env.topicName("group");
        const [a, b] = await Promise.all([slowConsumer(group), slowConsumer(group)]);
        const subscribers = [a, b].map((consumer) =>
          kafkaSubscriber(consumer as Consumer, { topics: [topic], formats: [json] }),
        );
        await Promise.all(subscribers.map((s) => s.ready));
        const publisher = kafkaPublisher(producer, { topic });
        const expected: string[] = [];
        for (let p = 0; p < 4; p++) {
          for (let k = 0; k < 2; k++) {
            const id = `g-${i}-${p}-${k}`;
            expected.push(id);
            await publisher.publish(readyEvent(id), { partition: p });
          }
        }
        const ids = await collectIds(subscribers, expected.length, 5000, 500);
        expect({ round: i, ids: ids.flat().sort() }).toEqual({ round: i, ids: expected.sort() });
        // Both members own partitions: the group split them, and neither got the other's.
        expect(ids.map((got) => got.length > 0)).toEqual([true, true]);
      }
    });

    it("with fromBeginning, resolves at the join without waiting for the slow offset lookup", {
      timeout: 30_000,
    }, async () => {
      const topic = env.topicName("ready-beginning");
      await env.createTopic(topic, 1);
      const publisher = kafkaPublisher(producer, { topic });
      await publisher.publish(readyEvent("before"));
      const subscriber = kafkaSubscriber(
        await env.consumer(env.topicName("group"), {}, slowOffsetLookups(5000)),
        { topics: [topic], fromBeginning: true, formats: [json] },
      );
      expect(await settledWithin(subscriber.ready, 3000)).toEqual({ resolved: undefined });
      await publisher.publish(readyEvent("after"));
      const ids = await collectIds([subscriber], 2, 15_000);
      expect(ids).toEqual([["before", "after"]]);
    });

    it("rejects, and iteration fails with the same error, when the consumer crashes while joining and will not restart", {
      timeout: 30_000,
    }, async () => {
      const topic = env.topicName("ready-crash");
      await env.createTopic(topic, 1);
      const consumer = await env.consumer(
        env.topicName("group"),
        {
          retry: {
            retries: 1,
            initialRetryTime: 50,
            maxRetryTime: 100,
            restartOnFailure: async () => false,
          },
        },
        failingJoins(),
      );
      const subscriber = kafkaSubscriber(consumer, { topics: [topic], formats: [json] });
      const ready = await settledWithin(subscriber.ready, 20_000);
      expect(ready).not.toBe("pending");
      const error = (ready as { rejected?: unknown }).rejected;
      expect(isPosthornError(error) && error.code).toBe("ConnectionFailed");
      await expect(subscriber[Symbol.asyncIterator]().next()).rejects.toBe(error);
      await subscriber.close();
    });

    it("closed before ready: ready rejects with Closed, and close returns", {
      timeout: 30_000,
    }, async () => {
      const topic = env.topicName("ready-close");
      await env.createTopic(topic, 1);
      const subscriber = kafkaSubscriber(
        await env.consumer(env.topicName("group"), {}, slowOffsetLookups(1000)),
        { topics: [topic], formats: [json] },
      );
      const closed = settledWithin(subscriber.close(), 15_000);
      const ready = await settledWithin(subscriber.ready, 15_000);
      const error = (ready as { rejected?: unknown }).rejected;
      expect(isPosthornError(error) && error.code).toBe("Closed");
      expect(await closed).toEqual({ resolved: undefined });
    });
  },
);
