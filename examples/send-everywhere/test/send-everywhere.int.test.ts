import { CloudEvent, equivalent } from "@posthorn/core";
import { startKafkaBroker } from "@posthorn/testkit";
import { createSubscriber } from "posthorn";
import { describe, expect, it } from "vitest";
import { formatResult, sendEverywhere } from "../src/send-everywhere.js";

describe("sendEverywhere", () => {
  it("delivers one event over HTTP and Kafka, and reports an unreachable endpoint", async () => {
    const kafka = await startKafkaBroker({ log: () => undefined });
    // Port 0: the system picks a free port as the receiver listens, and listeningPort names it.
    const http = await createSubscriber("http://127.0.0.1:0/events");
    const httpUrl = `http://127.0.0.1:${http.listeningPort}/events`;
    const topic = `example-everywhere-${Date.now()}`;
    const kafkaUrl = `kafka://${kafka.brokers[0]}/${topic}?mode=structured&format=protobuf`;
    const event = CloudEvent.create({ type: "com.example.t", source: "/t", data: { n: 1 } });
    try {
      const received = (async () => {
        for await (const d of http) {
          await d.accept();
          return d.event;
        }
      })();
      const results = await sendEverywhere(event, [
        httpUrl,
        kafkaUrl,
        "amqp://127.0.0.1:1/nowhere",
      ]);
      expect(results.map((r) => r.ok)).toEqual([true, true, false]);
      expect(results[2]?.error).toContain("amqp://127.0.0.1:1/nowhere");
      const got = await received;
      expect(got && equivalent(got, event)).toBe(true);
      const sub = await createSubscriber(`kafka://${kafka.brokers[0]}/${topic}?from=earliest`);
      for await (const d of sub) {
        expect(d.event && equivalent(d.event, event)).toBe(true);
        await d.accept();
        break;
      }
      await sub.close();
    } finally {
      await http.close();
      await kafka.stop();
    }
  });

  it("prints a result without the password of its URL", async () => {
    const [result] = await sendEverywhere(
      CloudEvent.create({ type: "com.example.t", source: "/t" }),
      ["amqp://guest:s3cret-pw@127.0.0.1:1/orders"],
    );
    expect(result?.ok).toBe(false);
    const line = formatResult(result as NonNullable<typeof result>);
    expect(line).toMatch(/^FAIL amqp:\/\/guest:\*\*\*@127\.0\.0\.1:1\/orders /);
    expect(line).not.toContain("s3cret-pw");
  });
});
