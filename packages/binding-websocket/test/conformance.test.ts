import { fromWebSocketFrame, toWebSocketFrame } from "@posthorn/binding-websocket";
import { json } from "@posthorn/format-json";
import { describeBindingConformance, pathsOf } from "@posthorn/testkit";
import { expect, it } from "vitest";
import { FORMATS } from "./formats.js";

// The mapping layer: one structured event per message, in each subprotocol's format.
const coverage = describeBindingConformance({
  name: "websocket (mapping)",
  paths: FORMATS.map((format) => ({ mode: "structured" as const, format })),
  typed: true,
  caseSensitive: true,
  roundTrip(event, path) {
    const format = path.format ?? json;
    const frame = toWebSocketFrame(event, format);
    // Text formats travel as text frames: decode from the string a browser would hand over.
    const received = frame.text ? new TextDecoder().decode(frame.data) : frame.data;
    return fromWebSocketFrame(received, format);
  },
});

it("covers every subprotocol's format, skipping no vector", () => {
  expect(pathsOf(coverage)).toEqual(["structured/json", "structured/avro", "structured/protobuf"]);
  expect(coverage.skipped).toEqual([]);
});
