import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import {
  CompressionTypes,
  type Consumer,
  type EachMessagePayload,
  Kafka,
  logLevel,
  type Producer,
} from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type KafkaTestBroker, portOpen, startKafkaBroker } from "../src/index.js";

process.env.KAFKAJS_NO_PARTITIONER_WARNING = "1";

// Small group timings keep rebalances fast; the broker itself has no initial rebalance delay.
const CONSUMER_TIMINGS = {
  sessionTimeout: 4000,
  rebalanceTimeout: 4000,
  heartbeatInterval: 100,
  maxWaitTimeInMs: 100,
} as const;

interface Received {
  partition: number;
  offset: string;
  key: string | null;
  value: string | null;
  headers: Record<string, string>;
}

function received({ partition, message }: EachMessagePayload): Received {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
  return {
    partition,
    offset: message.offset,
    key: message.key?.toString() ?? null,
    value: message.value?.toString() ?? null,
    headers,
  };
}

/** Resolves once `predicate` holds, polling every 20 ms; rejects after `timeoutMs`. */
async function until(
  predicate: () => boolean,
  timeoutMs = 15_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

describe("Kafka test broker with kafkajs", () => {
  let broker: KafkaTestBroker;
  let kafka: Kafka;
  const open: (Producer | Consumer)[] = [];

  beforeAll(async () => {
    broker = await startKafkaBroker({
      log: process.env.KAFKA_BROKER_DEBUG ? (l) => console.error(l) : () => {},
    });
    kafka = new Kafka({
      clientId: "broker-test",
      brokers: broker.brokers,
      logLevel: logLevel.NOTHING,
      retry: { retries: 5, initialRetryTime: 50 },
    });
  });

  afterAll(async () => {
    for (const c of open) await c.disconnect().catch(() => {});
    await broker?.stop();
  });

  async function producer(idempotent = false): Promise<Producer> {
    const p = kafka.producer(idempotent ? { idempotent: true, maxInFlightRequests: 1 } : {});
    open.push(p);
    await p.connect();
    return p;
  }

  async function consumer(groupId: string): Promise<Consumer> {
    const c = kafka.consumer({ groupId, ...CONSUMER_TIMINGS });
    open.push(c);
    await c.connect();
    return c;
  }

  it("advertises itself as the only broker", () => {
    expect(broker.host).toBe("127.0.0.1");
    expect(broker.port).toBeGreaterThan(0);
    expect(broker.brokers).toEqual([`127.0.0.1:${broker.port}`]);
  });

  it("carries keys, values and headers from producer to consumer across 3 partitions", async () => {
    const topic = unique("keys-headers");
    broker.createTopic(topic, 3);
    const p = await producer();
    const messages = Array.from({ length: 30 }, (_, i) => ({
      key: `key-${i}`,
      value: `value-${i}`,
      headers: { ce_id: `id-${i}`, "content-type": "text/plain" },
      partition: i % 3,
    }));
    const acks = await p.send({ topic, messages });
    expect(acks.map((a) => a.errorCode)).toEqual([0, 0, 0]);

    const c = await consumer(unique("g"));
    await c.subscribe({ topic, fromBeginning: true });
    const got: Received[] = [];
    await c.run({ eachMessage: async (payload) => void got.push(received(payload)) });
    await until(() => got.length >= 30, 15_000, "30 records");
    await c.stop();

    expect(got).toHaveLength(30);
    expect(new Set(got.map((g) => g.partition))).toEqual(new Set([0, 1, 2]));
    for (const g of got) {
      const i = Number(g.value?.slice("value-".length));
      expect(g).toMatchObject({
        partition: i % 3,
        key: `key-${i}`,
        headers: { ce_id: `id-${i}`, "content-type": "text/plain" },
      });
    }
    // Offsets are dense per partition, in send order.
    for (const part of [0, 1, 2]) {
      const inPart = got.filter((g) => g.partition === part);
      expect(inPart.map((g) => Number(g.offset))).toEqual(inPart.map((_, i) => i));
    }
  });

  it("auto-creates topics with the default partition count and reports offsets", async () => {
    const topic = unique("auto");
    const p = await producer();
    await p.send({ topic, messages: [{ value: "a" }, { value: "b" }, { value: "c" }] });
    const admin = kafka.admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchTopicOffsets(topic);
      expect(offsets).toHaveLength(3);
      expect(offsets.reduce((sum, o) => sum + Number(o.high), 0)).toBe(3);
      expect(offsets.every((o) => o.low === "0")).toBe(true);
      const meta = await admin.fetchTopicMetadata({ topics: [topic] });
      expect(meta.topics[0]?.partitions.map((x) => x.leader)).toEqual([1, 1, 1]);
    } finally {
      await admin.disconnect();
    }
  });

  it("creates topics through the admin API and refuses a replication factor above 1", async () => {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const topic = unique("admin");
      expect(await admin.createTopics({ topics: [{ topic, numPartitions: 5 }] })).toBe(true);
      expect(await admin.createTopics({ topics: [{ topic, numPartitions: 5 }] })).toBe(false);
      expect((await admin.fetchTopicOffsets(topic)).length).toBe(5);
      const err = await admin
        .createTopics({ topics: [{ topic: unique("rf"), replicationFactor: 3 }] })
        .then(
          () => undefined,
          (e: { errors?: { type?: string }[] }) => e,
        );
      expect(err?.errors?.[0]?.type).toBe("INVALID_REPLICATION_FACTOR");
    } finally {
      await admin.disconnect();
    }
  });

  it("passes compressed (gzip) batches through unchanged", async () => {
    const topic = unique("gzip");
    broker.createTopic(topic, 1);
    const p = await producer();
    const value = "compressible ".repeat(200);
    await p.send({
      topic,
      compression: CompressionTypes.GZIP,
      messages: Array.from({ length: 20 }, (_, i) => ({
        key: `k${i}`,
        value,
        headers: { i: String(i) },
      })),
    });
    const c = await consumer(unique("g"));
    await c.subscribe({ topic, fromBeginning: true });
    const got: Received[] = [];
    await c.run({ eachMessage: async (payload) => void got.push(received(payload)) });
    await until(() => got.length >= 20, 15_000, "20 records");
    await c.stop();
    expect(got.map((g) => g.headers.i)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    expect(got.every((g) => g.value === value)).toBe(true);
  });

  it("accepts an idempotent producer and stores each record once, in order", async () => {
    const topic = unique("idem");
    broker.createTopic(topic, 1);
    const p = await producer(true);
    for (let batch = 0; batch < 5; batch++) {
      await p.send({
        topic,
        messages: Array.from({ length: 10 }, (_, i) => ({
          key: "k",
          value: String(batch * 10 + i),
        })),
      });
    }
    const c = await consumer(unique("g"));
    await c.subscribe({ topic, fromBeginning: true });
    const got: Received[] = [];
    await c.run({ eachMessage: async (payload) => void got.push(received(payload)) });
    await until(() => got.length >= 50, 15_000, "50 records");
    await new Promise((r) => setTimeout(r, 200));
    await c.stop();
    expect(got.map((g) => g.value)).toEqual(Array.from({ length: 50 }, (_, i) => String(i)));
  });

  it("splits partitions between two group members and rebalances when one leaves", async () => {
    const topic = unique("group");
    const groupId = unique("g");
    broker.createTopic(topic, 4);
    const assignments = new Map<string, number[]>();
    const got = new Map<string, Received[]>();

    async function member(name: string): Promise<Consumer> {
      const c = await consumer(groupId);
      got.set(name, []);
      c.on(c.events.GROUP_JOIN, (e) => {
        assignments.set(name, [...(e.payload.memberAssignment[topic] ?? [])].sort());
      });
      await c.subscribe({ topic, fromBeginning: true });
      await c.run({ eachMessage: async (payload) => void got.get(name)?.push(received(payload)) });
      return c;
    }

    const a = await member("a");
    await until(() => assignments.get("a")?.length === 4, 15_000, "a owning all partitions");
    const b = await member("b");
    await until(
      () => (assignments.get("a")?.length ?? 0) === 2 && (assignments.get("b")?.length ?? 0) === 2,
      15_000,
      "a and b sharing the partitions",
    );
    const shareA = assignments.get("a") ?? [];
    const shareB = assignments.get("b") ?? [];
    expect([...shareA, ...shareB].sort()).toEqual([0, 1, 2, 3]);

    const p = await producer();
    await p.send({
      topic,
      messages: Array.from({ length: 40 }, (_, i) => ({ value: `m${i}`, partition: i % 4 })),
    });
    const count = () => (got.get("a")?.length ?? 0) + (got.get("b")?.length ?? 0);
    await until(() => count() >= 40, 15_000, "40 records over two members");
    expect(new Set(got.get("a")?.map((r) => r.partition))).toEqual(new Set(shareA));
    expect(new Set(got.get("b")?.map((r) => r.partition))).toEqual(new Set(shareB));

    await a.disconnect();
    await until(() => assignments.get("b")?.length === 4, 15_000, "b taking over every partition");
    await p.send({
      topic,
      messages: Array.from({ length: 8 }, (_, i) => ({ value: `late${i}`, partition: i % 4 })),
    });
    await until(
      () => (got.get("b")?.filter((r) => r.value?.startsWith("late")).length ?? 0) >= 8,
      15_000,
      "b receiving the records of a's former partitions",
    );
    await b.disconnect();
    const all = [...(got.get("a") ?? []), ...(got.get("b") ?? [])].map((r) => r.value);
    for (let i = 0; i < 40; i++) expect(all).toContain(`m${i}`);
  });

  it("lets a member commit while a rebalance is prepared, so a joining member reads nothing twice", async () => {
    const topic = unique("handover");
    const groupId = unique("g");
    broker.createTopic(topic, 4);
    const assignments = new Map<string, number[]>();
    const got: string[] = [];
    let openGate = () => {};
    const gate = new Promise<void>((resolve) => {
      openGate = resolve;
    });

    async function member(name: string, first?: Promise<void>): Promise<Consumer> {
      const c = await consumer(groupId);
      c.on(c.events.GROUP_JOIN, (e) => {
        assignments.set(name, [...(e.payload.memberAssignment[topic] ?? [])]);
      });
      await c.subscribe({ topic, fromBeginning: true });
      await c.run({
        eachMessage: async ({ message }) => {
          if (first !== undefined) await first; // hold a's first batch until b has asked to join
          got.push(String(message.value));
        },
      });
      return c;
    }

    const p = await producer();
    await p.send({
      topic,
      messages: Array.from({ length: 40 }, (_, i) => ({ value: `m${i}`, partition: i % 4 })),
    });
    const a = await member("a", gate);
    await until(() => assignments.get("a")?.length === 4, 15_000, "a owning all partitions");
    // b's JoinGroup puts the group in PreparingRebalance while a still holds its records; a then
    // commits them before it rejoins. A commit refused there left b (or a) reading them again.
    const joining = member("b");
    await new Promise((r) => setTimeout(r, 300));
    openGate();
    const b = await joining;
    await until(
      () => (assignments.get("a")?.length ?? 0) === 2 && (assignments.get("b")?.length ?? 0) === 2,
      15_000,
      "a and b sharing the partitions",
    );
    await p.send({
      topic,
      messages: Array.from({ length: 8 }, (_, i) => ({ value: `late${i}`, partition: i % 4 })),
    });
    await until(() => new Set(got).size >= 48, 15_000, "all 48 records");
    await new Promise((r) => setTimeout(r, 300));
    expect(got.length - new Set(got).size, "records read twice").toBe(0);
    await a.disconnect();
    await b.disconnect();
  });

  it("lists a group whose members all left as an empty consumer group, as Kafka does", async () => {
    const topic = unique("emptied");
    const groupId = unique("g");
    broker.createTopic(topic, 1);
    const c = await consumer(groupId);
    let joined = false;
    c.on(c.events.GROUP_JOIN, () => {
      joined = true;
    });
    await c.subscribe({ topic, fromBeginning: true });
    await c.run({ eachMessage: async () => {} });
    await until(() => joined, 15_000, "the join");
    await c.disconnect();
    const admin = kafka.admin();
    await admin.connect();
    try {
      const { groups } = await admin.listGroups();
      expect(groups.find((g) => g.groupId === groupId)).toEqual({
        groupId,
        protocolType: "consumer",
      });
      const described = await admin.describeGroups([groupId]);
      expect(described.groups[0]).toMatchObject({ state: "Empty", protocolType: "consumer" });
    } finally {
      await admin.disconnect();
    }
  });

  it("deletes an empty group and its offsets with admin.deleteGroups(), and refuses a group with members or an unknown one as Kafka does", async () => {
    const topic = unique("delete-groups");
    const emptied = unique("g");
    const busy = unique("g");
    const unknown = unique("g");
    broker.createTopic(topic, 1);
    const p = await producer();
    await p.send({ topic, messages: [{ value: "one" }, { value: "two" }] });

    // A group whose only member read both records, committed and left: empty, with offsets.
    const first = await consumer(emptied);
    await first.subscribe({ topic, fromBeginning: true });
    const seen: string[] = [];
    await first.run({
      eachMessage: async (payload) => void seen.push(String(payload.message.value)),
    });
    await until(() => seen.length === 2, 15_000, "2 records");
    await first.disconnect();
    // A group with a running member.
    const running = await consumer(busy);
    let joined = false;
    running.on(running.events.GROUP_JOIN, () => {
      joined = true;
    });
    await running.subscribe({ topic, fromBeginning: true });
    await running.run({ eachMessage: async () => {} });
    await until(() => joined, 15_000, "the join");

    const admin = kafka.admin();
    await admin.connect();
    try {
      expect(
        (await admin.fetchOffsets({ groupId: emptied, topics: [topic] }))[0]?.partitions,
      ).toEqual([{ partition: 0, offset: "2", metadata: null }]);
      expect(await admin.deleteGroups([emptied])).toEqual([{ groupId: emptied, errorCode: 0 }]);
      const { groups } = await admin.listGroups();
      expect(groups.map((g) => g.groupId)).not.toContain(emptied);
      expect((await admin.describeGroups([emptied])).groups[0]).toMatchObject({ state: "Dead" });
      // Its committed offsets went with it.
      expect(
        (await admin.fetchOffsets({ groupId: emptied, topics: [topic] }))[0]?.partitions,
      ).toEqual([{ partition: 0, offset: "-1", metadata: null }]);

      for (const [groupId, type] of [
        [busy, "NON_EMPTY_GROUP"],
        [unknown, "GROUP_ID_NOT_FOUND"],
        [emptied, "GROUP_ID_NOT_FOUND"], // deleted already
      ] as const) {
        const error = await admin.deleteGroups([groupId]).catch((e: unknown) => e);
        expect(error, groupId).toMatchObject({
          name: "KafkaJSDeleteGroupsError",
          groups: [{ groupId, errorCode: type === "NON_EMPTY_GROUP" ? 68 : 69, error: { type } }],
        });
      }
      // The refused group is untouched: its member still owns it.
      expect((await admin.describeGroups([busy])).groups[0]?.members).toHaveLength(1);
    } finally {
      await admin.disconnect();
    }
  });

  it("keeps committed offsets across a consumer restart", async () => {
    const topic = unique("commit");
    const groupId = unique("g");
    broker.createTopic(topic, 2);
    const p = await producer();
    await p.send({
      topic,
      messages: Array.from({ length: 6 }, (_, i) => ({ value: `first${i}`, partition: i % 2 })),
    });

    const c1 = await consumer(groupId);
    await c1.subscribe({ topic, fromBeginning: true });
    const first: Received[] = [];
    await c1.run({ eachMessage: async (payload) => void first.push(received(payload)) });
    await until(() => first.length >= 6, 15_000, "6 records");
    await c1.disconnect(); // commits the resolved offsets

    const admin = kafka.admin();
    await admin.connect();
    try {
      const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
      expect(committed[0]?.partitions.map((x) => x.offset).sort()).toEqual(["3", "3"]);
    } finally {
      await admin.disconnect();
    }

    await p.send({
      topic,
      messages: Array.from({ length: 4 }, (_, i) => ({ value: `second${i}`, partition: i % 2 })),
    });
    const c2 = await consumer(groupId);
    await c2.subscribe({ topic, fromBeginning: true });
    const second: Received[] = [];
    await c2.run({ eachMessage: async (payload) => void second.push(received(payload)) });
    await until(() => second.length >= 4, 15_000, "4 new records");
    await new Promise((r) => setTimeout(r, 300));
    await c2.disconnect();
    expect(second.map((r) => r.value).sort()).toEqual(["second0", "second1", "second2", "second3"]);
  });

  it("wakes a waiting consumer as soon as records arrive (long poll without a busy loop)", async () => {
    const topic = unique("longpoll");
    broker.createTopic(topic, 1);
    const c = kafka.consumer({ groupId: unique("g"), ...CONSUMER_TIMINGS, maxWaitTimeInMs: 5000 });
    open.push(c);
    await c.connect();
    await c.subscribe({ topic, fromBeginning: true });
    let joined = false;
    c.on(c.events.GROUP_JOIN, () => {
      joined = true;
    });
    const arrivals: number[] = [];
    await c.run({ eachMessage: async () => void arrivals.push(Date.now()) });
    await until(() => joined, 15_000, "join");
    await new Promise((r) => setTimeout(r, 300)); // the consumer is now parked in a 5 s fetch
    const p = await producer();
    const sentAt = Date.now();
    await p.send({ topic, messages: [{ value: "wake up" }] });
    await until(() => arrivals.length === 1, 4000, "the record");
    expect((arrivals[0] ?? 0) - sentAt).toBeLessThan(1000);
    await c.disconnect();
  });

  it("keeps data over restart() and clients reconnect", async () => {
    const topic = unique("restart");
    broker.createTopic(topic, 1);
    const p = await producer();
    await p.send({ topic, messages: [{ value: "before" }] });
    const port = broker.port;
    await broker.restart();
    expect(broker.port).toBe(port);
    await p.send({ topic, messages: [{ value: "after" }] });
    const c = await consumer(unique("g"));
    await c.subscribe({ topic, fromBeginning: true });
    const got: Received[] = [];
    await c.run({ eachMessage: async (payload) => void got.push(received(payload)) });
    await until(() => got.length >= 2, 15_000, "2 records");
    await c.disconnect();
    expect(got.map((g) => g.value)).toEqual(["before", "after"]);
  });

  it("lets a running consumer group continue after restart()", async () => {
    const topic = unique("restart-group");
    broker.createTopic(topic, 2);
    const p = await producer();
    const c = await consumer(unique("g"));
    await c.subscribe({ topic, fromBeginning: true });
    const got: Received[] = [];
    await c.run({ eachMessage: async (payload) => void got.push(received(payload)) });
    await p.send({
      topic,
      messages: [
        { value: "one", partition: 0 },
        { value: "two", partition: 1 },
      ],
    });
    await until(() => got.length >= 2, 15_000, "2 records before the restart");
    await broker.restart();
    await p.send({
      topic,
      messages: [
        { value: "three", partition: 0 },
        { value: "four", partition: 1 },
      ],
    });
    await until(() => got.length >= 4, 20_000, "2 records after the restart");
    await c.disconnect();
    expect(got.map((g) => g.value).sort()).toEqual(["four", "one", "three", "two"]);
  });
});

