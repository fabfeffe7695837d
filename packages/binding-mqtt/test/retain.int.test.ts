import { CloudEvent, isPosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { brokerUrl, requireBroker } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { closedAfterEach, uniqueTopic, v5Clients } from "./live-harness.js";

// MQTT 5 3.3.1.3 (3.1.1 likewise): a retained PUBLISH with an empty payload deletes the topic's
// retained message. An event without data has an empty payload in binary mode, so retaining one
// stored nothing and deleted the event retained before it, while publish() resolved.

const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;

const opened = closedAfterEach();

const client = v5Clients(url, opened);

function event(id: string, data?: unknown): CloudEvent {
  return new CloudEvent({
    specversion: "1.0",
    id,
    source: "/tests",
    type: "com.example.state",
    ...(data === undefined ? {} : { data }),
  });
}

/** The retained message a subscriber made now gets on `topic`, as its event id, or undefined. */
async function retainedId(topic: string): Promise<string | undefined> {
  const subscriber = await mqttSubscriber(await client(), { topic, formats: [json] });
  opened.push(subscriber);
  const it = subscriber[Symbol.asyncIterator]();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([
    it.next(),
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), 500);
    }),
  ]);
  clearTimeout(timer);
  if (r === undefined || r.done) return undefined;
  expect(r.value.message.metadata?.retain).toBe(true);
  await r.value.accept();
  return r.value.event?.id;
}

async function refusal(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => "resolved",
    (err: unknown) => (isPosthornError(err) ? err.code : err),
  );
}

describe.skipIf(!ok)("retained events over Mosquitto (skipped: no broker outside CI)", () => {
  it("a binary-mode event without data is refused with NotSupported when retained, and the retained event stays", async () => {
    const topic = uniqueTopic("retain");
    const pub = await client();
    await mqttPublisher(pub, { topic, retain: true }).publish(event("first", { n: 1 }));
    expect(await refusal(mqttPublisher(pub, { topic, retain: true }).publish(event("empty")))).toBe(
      "NotSupported",
    );
    expect(
      await refusal(mqttPublisher(pub, { topic }).publish(event("empty"), { retain: true })),
    ).toBe("NotSupported");
    // Empty data is an empty payload too.
    expect(
      await refusal(
        mqttPublisher(pub, { topic, retain: true }).publish(event("bytes", new Uint8Array(0))),
      ),
    ).toBe("NotSupported");
    // An array is refused whole.
    expect(
      await refusal(
        mqttPublisher(pub, { topic, retain: true }).publish([
          event("second", { n: 2 }),
          event("empty"),
        ]),
      ),
    ).toBe("NotSupported");
    expect(await retainedId(topic)).toBe("first");
  });

  it("retained in structured mode, or with data, an event is kept for later subscribers", async () => {
    const topic = uniqueTopic("retain");
    const pub = await client();
    const structured = mqttPublisher(pub, {
      topic,
      retain: true,
      mode: "structured",
      format: json,
    });
    await structured.publish(event("no-data"));
    expect(await retainedId(topic)).toBe("no-data");
    await mqttPublisher(pub, { topic, retain: true }).publish(event("with-data", { n: 1 }));
    expect(await retainedId(topic)).toBe("with-data");
    // Not retained, an event without data goes out as before.
    await mqttPublisher(pub, { topic }).publish(event("live"));
    await pub.publishAsync(topic, Buffer.alloc(0), { qos: 1, retain: true });
  });
});
