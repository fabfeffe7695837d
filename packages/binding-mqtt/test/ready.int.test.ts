import { CloudEvent, type Delivery, type Subscriber } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { brokerUrl, requireBroker } from "@posthorn/testkit";
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { connect, uniqueTopic } from "./live-harness.js";

// Core's Subscriber.ready: once it resolves, a message published is delivered. mqttSubscriber
// resolves only after the SUBACK, so its `ready` is already resolved.
const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;

const opened: MqttClient[] = [];
afterEach(async () => {
  for (const c of opened.splice(0)) await c.endAsync(true);
});

/** The first delivery, or `undefined` when none comes within `timeoutMs`. */
async function firstWithin(
  subscriber: Subscriber,
  timeoutMs: number,
): Promise<Delivery | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      subscriber[Symbol.asyncIterator]()
        .next()
        .then((r) => (r.done ? undefined : r.value)),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe.skipIf(!ok)("mqttSubscriber ready on Mosquitto (skipped: no broker outside CI)", () => {
  it("resolves, and a message published at once from another client arrives", async () => {
    const topic = uniqueTopic("ready");
    const sub = await connect(url, { protocolVersion: 5 });
    const pub = await connect(url, { protocolVersion: 5 });
    opened.push(sub, pub);
    const subscriber = await mqttSubscriber(sub, { topic, qos: 1, formats: [json] });
    await expect(subscriber.ready).resolves.toBeUndefined();
    const event = new CloudEvent({
      specversion: "1.0",
      id: "r-1",
      source: "/ready",
      type: "com.example.ready",
    });
    await mqttPublisher(pub, { topic, qos: 1, mode: "binary" }).publish(event);
    const delivery = await firstWithin(subscriber, 5000);
    expect(delivery?.event?.id).toBe("r-1");
    await delivery?.accept();
    await subscriber.close();
  });
});
