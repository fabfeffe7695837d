import { fromKafkaRecord, toKafkaRecord } from "@posthorn/binding-kafka";
import { avro } from "@posthorn/format-avro";
import { json } from "@posthorn/format-json";
import { protobuf } from "@posthorn/format-protobuf";
import { describeBindingConformance, pathsOf } from "@posthorn/testkit";
import { expect, it } from "vitest";
import { asReceived } from "./wire.js";

// The mapping layer alone: encode, the bytes kafkajs would put on the wire, decode. Binary-mode
// headers carry strings only, so the binary harness is untyped; JSON keeps types.
const binary = describeBindingConformance({
  name: "kafka (mapping, binary)",
  paths: [{ mode: "binary" }],
  typed: false,
  caseSensitive: true,
  roundTrip: (event) => fromKafkaRecord(asReceived(toKafkaRecord(event, { mode: "binary" }))),
});

const structured = describeBindingConformance({
  name: "kafka (mapping, structured)",
  paths: [
    { mode: "structured", format: json },
    { mode: "structured", format: avro },
    { mode: "structured", format: protobuf },
  ],
  typed: true,
  caseSensitive: true,
  roundTrip: (event, path) =>
    fromKafkaRecord(
      asReceived(
        toKafkaRecord(event, {
          mode: "structured",
          ...(path.format ? { format: path.format } : {}),
        }),
      ),
      { formats: [json, avro, protobuf] },
    ),
});

it("covers binary mode and structured mode in every format, skipping no vector", () => {
  expect(pathsOf(binary)).toEqual(["binary"]);
  expect(pathsOf(structured)).toEqual([
    "structured/json",
    "structured/avro",
    "structured/protobuf",
  ]);
  expect([...binary.skipped, ...structured.skipped]).toEqual([]);
});
