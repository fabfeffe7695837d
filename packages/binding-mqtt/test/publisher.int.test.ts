import { brokerUrl, requireBroker, shutdownEvent } from "@posthorn/testkit";
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { mqttPublisher } from "../src/index.js";
import { connect, uniqueTopic } from "./live-harness.js";

// The publisher's contract against the Mosquitto of MQTT_URL (default 127.0.0.1:1883).
const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;

const clients: MqttClient[] = [];
const open = async (): Promise<MqttClient> => {
  const client = await connect(url, { protocolVersion: 5 });
  clients.push(client);
  return client;
};

afterEach(async () => {
  for (const client of clients.splice(0)) await client.endAsync();
});

/** How `promise` settled within `ms`: `{ resolved }` or `{ rejected }`, or `"pending"`. */
function within(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise.then(
      (value) => ({ resolved: value }),
      (error: unknown) => ({ rejected: error }),
    ),
    new Promise((resolve) => {
      timer = setTimeout(() => resolve("pending"), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

describe.skipIf(!ok)("mqttPublisher against Mosquitto (skipped: no broker outside CI)", () => {
  it("close() called twice with publishes in flight resolves both calls, once every PUBACK came", async () => {
    const client = await open();
    const publisher = mqttPublisher(client, { topic: uniqueTopic("close-twice"), qos: 1 });
    const total = 50;
    let settled = 0;
    const publishes = Array.from({ length: total }, (_, i) =>
      publisher.publish(shutdownEvent("mqtt", i)).then(() => {
        settled++;
      }),
    );
    // Each call reports how many publishes had settled when it resolved.
    const first = publisher.close().then(() => settled);
    const second = publisher.close().then(() => settled);
    expect(settled).toBe(0);
    await Promise.all(publishes);
    expect(await within(Promise.all([first, second]), 2000)).toEqual({
      resolved: [total, total],
    });
    expect(await within(publisher.close(), 2000)).toEqual({ resolved: undefined });
  });
});
