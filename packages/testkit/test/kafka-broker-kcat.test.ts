import { execFile, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { Kafka, logLevel } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inCi, type KafkaTestBroker, startKafkaBroker } from "../src/index.js";

process.env.KAFKAJS_NO_PARTITIONER_WARNING = "1";

// kcat is librdkafka's command-line client: a Kafka implementation independent of kafkajs.
const hasKcat = spawnSync("kcat", ["-V"], { stdio: "ignore" }).status === 0;
if (!hasKcat && inCi()) {
  throw new Error(
    "kcat is required under CI=true (Debian package kcat, see scripts/system-deps.sh)",
  );
}

function kcat(args: string[], input?: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile("kcat", args, { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`kcat ${args.join(" ")} failed: ${err.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
    child.stdin?.end(input ?? "");
  });
}

interface KcatRecord {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  payload: string | null;
  headers?: string[];
}

const parseJsonLines = (out: string): KcatRecord[] =>
  out
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as KcatRecord);

const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

describe.skipIf(!hasKcat)(
  "Kafka test broker with kcat/librdkafka (skipped: kcat not installed outside CI)",
  () => {
    let broker: KafkaTestBroker;
    let bootstrap: string;
    let kafka: Kafka;

    beforeAll(async () => {
      broker = await startKafkaBroker({ log: () => {} });
      bootstrap = broker.brokers.join(",");
      kafka = new Kafka({
        clientId: "kcat-test",
        brokers: broker.brokers,
        logLevel: logLevel.NOTHING,
      });
    });

    afterAll(async () => {
      await broker?.stop();
    });

    it("produces and consumes records with keys and headers", async () => {
      const topic = unique("kcat");
      await kcat(
        ["-b", bootstrap, "-P", "-t", topic, "-k", "the-key", "-H", "h=v", "-H", "ce_id=42"],
        "hello\nworld\n",
      );
      const { stdout } = await kcat([
        "-b",
        bootstrap,
        "-C",
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-J",
        "-q",
      ]);
      const records = parseJsonLines(stdout);
      expect(records.map((r) => r.payload)).toEqual(["hello", "world"]);
      for (const r of records) {
        expect(r).toMatchObject({ topic, key: "the-key", headers: ["h", "v", "ce_id", "42"] });
      }
      expect(records.map((r) => r.offset)).toEqual([0, 1]);
    });

    it("spreads keyed records over the partitions with an idempotent librdkafka producer", async () => {
      const topic = unique("kcat-idem");
      const lines = Array.from({ length: 30 }, (_, i) => `key${i}:value${i}`).join("\n");
      await kcat(
        [
          "-b",
          bootstrap,
          "-P",
          "-t",
          topic,
          "-K",
          ":",
          "-H",
          "x=y",
          "-X",
          "enable.idempotence=true",
        ],
        `${lines}\n`,
      );
      const { stdout } = await kcat([
        "-b",
        bootstrap,
        "-C",
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-J",
        "-q",
      ]);
      const records = parseJsonLines(stdout);
      expect(records).toHaveLength(30);
      expect(new Set(records.map((r) => r.partition)).size).toBeGreaterThan(1);
      for (const r of records) {
        expect(r.key?.replace("key", "value")).toBe(r.payload);
        expect(r.headers).toEqual(["x", "y"]);
      }
    });

    it("reads what kafkajs produced, and kafkajs reads what kcat produced", async () => {
      const topic = unique("interop");
      broker.createTopic(topic, 1);
      const producer = kafka.producer();
      await producer.connect();
      await producer.send({
        topic,
        messages: [{ key: "from-kafkajs", value: "v1", headers: { origin: "kafkajs" } }],
      });
      await producer.disconnect();
      await kcat(
        ["-b", bootstrap, "-P", "-t", topic, "-p", "0", "-k", "from-kcat", "-H", "origin=kcat"],
        "v2\n",
      );

      const { stdout } = await kcat([
        "-b",
        bootstrap,
        "-C",
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-J",
        "-q",
      ]);
      expect(parseJsonLines(stdout).map((r) => [r.key, r.payload, r.headers])).toEqual([
        ["from-kafkajs", "v1", ["origin", "kafkajs"]],
        ["from-kcat", "v2", ["origin", "kcat"]],
      ]);

      const consumer = kafka.consumer({
        groupId: unique("g"),
        sessionTimeout: 4000,
        heartbeatInterval: 100,
        maxWaitTimeInMs: 100,
      });
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      const got: [string, string, string][] = [];
      await consumer.run({
        eachMessage: async ({ message }) =>
          void got.push([
            String(message.key),
            String(message.value),
            String(message.headers?.origin),
          ]),
      });
      const deadline = Date.now() + 10_000;
      while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await consumer.disconnect();
      expect(got).toEqual([
        ["from-kafkajs", "v1", "kafkajs"],
        ["from-kcat", "v2", "kcat"],
      ]);
    });

    it("runs a librdkafka consumer group that commits its offsets", async () => {
      const topic = unique("kcat-group");
      const group = unique("g");
      await kcat(["-b", bootstrap, "-P", "-t", topic, "-K", ":"], "a:1\nb:2\nc:3\nd:4\n");
      const first = await kcat([
        "-b",
        bootstrap,
        "-G",
        group,
        "-X",
        "auto.offset.reset=earliest",
        "-e",
        "-J",
        "-q",
        topic,
      ]);
      expect(
        parseJsonLines(first.stdout)
          .map((r) => r.payload)
          .sort(),
      ).toEqual(["1", "2", "3", "4"]);

      const admin = kafka.admin();
      await admin.connect();
      try {
        const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] });
        const total = offsets[0]?.partitions.reduce(
          (sum, p) => sum + Math.max(0, Number(p.offset)),
          0,
        );
        expect(total).toBe(4);
      } finally {
        await admin.disconnect();
      }

      await kcat(["-b", bootstrap, "-P", "-t", topic, "-K", ":"], "e:5\n");
      const second = await kcat([
        "-b",
        bootstrap,
        "-G",
        group,
        "-X",
        "auto.offset.reset=earliest",
        "-e",
        "-J",
        "-q",
        topic,
      ]);
      expect(parseJsonLines(second.stdout).map((r) => r.payload)).toEqual(["5"]);
    });
  },
);
