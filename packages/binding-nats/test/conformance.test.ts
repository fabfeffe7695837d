import { fromNatsMessage, toNatsMessage } from "@posthorn/binding-nats";
import type { CloudEvent } from "@posthorn/core";
import { describeBindingConformance, pathsOf } from "@posthorn/testkit";
import { expect, it } from "vitest";
import { FORMATS } from "./formats.js";

const formats = FORMATS;

// Binary mode: attributes as ce- headers, which carry strings only and fold case.
const binary = describeBindingConformance({
  name: "nats (mapping, binary)",
  paths: [{ mode: "binary" }],
  typed: false,
  caseSensitive: false,
  roundTrip(event: CloudEvent) {
    const message = toNatsMessage(event, { mode: "binary" });
    return fromNatsMessage(message, { formats });
  },
});

// Structured mode: the formatted event as the payload, in every format.
const structured = describeBindingConformance({
  name: "nats (mapping, structured)",
  paths: formats.map((format) => ({ mode: "structured" as const, format })),
  typed: true,
  caseSensitive: true,
  roundTrip(event, path) {
    const message = toNatsMessage(event, {
      mode: "structured",
      ...(path.format ? { format: path.format } : {}),
    });
    return fromNatsMessage(message, { formats });
  },
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
