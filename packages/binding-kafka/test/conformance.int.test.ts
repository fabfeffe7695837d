import type { EventFormat } from "@posthorn/core";
import { avro } from "@posthorn/format-avro";
import { json } from "@posthorn/format-json";
import { protobuf } from "@posthorn/format-protobuf";
import { type BindingHarness, describeBindingConformance, pathsOf } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { externalKafkaOk } from "./env.js";
import { kafkaHarness } from "./harness.js";

const ok = await externalKafkaOk();

// kafkajs clients from the test environment (KAFKA_BROKERS or the test broker).
function harness(mode: "binary" | "structured", format?: EventFormat): BindingHarness {
  return kafkaHarness({
    name: `kafka (${process.env.KAFKA_BROKERS ? "KAFKA_BROKERS" : "test broker"}, ${mode})`,
    mode,
    format,
    timeoutMs: 15_000,
    clients: (env) => ({
      producer: () => env.producer({ idempotent: true }),
      consumer: (groupId) => env.consumer(groupId),
      // env.stop() disconnects every client it made.
      stop: async () => {},
    }),
    subscriber: { fromBeginning: true, formats: [json, avro, protobuf] },
  });
}

describe.skipIf(!ok)(
  "Kafka binding over real connections (skipped: KAFKA_BROKERS unreachable outside CI)",
  () => {
    const suites = [
      describeBindingConformance(harness("binary")),
      describeBindingConformance(harness("structured", json)),
      describeBindingConformance(harness("structured", avro)),
      describeBindingConformance(harness("structured", protobuf)),
    ];
    it("covers binary mode and structured mode in every format, skipping no vector", () => {
      expect(suites.flatMap(pathsOf)).toEqual([
        "binary",
        "structured/json",
        "structured/avro",
        "structured/protobuf",
      ]);
      expect(suites.flatMap((s) => s.skipped)).toEqual([]);
    });
  },
);
