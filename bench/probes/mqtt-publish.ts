// MQTT publish throughput, Posthorn's publisher against raw mqtt.js with the same window, for
// quick comparisons outside the full suite:
//
//   node bench/build.mjs && node bench/.build/probes/mqtt-publish.mjs [count]
//
// Prints events per second for three rounds of: Posthorn's publisher (1000 publish() calls in
// flight at a time; it keeps the server's Receive Maximum on the wire), raw mqtt.js with 1000
// in flight, and raw mqtt.js keeping the server's Receive Maximum (that many senders, each
// awaiting its PUBACK).
import { mqttPublisher, toMqttMessage } from "@posthorn/binding-mqtt";
import { brokerUrl } from "@posthorn/testkit";
import { vector } from "@posthorn/testkit/vectors";
import mqtt from "mqtt";

const count = Number(process.argv[2] ?? 20000);
const client = await mqtt.connectAsync(brokerUrl("mqtt") ?? "mqtt://127.0.0.1:1883", {
  protocolVersion: 5,
});
const topic = `posthorn-probe/${process.pid}`;
const event = vector("typical").event;
const message = toMqttMessage(event, { mode: "binary", protocolVersion: 5 });
const payload = Buffer.from(message.payload);
const properties = {
  contentType: message.contentType as string,
  userProperties: message.userProperties as Record<string, string>,
};
const receiveMaximum =
  (client as unknown as { _serverProperties?: { receiveMaximum?: number } })._serverProperties
    ?.receiveMaximum ?? 65_535;
const publisher = mqttPublisher(client, { topic, qos: 1 });

async function inWindows(n: number, one: () => Promise<unknown>): Promise<void> {
  for (let sent = 0; sent < n; sent += 1000) {
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < Math.min(1000, n - sent); i++) batch.push(one());
    await Promise.all(batch);
  }
}
async function windowed(n: number): Promise<void> {
  let next = 0;
  const sender = async () => {
    while (next < n) {
      next++;
      await client.publishAsync(topic, payload, { qos: 1, properties });
    }
  };
  await Promise.all(Array.from({ length: Math.min(receiveMaximum, n) }, sender));
}
const sides: Record<string, (n: number) => Promise<void>> = {
  ours: (n) => inWindows(n, () => publisher.publish(event)),
  raw: (n) => inWindows(n, () => client.publishAsync(topic, payload, { qos: 1, properties })),
  rawWindowed: windowed,
};
for (const run of Object.values(sides)) await run(2000);
for (let round = 0; round < 3; round++) {
  for (const [name, run] of Object.entries(sides)) {
    const started = performance.now();
    await run(count);
    const seconds = (performance.now() - started) / 1000;
    console.log(`${name}: ${Math.round(count / seconds)}/s`);
  }
}
await publisher.close();
await client.endAsync();
