import { type KafkaSubscriber, kafkaPublisher, kafkaSubscriber } from "@posthorn/binding-kafka";
import { CloudEvent, type Delivery, isPosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalKafkaOk, type KafkaEnv, kafkaEnv } from "./env.js";

// Leaving a for-await loop closes the subscriber (core's Subscriber contract): what was accepted
// is committed, the consumer stops and leaves its group, and what was not accepted goes to the
// next member. Without that, the abandoned consumer keeps its partitions and fetches records
// into a queue nobody reads: they are never settled, and their partitions' commits stall.
const ok = await externalKafkaOk();

function events(count: number, prefix: string): CloudEvent[] {
  return Array.from(
    { length: count },
    (_, i) =>
      new CloudEvent({
        specversion: "1.0",
        id: `${prefix}${i}`,
        source: "/leave-loop",
        type: "com.example.leave",
        data: { i },
      }),
  );
}

/** Pulls deliveries until every id in `wanted` was seen, or `ms` passed. */
async function collect(
  subscriber: KafkaSubscriber,
  wanted: ReadonlySet<string>,
  ms: number,
): Promise<Delivery[]> {
  const it = subscriber[Symbol.asyncIterator]();
  const got: Delivery[] = [];
  const seen = new Set<string>();
  const deadline = Date.now() + ms;
  let pending: Promise<IteratorResult<Delivery>> | undefined;
  while ([...wanted].some((id) => !seen.has(id))) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    pending ??= it.next();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      pending,
      new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), left);
      }),
    ]).finally(() => clearTimeout(timer));
    if (r === "timeout") break;
    pending = undefined;
    if (r.done) break;
    got.push(r.value);
    seen.add(r.value.event?.id ?? "?");
  }
  return got;
}

describe.skipIf(!ok)("leaving the loop (skipped: KAFKA_BROKERS unreachable outside CI)", () => {
  let env: KafkaEnv;
  beforeAll(async () => {
    env = await kafkaEnv();
  });
  afterAll(async () => {
    await env?.stop();
  });

  it("break closes the subscriber: accepted records are committed, and a new member of the group gets every record not accepted", {
    timeout: 40_000,
  }, async () => {
    const sent = events(40, "l");
    const topic = env.topicName("leave");
    // Several partitions: a member that stayed in the group would keep some of them.
    await env.createTopic(topic, 4);
    const producer = await env.producer({ idempotent: true });
    await kafkaPublisher(producer, { topic, keyMapper: (e) => e.id }).publish(sent);
    const groupId = env.topicName("group");

    const first = kafkaSubscriber(await env.consumer(groupId), {
      topics: [topic],
      fromBeginning: true,
      formats: [json],
    });
    await first.ready;
    const accepted = new Set<string>();
    // Accepted records per partition: handed out in offset order, so from offset 0 on.
    const acceptedIn = new Map<number, number>();
    let inHand: Delivery | undefined;
    for await (const d of first) {
      if (accepted.size === 2) {
        inHand = d;
        break;
      }
      await d.accept();
      accepted.add(d.event?.id ?? "?");
      const partition = d.message.metadata?.partition as number;
      acceptedIn.set(partition, (acceptedIn.get(partition) ?? 0) + 1);
    }
    expect(accepted.size).toBe(2);
    // Leaving the loop committed exactly what was accepted, and nothing past it.
    const admin = env.kafka.admin();
    await admin.connect();
    const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
    await admin.disconnect();
    const committed = Object.fromEntries(
      (offsets?.partitions ?? [])
        .filter((p) => Number(p.offset) >= 0)
        .map((p) => [p.partition, Number(p.offset)]),
    );
    expect(committed).toEqual(Object.fromEntries(acceptedIn));
    // The delivery in hand was left to the next member: settling it says the subscriber is closed.
    const err = await inHand?.accept().catch((e: unknown) => e);
    expect(isPosthornError(err, "SettlementFailed")).toBe(true);

    const notAccepted = new Set(sent.map((e) => e.id).filter((id) => !accepted.has(id)));
    const second = kafkaSubscriber(await env.consumer(groupId), {
      topics: [topic],
      fromBeginning: true,
      formats: [json],
    });
    await second.ready;
    const again = await collect(second, notAccepted, 15_000);
    const againIds = new Set(again.map((d) => d.event?.id ?? "?"));
    expect([...notAccepted].filter((id) => !againIds.has(id))).toEqual([]);
    for (const d of again) await d.accept();
    await second.close();
  });
});
