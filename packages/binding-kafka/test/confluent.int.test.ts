import {
  type KafkaConsumerLike,
  type KafkaProducerLike,
  type KafkaSubscriber,
  kafkaPublisher,
  kafkaSubscriber,
} from "@posthorn/binding-kafka";
import { CloudEvent, type Delivery, type EventFormat, PosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { type BindingHarness, describeBindingConformance } from "@posthorn/testkit";
import { Kafka } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalKafkaOk, type KafkaEnv, kafkaEnv } from "./env.js";
import { kafkaHarness } from "./harness.js";

// The same publisher and subscriber over `@confluentinc/kafka-javascript` (librdkafka) through
// its KafkaJS-compatible API, instead of kafkajs. The package builds librdkafka from source when
// it is installed (an optional dependency: .ci/run installs the system libraries it links to);
// without it these tests are skipped outside CI and fail under CI=true.

interface ConfluentKafkaJS {
  Kafka: new (config: {
    kafkaJS: Record<string, unknown>;
  }) => {
    producer(config?: Record<string, unknown>): ConfluentClient & KafkaProducerLike;
    consumer(config: { kafkaJS: Record<string, unknown> }): ConfluentClient & KafkaConsumerLike;
  };
  logLevel: { NOTHING: number };
}
interface ConfluentClient {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
}

const loaded = (await import("@confluentinc/kafka-javascript").then(
  (m) => (m as unknown as { KafkaJS: ConfluentKafkaJS }).KafkaJS,
  () => undefined,
)) as ConfluentKafkaJS | undefined;
if (loaded === undefined && process.env.CI === "true") {
  throw new Error(
    "@confluentinc/kafka-javascript is not installed: .ci/run builds it (CKJS_LINKING=dynamic, with the -dev libraries of scripts/system-deps.sh)",
  );
}
const ok = loaded !== undefined && (await externalKafkaOk());
const KafkaJS = loaded as ConfluentKafkaJS;

/** Clients of the confluent package on the tests' brokers; all disconnected by `stop()`. */
function confluentClients(env: KafkaEnv) {
  const kafka = new KafkaJS.Kafka({
    kafkaJS: { brokers: env.brokers, logLevel: KafkaJS.logLevel.NOTHING },
  });
  const clients: ConfluentClient[] = [];
  return {
    async producer() {
      // librdkafka refuses records over 1,000,000 bytes by default; the vectors go up to 1 MiB.
      const producer = kafka.producer({ "message.max.bytes": 4 * 1024 * 1024 });
      await producer.connect();
      clients.push(producer);
      return producer;
    },
    async consumer(groupId: string) {
      const consumer = kafka.consumer({
        kafkaJS: { groupId, fromBeginning: true, autoCommit: false, sessionTimeout: 6000 },
      });
      await consumer.connect();
      clients.push(consumer);
      return consumer;
    },
    async stop() {
      await Promise.all(clients.splice(0).map((c) => c.disconnect().catch(() => undefined)));
    },
  };
}

function harness(mode: "binary" | "structured", format?: EventFormat): BindingHarness {
  return kafkaHarness({
    name: `kafka over @confluentinc/kafka-javascript (${mode})`,
    mode,
    format,
    timeoutMs: 20_000,
    clients: confluentClients,
    subscriber: { formats: [json] },
  });
}

