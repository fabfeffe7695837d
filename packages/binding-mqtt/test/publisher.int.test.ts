import { json } from "@posthorn/format-json";
import {
  brokerUrl,
  requireBroker,
  settledWithin,
  shutdownEvent,
  unencodableEvent,
  watchTimerOverflows,
} from "@posthorn/testkit";
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

describe.skipIf(!ok)("mqttPublisher against Mosquitto (skipped: no broker outside CI)", () => {
  it("timeoutMs Infinity sets no limit: the publish waits for its PUBACKs", async () => {
    const overflows = watchTimerOverflows();
    try {
      const client = await open();
      const publisher = mqttPublisher(client, {
        topic: uniqueTopic("no-limit"),
        qos: 1,
        timeoutMs: Infinity,
      });
      // Enough PUBACKs to take longer than the 1 ms after which a timer set to Infinity fires.
      const events = Array.from({ length: 300 }, (_, i) => shutdownEvent("mqtt", i));
      await expect(publisher.publish(events)).resolves.toBeUndefined();
      expect(overflows.count()).toBe(0);
      await publisher.close();
    } finally {
      overflows.stop();
    }
  });

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
    expect(await settledWithin(Promise.all([first, second]), 2000)).toEqual({
      resolved: [total, total],
    });
    expect(await settledWithin(publisher.close(), 2000)).toEqual({ resolved: undefined });
  });

  it("close() waits for the PUBACKs of publishes whose calls already gave up (abort)", async () => {
    const client = await open();
    const publisher = mqttPublisher(client, { topic: uniqueTopic("close-after-abort"), qos: 1 });
    // mqtt.js keeps a QoS 1 message's callback in client.outgoing until its PUBACK arrives.
    const outgoing = () => Object.keys((client as unknown as { outgoing: object }).outgoing).length;
    const aborts = new AbortController();
    const total = 50;
    const publishes = Array.from({ length: total }, (_, i) =>
      publisher.publish(shutdownEvent("mqtt", i), { abortSignal: aborts.signal }),
    );
    aborts.abort();
    for (const p of publishes) await expect(p).rejects.toMatchObject({ code: "Aborted" });
    expect(outgoing()).toBeGreaterThan(0);
    await publisher.close();
    expect(outgoing()).toBe(0);
  });

  it("publish(array) sends none of the array when one event cannot be encoded", async () => {
    const topic = uniqueTopic("array-invalid");
    // The broker's view, through a plain mqtt.js subscription: the ids of what reached it.
    const sub = await open();
    const ids: string[] = [];
    sub.on("message", (t, payload, packet) => {
      // Binary mode carries the id as a user property (MQTT binding 3.1.3.1), structured in JSON.
      const id = packet.properties?.userProperties?.id ?? JSON.parse(payload.toString()).id;
      if (t === topic) ids.push(String(id));
    });
    await sub.subscribeAsync(topic, { qos: 1 });
    const client = await open();
    for (const mode of ["binary", "structured"] as const) {
      const publisher = mqttPublisher(client, { topic, qos: 1, mode, format: json });
      const invalid = unencodableEvent("mqtt");
      await expect(
        publisher.publish([shutdownEvent("mqtt", 1), invalid, shutdownEvent("mqtt", 3)]),
      ).rejects.toMatchObject({ name: "PosthornError", code: "InvalidEvent" });
      await publisher.close();
    }
    // Sent after, on the same connection and topic: what arrives first says what went before.
    await mqttPublisher(client, { topic, qos: 1, mode: "structured", format: json }).publish(
      shutdownEvent("mqtt", 4),
    );
    const deadline = Date.now() + 5000;
    while (!ids.includes("shutdown-4") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(ids).toEqual(["shutdown-4"]);
  });

  it("publish with an abortSignal aborted before the call rejects with Aborted and publishes nothing", async () => {
    const topic = uniqueTopic("aborted");
    const sub = await open();
    const ids: string[] = [];
    sub.on("message", (t, payload) => {
      if (t === topic) ids.push(String(JSON.parse(payload.toString()).id));
    });
    await sub.subscribeAsync(topic, { qos: 1 });
    const client = await open();
    const publisher = mqttPublisher(client, { topic, qos: 1, mode: "structured", format: json });
    const abortSignal = AbortSignal.abort();
    for (const events of [shutdownEvent("mqtt", 1), [shutdownEvent("mqtt", 2)]]) {
      await expect(publisher.publish(events, { abortSignal })).rejects.toMatchObject({
        name: "PosthornError",
        code: "Aborted",
      });
    }
    await publisher.publish(shutdownEvent("mqtt", 3));
    const deadline = Date.now() + 5000;
    while (!ids.includes("shutdown-3") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(ids).toEqual(["shutdown-3"]);
  });
});
