import { CloudEvent } from "@posthorn/core";
import { startKafkaBroker } from "@posthorn/testkit";
import { createPublisher } from "posthorn";
import { describe, expect, it } from "vitest";
import { consumeWithCheckpoints } from "../src/checkpointed-consumer.js";

describe("consumeWithCheckpoints (testkit Kafka broker)", () => {
  it("resumes after the checkpoint when the group comes back", { timeout: 60_000 }, async () => {
    const kafka = await startKafkaBroker({ log: () => undefined });
    try {
      const url = `kafka://${kafka.brokers[0]}/example-orders-${Date.now()}?partitions=1`;
      const publisher = await createPublisher(url);
      for (let i = 0; i < 10; i++) {
        await publisher.publish(
          CloudEvent.create({ type: "com.example.order", source: "/t", id: `o-${i}` }),
        );
      }
      await publisher.close();
      const first = await consumeWithCheckpoints(
        { url, group: "reporting", limit: 4, idleMs: 3000 },
        () => undefined,
      );
      expect(first.map((e) => e.id)).toEqual(["o-0", "o-1", "o-2", "o-3"]);
      const second = await consumeWithCheckpoints(
        { url, group: "reporting", limit: 100, idleMs: 1500 },
        () => undefined,
      );
      expect(second.map((e) => e.id)).toEqual(["o-4", "o-5", "o-6", "o-7", "o-8", "o-9"]);
      const fresh = await consumeWithCheckpoints(
        { url, group: "audit & billing", limit: 100, idleMs: 1500 },
        () => undefined,
      );
      expect(fresh).toHaveLength(10);
    } finally {
      await kafka.stop();
    }
  });
});
