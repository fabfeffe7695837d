import { json } from "@posthorn/format-json";
import { describeBindingConformance } from "@posthorn/testkit";
import { type EmbeddedMqttBroker, startEmbeddedMqttBroker } from "../src/embedded.js";
import { FORMATS } from "./formats.js";
import { liveHarness } from "./live-harness.js";

const formats = FORMATS;
let broker: EmbeddedMqttBroker | undefined;

// aedes speaks MQTT 3.1.1, so the 3.1.1 suite (structured JSON) runs against it in process.
describeBindingConformance(
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
