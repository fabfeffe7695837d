import { fromHttpMessage, toHttpMessage } from "@posthorn/binding-http";
import type { CloudEvent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { type BindingPath, describeBindingConformance, pathsOf } from "@posthorn/testkit";
import { expect, it } from "vitest";
import { FORMATS } from "./formats.js";

// The mapping layer on its own: every vector through toHttpMessage and back through
// fromHttpMessage, in every mode and every available format, with no I/O.
const paths: BindingPath[] = [
  { mode: "binary" },
  ...FORMATS.map((format) => ({ mode: "structured" as const, format })),
  ...FORMATS.filter((f) => f.batchContentType !== undefined).map((format) => ({
    mode: "batch" as const,
    format,
  })),
];
const options = { formats: FORMATS, maxBodyBytes: 8 * 1024 * 1024 };

const coverage = describeBindingConformance({
  name: "http (mapping)",
  paths,
  roundTrip(event: CloudEvent, path: BindingPath) {
    const message = toHttpMessage(event, { mode: path.mode, format: path.format ?? json });
    return fromHttpMessage(message, options) as CloudEvent;
  },
  roundTripBatch(events: readonly CloudEvent[], path: BindingPath) {
    const message = toHttpMessage(events, { mode: "batch", format: path.format ?? json });
    return fromHttpMessage(message, options) as CloudEvent[];
  },
});

it("covers binary and structured mode in every format, batch mode in JSON and Protobuf (Avro has none), skipping no vector", () => {
  expect(pathsOf(coverage)).toEqual([
    "binary",
    "structured/json",
    "structured/avro",
    "structured/protobuf",
    "batch/json",
    "batch/protobuf",
  ]);
  expect(coverage.skipped).toEqual([]);
});
