import { json } from "@posthorn/format-json";
import { brokerUrl, refusedOption, requireBroker, shutdownEvent } from "@posthorn/testkit";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { connect, uniqueTopic } from "./live-harness.js";

// Numeric options are checked where the publisher or subscriber is made, against a real client
// of the Mosquitto of MQTT_URL (default 127.0.0.1:1883).
const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;

const refused = refusedOption;

const NaN_ = Number.NaN;

describe.skipIf(!ok)("MQTT numeric options (skipped: no broker outside CI)", () => {
  let client: MqttClient;
  beforeAll(async () => {
    client = await connect(url, { protocolVersion: 5 });
  });
  afterAll(async () => {
    await client?.endAsync();
  });

  it("mqttPublisher refuses NaN, negative and fractional values, naming the option", () => {
    const topic = uniqueTopic("options");
    const cases: [Record<string, number>, string, string][] = [
      [{ timeoutMs: NaN_ }, "timeoutMs", "NaN"],
      [{ timeoutMs: -1 }, "timeoutMs", "-1"],
      [{ closeTimeoutMs: NaN_ }, "closeTimeoutMs", "NaN"],
      [{ maxQueued: 2.5 }, "maxQueued", "2.5"],
      [{ maxQueued: -1 }, "maxQueued", "-1"],
    ];
    for (const [options, option, shown] of cases) {
      expect(() => mqttPublisher(client, { topic, ...options })).toThrow(refused(option, shown));
    }
    // 0 and Infinity mean what the docs say, and are taken.
    for (const options of [
      { timeoutMs: 0, closeTimeoutMs: 0, maxQueued: 0 },
      { timeoutMs: Infinity, closeTimeoutMs: Infinity, maxQueued: Infinity },
    ]) {
      expect(() => mqttPublisher(client, { topic, ...options })).not.toThrow();
    }
  });

  it("a per-call timeoutMs of NaN or below 0 is refused before anything is sent", async () => {
    const publisher = mqttPublisher(client, { topic: uniqueTopic("call"), qos: 1 });
    // NaN and negatives made a timer that fired at once: Timeout, with the message sent anyway.
    await expect(publisher.publish(shutdownEvent("mqtt", 0), { timeoutMs: NaN_ })).rejects.toEqual(
      refused("timeoutMs", "NaN"),
    );
    await expect(publisher.publish(shutdownEvent("mqtt", 1), { timeoutMs: -5 })).rejects.toEqual(
      refused("timeoutMs", "-5"),
    );
    await publisher.close();
  });

  it("a qos other than 0, 1 or 2 is refused by the factory and per call, before anything is sent", async () => {
    const topic = uniqueTopic("qos");
    // mqtt.js failed 3, -1 and 1.5 with a TypeError from its packet writer (reported as a
    // retryable ConnectionFailed) and published NaN as if it were 0.
    const bad: [number, string][] = [
      [3, "3"],
      [-1, "-1"],
      [1.5, "1.5"],
      [NaN_, "NaN"],
    ];
    for (const [qos, shown] of bad) {
      expect(() => mqttPublisher(client, { topic, qos: qos as 1 })).toThrow(refused("qos", shown));
    }
    const watcher = await connect(url, { protocolVersion: 5 });
    const seen: string[] = [];
    watcher.on("message", (_topic, payload) => seen.push(payload.toString()));
    await watcher.subscribeAsync(topic, { qos: 1 });
    const publisher = mqttPublisher(client, { topic, mode: "structured", format: json });
    for (const [qos, shown] of bad) {
      await expect(publisher.publish(shutdownEvent("mqtt", 0), { qos: qos as 1 })).rejects.toEqual(
        refused("qos", shown),
      );
    }
    // The levels themselves are taken, per call and by the factory.
    for (const qos of [0, 1, 2] as const) {
      await publisher.publish(shutdownEvent("mqtt", 1 + qos), { qos });
      await mqttPublisher(client, { topic, qos, mode: "structured", format: json }).close();
    }
    await publisher.close();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(seen.map((text) => JSON.parse(text).id)).toEqual(
      [1, 2, 3].map((n) => shutdownEvent("mqtt", n).id),
    );
    await watcher.endAsync();
  });

  it("a timeoutMs of 0 fails the publish with Timeout and publishes nothing", async () => {
    const topic = uniqueTopic("zero");
    const watcher = await connect(url, { protocolVersion: 5 });
    const seen: string[] = [];
    watcher.on("message", (_topic, payload) => seen.push(payload.toString()));
    await watcher.subscribeAsync(topic, { qos: 1 });
    // The message went out, and the caller was told Timeout.
    const given = mqttPublisher(client, { topic, timeoutMs: 0, mode: "structured", format: json });
    await expect(given.publish(shutdownEvent("mqtt", 0))).rejects.toMatchObject({
      code: "Timeout",
    });
    const perCall = mqttPublisher(client, { topic, mode: "structured", format: json });
    await expect(perCall.publish(shutdownEvent("mqtt", 1), { timeoutMs: 0 })).rejects.toMatchObject(
      { code: "Timeout" },
    );
    await perCall.publish(shutdownEvent("mqtt", 2), { timeoutMs: 5000 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(seen.map((text) => JSON.parse(text).id)).toEqual([shutdownEvent("mqtt", 2).id]);
    await watcher.endAsync();
  });

  it("mqttSubscriber refuses them before it subscribes", async () => {
    const topic = uniqueTopic("sub-options");
    const cases: [Record<string, unknown>, string, string][] = [
      [{ drainTimeoutMs: -1 }, "drainTimeoutMs", "-1"],
      [{ drainTimeoutMs: NaN_ }, "drainTimeoutMs", "NaN"],
      [{ maxPending: 0 }, "maxPending", "0"],
      [{ maxPending: 1.5 }, "maxPending", "1.5"],
      [{ maxInFlight: 0 }, "maxInFlight", "0"],
      [{ maxInFlight: NaN_ }, "maxInFlight", "NaN"],
      [{ maxPayloadBytes: NaN_ }, "maxPayloadBytes", "NaN"],
      [{ maxPayloadBytes: -1 }, "maxPayloadBytes", "-1"],
      [{ maxUserProperties: NaN_ }, "maxUserProperties", "NaN"],
      [{ json: { maxDepth: NaN_ } }, "json.maxDepth", "NaN"],
      // mqtt.js subscribed at such a QoS as given.
      [{ qos: 3 }, "qos", "3"],
      [{ qos: 1.5 }, "qos", "1.5"],
      [{ deadLetterTopic: `${topic}/dlq`, deadLetterQos: -1 }, "deadLetterQos", "-1"],
    ];
    for (const [options, option, shown] of cases) {
      await expect(mqttSubscriber(client, { topic, formats: [json], ...options })).rejects.toEqual(
        refused(option, shown),
      );
    }
  });

  it("mqttSubscriber refuses a client without the mqtt.js internals it acknowledges through, before subscribing", async () => {
    const other = await connect(url, { protocolVersion: 5 });
    try {
      const internals = other as unknown as { _sendPacket: unknown };
      const saved = internals._sendPacket;
      internals._sendPacket = undefined;
      await expect(
        mqttSubscriber(other, { topic: uniqueTopic("internals"), formats: [json] }),
      ).rejects.toMatchObject({
        code: "NotSupported",
        message: expect.stringContaining("use an mqtt.js 5 client"),
      });
      internals._sendPacket = saved;
    } finally {
      await other.endAsync();
    }
  });

  it("mqttSubscriber refuses a group that is not a share name, naming the option", async () => {
    const topic = uniqueTopic("group");
    // "eu/billing" subscribed to $share/eu/billing/<topic>: group "eu", another topic, and nothing
    // arrived; "" subscribed without sharing; "a+b" and "#" were an invalid-topic PublishRejected.
    for (const group of ["eu/billing", "", "a+b", "#"]) {
      await expect(mqttSubscriber(client, { topic, group, formats: [json] })).rejects.toMatchObject(
        {
          name: "PosthornError",
          code: "NotSupported",
          attribute: "group",
          message: expect.stringContaining(JSON.stringify(group)),
        },
      );
    }
    const subscriber = await mqttSubscriber(client, {
      topic,
      group: "billing-eu",
      formats: [json],
    });
    expect(subscriber.filter).toBe(`$share/billing-eu/${topic}`);
    await subscriber.close();
  });
});
