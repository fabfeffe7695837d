import { json } from "@posthorn/format-json";
import {
  brokerUrl,
  describeBindingConformance,
  type EventVector,
  type LaunchedBroker,
  requireBroker,
  startMosquitto,
  waitForPort,
} from "@posthorn/testkit";
import { describe } from "vitest";
import { FORMATS } from "./formats.js";
import { liveHarness } from "./live-harness.js";

const formats = FORMATS;
const ok = await requireBroker("mqtt");
const url = () => brokerUrl("mqtt") as string;

describe.skipIf(!ok)("over Mosquitto (skipped: no broker outside CI)", () => {
  describeBindingConformance(
    liveHarness({
      name: "mqtt 5 binary (Mosquitto)",
      url,
      protocolVersion: 5,
      paths: [{ mode: "binary" }],
      formats,
      typed: false,
    }),
  );
  describeBindingConformance(
    liveHarness({
      name: "mqtt 5 structured (Mosquitto)",
      url,
      protocolVersion: 5,
      paths: formats.map((format) => ({ mode: "structured", format })),
      formats,
      typed: true,
    }),
  );
  describeBindingConformance(
    liveHarness({
      name: "mqtt 3.1.1 structured (Mosquitto)",
      url,
      protocolVersion: 4,
      paths: [{ mode: "structured", format: json }],
      formats,
      typed: true,
    }),
  );
});

// MQTT over WebSockets: a Mosquitto started for this file with a websockets listener.
let launched: LaunchedBroker | undefined;
const wsUrl = async () => {
  launched ??= await startMosquitto({ websockets: true });
  // startMosquitto waits for the TCP listener; the websockets one may open a moment later.
  await waitForPort("127.0.0.1", launched.ports.websocket as number);
  return `ws://127.0.0.1:${launched.ports.websocket}`;
};
// Measured: Mosquitto 2.0.11's websockets listener (libwebsockets) needs about 1.4 s for one
// 60 KB message and does not pass 200 KB within 4 s, so the large vectors stay on TCP.
const skipLarge = (v: EventVector) =>
  v.tags.includes("large")
    ? "Mosquitto 2.0.11 websockets listener is too slow for 100 KB+"
    : undefined;
const stopWs = async () => {
  const b = launched;
  launched = undefined;
  await b?.stop();
};

describe("over WebSockets to a Mosquitto started by the test", () => {
  describeBindingConformance(
    liveHarness({
      name: "mqtt 5 binary + structured (ws)",
      url: wsUrl,
      protocolVersion: 5,
      paths: [{ mode: "binary" }, { mode: "structured", format: json }],
      formats,
      typed: false,
      skip: skipLarge,
    }),
  );
  describeBindingConformance(
    liveHarness({
      name: "mqtt 3.1.1 structured (ws)",
      url: wsUrl,
      protocolVersion: 4,
      paths: [{ mode: "structured", format: json }],
      formats,
      typed: true,
      stop: stopWs,
      skip: skipLarge,
    }),
  );
});