describe("Kafka test broker restart() on a port taken while it was down", () => {
  it("rejects naming the port and stays down; once the port is free, restart() brings it back with its data", async () => {
    const broker = await startKafkaBroker({ log: () => {} });
    const squatter = createServer((socket) => socket.destroy());
    try {
      const kafka = new Kafka({
        clientId: "broker-test-taken",
        brokers: broker.brokers,
        logLevel: logLevel.NOTHING,
        retry: { retries: 5, initialRetryTime: 50 },
      });
      const topic = unique("taken");
      broker.createTopic(topic, 1);
      const p = kafka.producer();
      await p.connect();
      await p.send({ topic, messages: [{ value: "before" }] });
      await p.disconnect();

      await broker.kill();
      expect(await portOpen("127.0.0.1", broker.port, 500)).toBe(false);
      // Another process takes the port while the broker is down.
      await new Promise<void>((resolve, reject) => {
        squatter.once("error", reject);
        squatter.listen(broker.port, "127.0.0.1", () => resolve());
      });
      await expect(broker.restart()).rejects.toThrow(
        `cannot restart the Kafka test broker on its port (127.0.0.1:${broker.port}): another process took it while the broker was down`,
      );
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
      expect(await portOpen("127.0.0.1", broker.port, 500)).toBe(false);

      await broker.restart();
      const c = kafka.consumer({ groupId: unique("g"), ...CONSUMER_TIMINGS });
      await c.connect();
      await c.subscribe({ topic, fromBeginning: true });
      const got: Received[] = [];
      await c.run({ eachMessage: async (payload) => void got.push(received(payload)) });
      await until(() => got.length >= 1, 15_000, "the record written before kill()");
      await c.disconnect();
      expect(got.map((g) => g.value)).toEqual(["before"]);
    } finally {
      if (squatter.listening) squatter.close();
      await broker.stop();
    }
  });
});
