import { CloudEvent, type Delivery, differences, isPosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { brokerUrl, nextDelivery, requireBroker } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { mqttSubscriber, toMqttMessage } from "../src/index.js";
import { closedAfterEach, uniqueTopic, v5Clients } from "./live-harness.js";

const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;

const opened = closedAfterEach();

const client = v5Clients(url, opened);

const event = new CloudEvent({
  specversion: "1.0",
  id: "foreign-1",
  source: "/tests/foreign",
  type: "com.example.order",
  tenant: "acme",
  data: { n: 1 },
});

// What another producer (or a broker plugin) adds of its own: names that cannot be attributes.
const foreign = { "X-Request-Id": "req-42", "Content-Encoding": "identity", trace_id: "t-1" };

/**
 * Publishes `message` with a raw mqtt.js client (not Posthorn's publisher), its user properties
 * joined by `extra`, and returns what a Posthorn subscriber makes of it.
 */
async function receiveRaw(
  mode: "binary" | "structured",
  extra: Record<string, string | string[]>,
): Promise<Delivery> {
  const topic = uniqueTopic(`foreign-${mode}`);
  const subscriber = await mqttSubscriber(await client(), { topic, formats: [json] });
  opened.push(subscriber);
  const it = subscriber[Symbol.asyncIterator]();
  const message = toMqttMessage(event, mode === "binary" ? { mode } : { mode, format: json });
  const publisher = await client();
  await publisher.publishAsync(topic, Buffer.from(message.payload), {
    qos: 1,
    properties: {
      ...(message.contentType === undefined ? {} : { contentType: message.contentType }),
      // toMqttMessage writes one string per name in binary mode, none in structured mode.
      userProperties: { ...(message.userProperties as Record<string, string>), ...extra },
    },
  });
  const delivery = await nextDelivery(it);
  await delivery.accept();
  return delivery;
}

describe.skipIf(!ok)("foreign user properties over Mosquitto, MQTT 5 (skipped: no broker)", () => {
  for (const mode of ["binary", "structured"] as const) {
    it(`${mode} mode: the event decodes, and the properties keep them`, async () => {
      const delivery = await receiveRaw(mode, { ...foreign, "X-Hop": ["edge", "core"] });
      expect(delivery.error).toBeUndefined();
      expect(differences(delivery.event as CloudEvent, event)).toEqual([]);
      for (const name of [...Object.keys(foreign), "X-Hop"]) {
        expect(Object.hasOwn(delivery.event as object, name)).toBe(false);
      }
      const properties = delivery.message.properties ?? {};
      for (const [name, value] of Object.entries(foreign)) expect(properties[name]).toBe(value);
      expect(properties["X-Hop"]).toEqual(["edge", "core"]);
    });
  }

  it("binary mode: a context attribute in another case is InvalidEvent naming it", async () => {
    const delivery = await receiveRaw("binary", { Type: "com.example.other" });
    expect(delivery.event).toBeUndefined();
    expect(isPosthornError(delivery.error, "InvalidEvent")).toBe(true);
    expect(delivery.error?.attribute).toBe("Type");
    expect(delivery.message.properties?.Type).toBe("com.example.other");
  });
});
