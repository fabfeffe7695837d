// Profiling helper for the codec hot paths (see docs/benchmarks.md, "Where time goes").
//
//   node bench/build.mjs    # bundles this file too, as bench/.build/profile.mjs (no keepNames)
//   node --cpu-prof --cpu-prof-dir=/tmp/prof bench/.build/profile.mjs kafka-decode-binary
//   node bench/.build/profile.mjs --summary /tmp/prof/<file>.cpuprofile
//
// (`node --import tsx bench/profile.ts ...` works too, but tsx compiles with keepNames, which
// makes every closure created per call much dearer than in the published packages.)
//
// The first runs one case in a loop (2,000,000 calls unless a count follows the name) and prints
// the time per call; the second prints the functions with the most self time in a profile.
// Without arguments it lists the cases.
import { readFileSync } from "node:fs";
import { fromKafkaRecord, toKafkaRecord } from "@posthorn/binding-kafka";
import { fromMqttMessage, toMqttMessage } from "@posthorn/binding-mqtt";
import { fromNatsMessage, toNatsMessage } from "@posthorn/binding-nats";
import { json } from "@posthorn/format-json";
import { vector } from "@posthorn/testkit";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

function summary(file: string, top = 30): void {
  const profile = JSON.parse(readFileSync(file, "utf8")) as {
    nodes: ProfileNode[];
    samples: number[];
  };
  const hits = new Map<number, number>();
  for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  const self = new Map<string, number>();
  for (const node of profile.nodes) {
    const f = node.callFrame;
    const key = `${f.functionName || "(anonymous)"}  ${f.url.split("/").slice(-3).join("/")}`;
    self.set(key, (self.get(key) ?? 0) + (hits.get(node.id) ?? 0));
  }
  const total = profile.samples.length;
  for (const [key, n] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((100 * n) / total).toFixed(1).padStart(5)}%  ${key}`);
  }
}

function cases(): Record<string, () => unknown> {
  const event = vector("typical").event;
  const asReceived = (record: ReturnType<typeof toKafkaRecord>) => {
    // As kafkajs delivers records: header values and the value as Buffers.
    const headers: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(record.headers)) headers[k] = Buffer.from(v);
    return { key: null, value: record.value && Buffer.from(record.value), headers };
  };
  const kafkaBinary = asReceived(toKafkaRecord(event));
  const kafkaStructured = asReceived(toKafkaRecord(event, { mode: "structured", format: json }));
  const mqttBinary = toMqttMessage(event, { mode: "binary" });
  const mqttStructured = toMqttMessage(event, { mode: "structured", format: json });
  const nats = toNatsMessage(event);
  const natsReceived = {
    data: nats.data,
    headers: Object.fromEntries([...nats.headers].map(([k, v]) => [k, v[0] as string])),
  };
  const jsonBytes = json.encode(event);
  const formats = [json];
  return {
    "json-encode": () => json.encode(event),
    "json-decode": () => json.decode(jsonBytes),
    "kafka-encode-binary": () => toKafkaRecord(event),
    "kafka-decode-binary": () => fromKafkaRecord(kafkaBinary, { formats }),
    "kafka-decode-structured": () => fromKafkaRecord(kafkaStructured, { formats }),
    "mqtt-encode-binary": () => toMqttMessage(event, { mode: "binary" }),
    "mqtt-decode-binary": () => fromMqttMessage(mqttBinary, { formats }),
    "mqtt-decode-structured": () => fromMqttMessage(mqttStructured, { formats }),
    "nats-encode-binary": () => toNatsMessage(event),
    "nats-decode-binary": () => fromNatsMessage(natsReceived, { formats }),
  };
}

const args = process.argv.slice(2);
if (args[0] === "--summary" && args[1]) {
  summary(args[1], Number(args[2] ?? 30));
} else {
  const all = cases();
  const fn = args[0] ? all[args[0]] : undefined;
  if (!fn) {
    console.log(`cases: ${Object.keys(all).join(", ")}`);
    process.exitCode = args[0] ? 1 : 0;
  } else {
    const count = Number(args[1] ?? 2_000_000);
    let sink: unknown;
    const started = performance.now();
    for (let i = 0; i < count; i++) sink = fn();
    const ns = ((performance.now() - started) * 1e6) / count;
    console.log(`${args[0]}: ${ns.toFixed(0)} ns per call (${count} calls)`, sink ? "" : "");
  }
}
