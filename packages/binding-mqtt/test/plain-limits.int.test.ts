import { isPosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { brokerUrl, nextDelivery, requireBroker } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { mqttSubscriber } from "../src/index.js";
import { clientsOf, closedAfterEach, uniqueTopic } from "./live-harness.js";

// The subscriber's decoding limits protect the process, so they hold for every message, not
// only for CloudEvents: a plain message (no Content Type of the cloudevents kind, no
// `specversion` user property, not a JSON event) over `maxPayloadBytes` or `maxUserProperties`
// arrives as its Message with `PayloadTooLarge` beside it, and is settled as any delivery.
// Published with a raw mqtt.js client over the Mosquitto of MQTT_URL.
const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;
const opened = closedAfterEach();
const client = clientsOf(url, opened);

const manyProperties = (n: number): Record<string, string> =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`X-Prop-${i}`, `v${i}`]));

describe.skipIf(!ok)("limits on plain messages over Mosquitto (skipped: no broker)", () => {
  for (const protocolVersion of [5, 4] as const) {
    it(`MQTT ${protocolVersion === 5 ? "5" : "3.1.1"}: a plain payload over maxPayloadBytes arrives with PayloadTooLarge beside its Message; one within it arrives without`, async () => {
      const topic = uniqueTopic(`plain-too-large-v${protocolVersion}`);
      const subscriber = await mqttSubscriber(await client({ protocolVersion }), {
        topic,
        formats: [json],
        maxPayloadBytes: 1024,
      });
      opened.push(subscriber);
      const it = subscriber[Symbol.asyncIterator]();
      const pub = await client({ protocolVersion });
      await pub.publishAsync(topic, Buffer.alloc(64 * 1024, 0x61), { qos: 1 });
      await pub.publishAsync(topic, Buffer.alloc(1024, 0x62), { qos: 1 });

      const over = await nextDelivery(it);
      expect(over.event).toBeUndefined();
      expect(isPosthornError(over.error, "PayloadTooLarge")).toBe(true);
      expect(over.error?.message).toContain("65536 bytes exceeds the limit of 1024");
      expect(over.message.body.length).toBe(64 * 1024);
      await over.accept();

      const within = await nextDelivery(it);
      expect(within.error).toBeUndefined();
      expect(within.event).toBeUndefined();
      expect(within.message.body.length).toBe(1024);
      await within.accept();
    });
  }

  it("MQTT 5: a plain message over maxUserProperties arrives with PayloadTooLarge, and reject() copies it to the dead-letter topic", async () => {
    const topic = uniqueTopic("plain-too-many-properties");
    const c = await client({ protocolVersion: 5 });
    const subscriber = await mqttSubscriber(c, {
      topic,
      formats: [json],
      maxUserProperties: 10,
      deadLetterTopic: `${topic}/dead`,
    });
    opened.push(subscriber);
    const dead = await mqttSubscriber(c, { topic: `${topic}/dead`, formats: [json] });
    opened.push(dead);
    const it = subscriber[Symbol.asyncIterator]();
    const pub = await client({ protocolVersion: 5 });
    await pub.publishAsync(topic, Buffer.from("hello"), {
      qos: 1,
      properties: { contentType: "text/plain", userProperties: manyProperties(300) },
    });
    await pub.publishAsync(topic, Buffer.from("fits"), {
      qos: 1,
      properties: { contentType: "text/plain", userProperties: manyProperties(10) },
    });

    const over = await nextDelivery(it);
    expect(over.event).toBeUndefined();
    expect(isPosthornError(over.error, "PayloadTooLarge")).toBe(true);
    expect(over.error?.message).toContain("300 user properties exceed the limit of 10");
    expect(new TextDecoder().decode(over.message.body)).toBe("hello");
    await over.reject("too many user properties");

    const within = await nextDelivery(it);
    expect(within.error).toBeUndefined();
    expect(new TextDecoder().decode(within.message.body)).toBe("fits");
    await within.accept();

    // The copy keeps the 300 and adds the two dead-letter ones, which are not counted: it is
    // over the dead-letter subscriber's default limit of 256 too.
    const copy = await nextDelivery(dead[Symbol.asyncIterator]());
    expect(new TextDecoder().decode(copy.message.body)).toBe("hello");
    expect(copy.message.properties?.["X-Prop-299"]).toBe("v299");
    expect(isPosthornError(copy.error, "PayloadTooLarge")).toBe(true);
    expect(copy.error?.message).toContain("300 user properties exceed the limit of 256");
    await copy.accept();
  });

  it("MQTT 5: a structured event with user properties over maxUserProperties is PayloadTooLarge (they used to go uncounted)", async () => {
    const topic = uniqueTopic("structured-too-many-properties");
    const subscriber = await mqttSubscriber(await client({ protocolVersion: 5 }), {
      topic,
      formats: [json],
      maxUserProperties: 10,
    });
    opened.push(subscriber);
    const it = subscriber[Symbol.asyncIterator]();
    const pub = await client({ protocolVersion: 5 });
    const event = { specversion: "1.0", id: "s-1", source: "/tests", type: "t.structured" };
    await pub.publishAsync(topic, Buffer.from(JSON.stringify(event)), {
      qos: 1,
      properties: {
        contentType: "application/cloudevents+json",
        userProperties: manyProperties(300),
      },
    });
    const over = await nextDelivery(it);
    expect(over.event).toBeUndefined();
    expect(isPosthornError(over.error, "PayloadTooLarge")).toBe(true);
    expect(over.error?.message).toContain("300 user properties exceed the limit of 10");
    await over.accept();
  });
});
