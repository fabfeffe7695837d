import {
  CloudEvent,
  DEAD_LETTER_ORIGINAL_TOPIC,
  DEAD_LETTER_REASON,
  type Delivery,
  differences,
} from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { brokerUrl, nextDelivery, requireBroker } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { type MqttSubscriber, mqttPublisher, mqttSubscriber } from "../src/index.js";
import { clientsOf, closedAfterEach, uniqueTopic } from "./live-harness.js";

const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;

const opened = closedAfterEach();

const client = clientsOf(url, opened);

async function subscribe(
  protocolVersion: 4 | 5,
  topic: string,
  deadLetterTopic?: string,
): Promise<AsyncIterator<Delivery>> {
  const subscriber: MqttSubscriber = await mqttSubscriber(await client({ protocolVersion }), {
    topic,
    formats: [json],
    ...(deadLetterTopic === undefined ? {} : { deadLetterTopic }),
  });
  opened.push(subscriber);
  return subscriber[Symbol.asyncIterator]();
}

function job(id: string): CloudEvent {
  return new CloudEvent({
    specversion: "1.0",
    id,
    source: "/tests/dead-letter",
    type: "com.example.job",
    subject: "order 7",
    tenant: "acme",
    time: "2024-05-01T12:00:00.123456Z",
    data: { n: 7, text: "grüße" },
  });
}

/**
 * Publishes `event` to a fresh topic at `protocolVersion`, rejects it there with `reason`, and
 * returns the rejected delivery and the copy read from the dead-letter topic.
 */
async function rejectOnce(
  protocolVersion: 4 | 5,
  mode: "binary" | "structured",
  event: CloudEvent,
  reason: string | undefined,
): Promise<{ topic: string; deadLetterTopic: string; got: Delivery; dead: Delivery }> {
  const topic = uniqueTopic(`dl-${mode}`);
  const deadLetterTopic = `${topic}/dead`;
  const dlq = await subscribe(protocolVersion, deadLetterTopic);
  const it = await subscribe(protocolVersion, topic, deadLetterTopic);
  const pub = await client({ protocolVersion });
  await mqttPublisher(pub, { topic, mode, format: json }).publish(event);
  const got = await nextDelivery(it);
  expect(got.event?.id).toBe(event.id);
  await (reason === undefined ? got.reject() : got.reject(reason));
  const dead = await nextDelivery(dlq);
  await dead.accept();
  return { topic, deadLetterTopic, got, dead };
}

describe.skipIf(!ok)("reject() to a dead-letter topic over Mosquitto (skipped: no broker)", () => {
  for (const mode of ["binary", "structured"] as const) {
    describe(`MQTT 5 ${mode}`, () => {
      it("the copy carries the reason and the original topic, and decodes to the same event", async () => {
        const event = job(`dl-${mode}-1`);
        const { topic, deadLetterTopic, got, dead } = await rejectOnce(
          5,
          mode,
          event,
          "cannot process: stock unknown",
        );
        const props = dead.message.properties ?? {};
        expect(props[DEAD_LETTER_REASON]).toBe("cannot process: stock unknown");
        expect(props[DEAD_LETTER_ORIGINAL_TOPIC]).toBe(topic);
        expect(dead.message.metadata?.topic).toBe(deadLetterTopic);
        expect(dead.error).toBeUndefined();
        expect(dead.event).toBeDefined();
        expect(differences(dead.event as CloudEvent, event)).toEqual([]);
        // The message itself is unchanged: payload, Content Type and every user property.
        expect(dead.message.body).toEqual(got.message.body);
        expect(dead.message.contentType).toBe(got.message.contentType);
        for (const [name, value] of Object.entries(got.message.properties ?? {})) {
          expect(props[name]).toEqual(value);
        }
        expect(Object.keys(props).length).toBe(
          Object.keys(got.message.properties ?? {}).length + 2,
        );
      });

      it("without a reason, the copy carries the original topic and no reason", async () => {
        const event = job(`dl-${mode}-2`);
        const { topic, dead } = await rejectOnce(5, mode, event, undefined);
        const props = dead.message.properties ?? {};
        expect(props[DEAD_LETTER_ORIGINAL_TOPIC]).toBe(topic);
        expect(Object.keys(props)).not.toContain(DEAD_LETTER_REASON);
        expect(differences(dead.event as CloudEvent, event)).toEqual([]);
      });
    });
  }

  it("a reason with control characters reaches the broker with each replaced by U+FFFD", async () => {
    const event = job("dl-control");
    // Mosquitto closes the connection on a control character in a UTF-8 string (MQTT 5 1.5.4).
    const { dead } = await rejectOnce(5, "binary", event, "line one\nline two\u0000");
    expect(dead.message.properties?.[DEAD_LETTER_REASON]).toBe("line one\uFFFDline two\uFFFD");
    expect(differences(dead.event as CloudEvent, event)).toEqual([]);
  });

  it("a reason longer than an MQTT string is cut to 65,535 UTF-8 bytes", async () => {
    const event = job("dl-long");
    const { dead } = await rejectOnce(5, "binary", event, "é".repeat(40_000));
    const reason = dead.message.properties?.[DEAD_LETTER_REASON];
    expect(reason).toBe("é".repeat(32_767));
    expect(differences(dead.event as CloudEvent, event)).toEqual([]);
  });

  it("a copy rejected again describes its last rejection: the new topic, no stale reason", async () => {
    const event = job("dl-twice");
    const topic = uniqueTopic("dl-twice");
    const firstDead = `${topic}/dead`;
    const secondDead = `${topic}/dead2`;
    const last = await subscribe(5, secondDead);
    const dlq = await subscribe(5, firstDead, secondDead);
    const it = await subscribe(5, topic, firstDead);
    await mqttPublisher(await client({ protocolVersion: 5 }), { topic }).publish(event);
    await (await nextDelivery(it)).reject("first");
    const copy = await nextDelivery(dlq);
    expect(copy.message.properties?.[DEAD_LETTER_REASON]).toBe("first");
    await copy.reject();
    const again = await nextDelivery(last);
    await again.accept();
    const props = again.message.properties ?? {};
    expect(props[DEAD_LETTER_ORIGINAL_TOPIC]).toBe(firstDead);
    expect(Object.keys(props)).not.toContain(DEAD_LETTER_REASON);
    expect(differences(again.event as CloudEvent, event)).toEqual([]);
  });

  it("MQTT 3.1.1 has no properties: the copy is the event alone, without reason or topic", async () => {
    const event = job("dl-311");
    const { got, dead } = await rejectOnce(4, "structured", event, "cannot process");
    expect(Object.keys(dead.message.properties ?? {})).toEqual([]);
    expect(dead.message.body).toEqual(got.message.body);
    expect(differences(dead.event as CloudEvent, event)).toEqual([]);
  });
});