describe.skipIf(!ok)(
  "Kafka binding over @confluentinc/kafka-javascript (skipped: the package is not installed, outside CI)",
  () => {
    describeBindingConformance(harness("binary"));
    describeBindingConformance(harness("structured", json));

    describe("checkpoints", () => {
      let env: KafkaEnv;
      let clients: ReturnType<typeof confluentClients>;
      beforeAll(async () => {
        env = await kafkaEnv();
        clients = confluentClients(env);
      });
      afterAll(async () => {
        await clients?.stop();
        await env?.stop();
      });

      async function take(subscriber: KafkaSubscriber, count: number): Promise<Delivery[]> {
        const out: Delivery[] = [];
        const it = subscriber[Symbol.asyncIterator]();
        while (out.length < count) {
          const next = await it.next();
          if (next.done) throw new Error(`the subscriber ended after ${out.length} deliveries`);
          out.push(next.value);
        }
        return out;
      }

      it("commits only below the lowest unaccepted record: a new member of the group gets exactly the rest", async () => {
        const topic = env.topicName("confluent-checkpoint");
        const group = env.topicName("confluent-group");
        await env.createTopic(topic, 1);
        const events = Array.from(
          { length: 6 },
          (_, i) =>
            new CloudEvent({
              specversion: "1.0",
              id: `c${i}`,
              source: "/confluent",
              type: "com.example.checkpoint",
              data: { i },
            }),
        );
        await kafkaPublisher(await clients.producer(), { topic }).publish(events);

        const first = kafkaSubscriber(await clients.consumer(group), {
          topics: [topic],
          formats: [json],
        });
        const got = await take(first, 6);
        expect(got.map((d) => d.event?.id)).toEqual(["c0", "c1", "c2", "c3", "c4", "c5"]);
        // c3 stays unaccepted: the commit stops at it, whatever was accepted after it.
        for (const i of [0, 1, 2, 4, 5]) await got[i]?.accept();
        await first.close();
        await clients.stop();

        const second = kafkaSubscriber(await clients.consumer(group), {
          topics: [topic],
          formats: [json],
        });
        const again = await take(second, 3);
        expect(again.map((d) => d.event?.id)).toEqual(["c3", "c4", "c5"]);
        expect(again[0]?.event?.data).toEqual({ i: 3 });
        for (const d of again) await d.accept();
        await second.close();
      }, 60_000);

      it("a second member joining mid-stream takes partitions over; the 1,000 events are split and none is lost", async () => {
        const topic = env.topicName("confluent-split");
        const group = env.topicName("confluent-split-group");
        await env.createTopic(topic, 4);
        const sent = Array.from(
          { length: 1000 },
          (_, i) =>
            new CloudEvent({
              specversion: "1.0",
              id: `s${i}`,
              source: "/confluent",
              type: "com.example.split",
              data: { i },
            }),
        );
        const counts = new Map<string, number>();
        const per = { a: 0, b: 0 };
        const consume = async (name: "a" | "b", s: KafkaSubscriber) => {
          for await (const d of s) {
            const id = d.event?.id ?? "?";
            counts.set(id, (counts.get(id) ?? 0) + 1);
            per[name]++;
            await d.accept();
          }
        };
        const publisher = kafkaPublisher(await clients.producer(), {
          topic,
          keyMapper: (e) => e.id,
        });
        // The first member owns all four partitions and is reading when the second joins, so the
        // rebalance takes partitions away from a member that has records in hand.
        const a = kafkaSubscriber(await clients.consumer(group), { topics: [topic] });
        const loops = [consume("a", a)];
        await publisher.publish(sent.slice(0, 500));
        const firstHalf = Date.now() + 20_000;
        while (per.a < 100 && Date.now() < firstHalf) await new Promise((r) => setTimeout(r, 20));
        expect(per.a).toBeGreaterThanOrEqual(100);
        const second = await clients.consumer(group);
        const b = kafkaSubscriber(second, { topics: [topic] });
        loops.push(consume("b", b));
        await b.ready;
        // librdkafka joins the group in the background: wait until the rebalance gave it partitions.
        const owns = () => (second as unknown as { assignment(): unknown[] }).assignment().length;
        const joined = Date.now() + 30_000;
        while (owns() === 0 && Date.now() < joined) await new Promise((r) => setTimeout(r, 50));
        expect(owns()).toBeGreaterThan(0);
        for (let i = 500; i < sent.length; i += 100)
          await publisher.publish(sent.slice(i, i + 100));
        const deadline = Date.now() + 45_000;
        while (counts.size < sent.length && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
        }
        await Promise.all([a.close(), b.close()]);
        await Promise.all(loops);
        const lost = sent.filter((e) => !counts.has(e.id)).length;
        expect(lost).toBe(0);
        expect(counts.has("?")).toBe(false);
        // Both members got partitions: the group rebalanced between them.
        expect(per.a).toBeGreaterThan(0);
        expect(per.b).toBeGreaterThan(0);
      }, 90_000);
    });
  },
);

describe.skipIf(loaded === undefined)(
  "a publisher over @confluentinc/kafka-javascript's producer (skipped: the package is not installed, outside CI)",
  () => {
    // That client's send() throws on an `acks` in the request: every publish would fail.
    it.each([-1, "all", 0, 1] as const)(
      "refuses acks %s when made, naming where acks go instead; kafkajs' producer takes it",
      async (acks) => {
        const kafka = new KafkaJS.Kafka({
          kafkaJS: { brokers: ["127.0.0.1:1"], logLevel: KafkaJS.logLevel.NOTHING },
        });
        // Not connected: making a publisher sends nothing.
        const producer = kafka.producer();
        let thrown: unknown;
        try {
          kafkaPublisher(producer, { topic: "orders", acks });
        } catch (err) {
          thrown = err;
        }
        expect(thrown).toBeInstanceOf(PosthornError);
        expect(thrown).toMatchObject({ code: "NotSupported" });
        expect((thrown as Error).message).toContain("kafkaJS: { acks }");
        expect(() => kafkaPublisher(producer, { topic: "orders" })).not.toThrow();
        const kafkajsProducer = new Kafka({ brokers: ["127.0.0.1:1"] }).producer();
        expect(() => kafkaPublisher(kafkajsProducer, { topic: "orders", acks })).not.toThrow();
      },
    );
  },
);
