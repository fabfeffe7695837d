import { brokerUrl, requireBroker } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { kafkaBrokersForFile, runCli, unique } from "./run-cli.js";

const amqpOk = await requireBroker("amqp");
const amqpBase = (brokerUrl("amqp") ?? "").replace(/\/+$/, "");

// Kafka: KAFKA_BROKERS when set, else the testkit broker in this process.
const kafkaBrokers = kafkaBrokersForFile();

function events(ids: string[]): string {
  return ids
    .map((id) => JSON.stringify({ specversion: "1.0", id, source: "/s", type: "t" }))
    .join("\n");
}

describe.skipIf(!amqpOk)("bridge --count (skipped: no broker outside CI)", () => {
  it("moves exactly n of the events waiting upstream and leaves the rest there", {
    timeout: 60_000,
  }, async () => {
    const queue = `${amqpBase}/queue/${unique("posthorn-cli-count")}`;
    const topic = unique("posthorn-cli-count");
    const sent = await runCli(["send", queue], { stdin: events(["1", "2", "3", "4", "5"]) });
    expect(sent.code, sent.stderr).toBe(0);
    const r = await runCli([
      "bridge",
      queue,
      `kafka://${kafkaBrokers()}/${topic}`,
      "--count",
      "2",
      "--json",
      "--timeout",
      "30000",
    ]);
    expect(r.code, r.stderr).toBe(0);
    // Before: {"moved":5,...}, every event waiting was moved.
    expect(JSON.parse(r.stdout)).toMatchObject({ moved: 2, lost: 0, rejected: 0 });
    const downstream = await runCli([
      "receive",
      `kafka://${kafkaBrokers()}/${topic}?from=earliest`,
      "--count",
      "3",
      "--timeout",
      "5000",
    ]);
    expect(downstream.stdout.trim().split("\n")).toHaveLength(2);
    const left = await runCli(["receive", queue, "--count", "3", "--timeout", "20000"]);
    expect(left.code, left.stderr).toBe(0);
    const ids = left.stdout
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { id: string }).id);
    expect(ids.sort()).toEqual(["3", "4", "5"]);
  });
});

describe.skipIf(!amqpOk)("bridge --publish-timeout (skipped: no broker outside CI)", () => {
  it("a downstream slower than --publish-timeout has the event released upstream; within it, moved", {
    timeout: 60_000,
  }, async () => {
    const { createServer } = await import("node:http");
    // Answers every POST 200 after 600 ms.
    const server = createServer((req, res) => {
      req.resume();
      req.on("end", () => setTimeout(() => res.writeHead(200).end(), 600));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    try {
      const queue = `${amqpBase}/queue/${unique("posthorn-cli-publish-timeout")}`;
      const sent = await runCli(["send", queue], { stdin: events(["slow"]) });
      expect(sent.code, sent.stderr).toBe(0);
      const args = ["bridge", queue, `http://127.0.0.1:${port}/in`, "--count", "1", "--json"];
      const short = await runCli([...args, "--publish-timeout", "100", "--timeout", "2500"]);
      const shortStats = JSON.parse(short.stdout) as { moved: number; released: number };
      expect(shortStats.moved).toBe(0);
      expect(shortStats.released).toBeGreaterThan(0);
      expect(short.stderr).toContain("downstream publish failed");
      // The default (10 s) waits for the answer: the released event is still there, and moves.
      const long = await runCli([...args, "--timeout", "20000"]);
      expect(long.code, long.stderr).toBe(0);
      expect(JSON.parse(long.stdout)).toMatchObject({ moved: 1, released: 0 });
    } finally {
      server.close();
    }
  });
});
