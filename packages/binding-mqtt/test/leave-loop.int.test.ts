import { CloudEvent, type Delivery, isPosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { brokerUrl, requireBroker } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { clientsOf, closedAfterEach, persistentSession, uniqueTopic } from "./live-harness.js";

// Leaving a for-await loop closes the subscriber (core's Subscriber contract). Without that, the
// next QoS 1 message for the abandoned subscriber is held for an accept() nobody calls, and
// mqtt.js, which handles incoming packets one at a time, stalls the whole client behind it.
const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;

const opened = closedAfterEach();
const client = clientsOf(url, opened);

function event(id: string): CloudEvent {
  return new CloudEvent({ specversion: "1.0", id, source: "/tests", type: "com.example.t" });
}

/** Rejects when `promise` does not settle within `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

describe.skipIf(!ok)("leaving the loop over Mosquitto (skipped: no broker outside CI)", () => {
  for (const version of [5, 4] as const) {
    it(`MQTT ${version === 5 ? "5" : "3.1.1"}: after break, the next message is not held and a second subscriber on the same client receives`, async () => {
      const topic = uniqueTopic("leave-loop");
      const other = uniqueTopic("leave-loop-other");
      const sub = await client({ protocolVersion: version });
      const pub = await client({ protocolVersion: version });
      const mode = version === 5 ? "binary" : "structured";
      const first = await mqttSubscriber(sub, { topic, qos: 1, formats: [json] });
      await mqttPublisher(pub, { topic, qos: 1, mode, format: json }).publish(event("a-1"));
      for await (const d of first) {
        expect(d.event?.id).toBe("a-1");
        await d.accept();
        break;
      }
      // Sent to the topic the first subscriber left: nothing may hold the client for it.
      await mqttPublisher(pub, { topic, qos: 1, mode, format: json }).publish(event("a-2"));
      await new Promise((r) => setTimeout(r, 200));

      const second = await within(
        mqttSubscriber(sub, { topic: other, qos: 1, formats: [json] }),
        5000,
        "SUBACK for a second subscriber on the same client",
      );
      await mqttPublisher(pub, { topic: other, qos: 1, mode, format: json }).publish(event("b-1"));
      const it = second[Symbol.asyncIterator]();
      const r = await within(it.next(), 5000, "a delivery to the second subscriber");
      expect(r.done).toBe(false);
      expect(r.value?.event?.id).toBe("b-1");
      await r.value?.accept();
      await second.close();
    });
  }

  it("a delivery left in hand when the loop is left is released: settling it says the subscriber was closed", async () => {
    const topic = uniqueTopic("leave-loop-in-hand");
    const sub = await client({ protocolVersion: 5 });
    const pub = await client({ protocolVersion: 5 });
    const subscriber = await mqttSubscriber(sub, {
      topic,
      qos: 1,
      formats: [json],
      drainTimeoutMs: 100,
    });
    await mqttPublisher(pub, { topic, qos: 1 }).publish(event("in-hand"));
    let kept: Delivery | undefined;
    for await (const d of subscriber) {
      kept = d;
      break;
    }
    expect(kept?.event?.id).toBe("in-hand");
    const err = await kept?.accept().catch((e: unknown) => e);
    expect(isPosthornError(err, "SettlementFailed")).toBe(true);
    expect((err as Error).message).toMatch(/subscriber was closed/);
    expect((err as Error).message).not.toMatch(/connection was lost/);
    // The client is not stalled by the withheld acknowledgement.
    const later = await within(
      mqttSubscriber(sub, { topic: uniqueTopic("leave-loop-later"), qos: 1, formats: [json] }),
      5000,
      "SUBACK after the loop was left with a delivery in hand",
    );
    await later.close();
  });
});

describe.skipIf(!ok)("settling after close() over Mosquitto", () => {
  for (const persistent of [false, true]) {
    it(`says the subscriber was closed, not that the connection was lost (${persistent ? "persistent" : "clean"} session)`, async () => {
      const topic = uniqueTopic("settle-after-close");
      const sub = await client(
        persistent ? persistentSession(5, "closed") : { protocolVersion: 5 },
      );
      const pub = await client({ protocolVersion: 5 });
      const subscriber = await mqttSubscriber(sub, {
        topic,
        qos: 1,
        formats: [json],
        drainTimeoutMs: 100,
      });
      await mqttPublisher(pub, { topic, qos: 1 }).publish(event("closed-1"));
      const it = subscriber[Symbol.asyncIterator]();
      const r = await within(it.next(), 5000, "a delivery");
      const d = r.value as Delivery;
      await subscriber.close();
      const err = await d.accept().catch((e: unknown) => e);
      expect(isPosthornError(err, "SettlementFailed")).toBe(true);
      expect((err as Error).message).toMatch(/subscriber was closed/);
    });
  }
});
