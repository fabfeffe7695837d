import { json } from "@posthorn/format-json";
import { describeBindingConformance, pathsOf } from "@posthorn/testkit";
import { expect, it } from "vitest";
import { type EmbeddedMqttBroker, startEmbeddedMqttBroker } from "../src/embedded.js";
import { FORMATS } from "./formats.js";
import { liveHarness } from "./live-harness.js";

const formats = FORMATS;
let broker: EmbeddedMqttBroker | undefined;

// aedes speaks MQTT 3.1.1, so the 3.1.1 suite (structured JSON) runs against it in process.
const coverage = describeBindingConformance(
  liveHarness({
    name: "mqtt 3.1.1 structured (embedded aedes)",
    url: async () => {
      broker = await startEmbeddedMqttBroker();
      return broker.url;
    },
    protocolVersion: 4,
    paths: [{ mode: "structured", format: json }],
    formats,
    typed: true,
    stop: async () => {
      await broker?.stop();
    },
  }),
);

it("covers structured JSON over MQTT 3.1.1, skipping no vector", () => {
  expect(pathsOf(coverage)).toEqual(["structured/json"]);
  expect(coverage.skipped).toEqual([]);
});
