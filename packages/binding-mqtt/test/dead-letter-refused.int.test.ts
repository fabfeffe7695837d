import { json } from "@posthorn/format-json";
import { brokerUrl, nextDelivery, requireBroker, settledWithin } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { clientsOf, closedAfterEach, job, persistentSession, uniqueTopic } from "./live-harness.js";

// reject() acknowledges the message only once the broker has its dead-letter copy, against the
// Mosquitto of MQTT_URL. Mosquitto 2.0.11 refuses a PUBLISH to a $SYS topic at MQTT 5 with 0x87
// Not authorized: reject() acknowledged the message as it sent the copy, so the refused copy
// rejected reject() with PublishRejected and the message was gone, from the broker and the
// dead-letter topic alike (a later resumption of the session got nothing).
const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;
const opened = closedAfterEach();
const client = clientsOf(url, opened);

/** A topic name Mosquitto refuses a PUBLISH to (0x87 at MQTT 5). */
const REFUSED = "$SYS/posthorn-dead-letter";

describe.skipIf(!ok)(
  "reject() whose dead-letter copy the broker refuses (skipped: no broker)",
  () => {
    it("persistent session: SettlementFailed (retryable), the message is not acknowledged and comes again", {
      timeout: 20_000,
    }, async () => {
      const topic = uniqueTopic("dl-refused");
      const subscriber = await mqttSubscriber(
        await client({ ...persistentSession(5, "dl-refused"), reconnectPeriod: 100 }),
        { topic, formats: [json], deadLetterTopic: REFUSED },
      );
      opened.push(subscriber);
      const it = subscriber[Symbol.asyncIterator]();
      await mqttPublisher(await client({ protocolVersion: 5 }), { topic }).publish(job(1));
      const first = await nextDelivery(it);
      expect(first.event?.id).toBe("job-1");
      const outcome = await settledWithin(first.reject("cannot process"), 5000);
      expect(outcome).toEqual({
        rejected: expect.objectContaining({ code: "SettlementFailed", retryable: true }),
      });
      const cause = (outcome as { rejected: { cause?: unknown } }).rejected.cause;
      expect(cause).toMatchObject({ code: "PublishRejected", protocolCode: 0x87 });
      // Not acknowledged: the broker resends it on the reconnected session.
      const again = await nextDelivery(it, 10_000);
      expect(again.event?.id).toBe("job-1");
      expect(again.message.metadata?.dup).toBe(true);
      expect(again.deliveryCount).toBe(2);
      await again.accept();
    });

    it("clean session: SettlementFailed, not retryable, and the subscriber goes on", async () => {
      const topic = uniqueTopic("dl-refused-clean");
      const subscriber = await mqttSubscriber(await client({ protocolVersion: 5 }), {
        topic,
        formats: [json],
        deadLetterTopic: REFUSED,
      });
      opened.push(subscriber);
      const it = subscriber[Symbol.asyncIterator]();
      const publisher = mqttPublisher(await client({ protocolVersion: 5 }), { topic });
      await publisher.publish([job(1), job(2)]);
      const first = await nextDelivery(it);
      await expect(first.reject("cannot process")).rejects.toMatchObject({
        code: "SettlementFailed",
        retryable: false,
        cause: expect.objectContaining({ code: "PublishRejected", protocolCode: 0x87 }),
      });
      const second = await nextDelivery(it);
      expect(second.event?.id).toBe("job-2");
      await second.accept();
    });

    it("a reject() with the window full and a message parked past it settles: the copy's PUBACK is read", {
      timeout: 20_000,
    }, async () => {
      const topic = uniqueTopic("dl-window");
      const deadLetterTopic = `${topic}/dead`;
      const dlq = await mqttSubscriber(await client({ protocolVersion: 5 }), {
        topic: deadLetterTopic,
        formats: [json],
      });
      opened.push(dlq);
      // Mosquitto's window is 20: it sends the first 20 at once, and the third is parked.
      const subscriber = await mqttSubscriber(await client({ protocolVersion: 5 }), {
        topic,
        formats: [json],
        deadLetterTopic,
        maxInFlight: 2,
      });
      opened.push(subscriber);
      const it = subscriber[Symbol.asyncIterator]();
      await mqttPublisher(await client({ protocolVersion: 5 }), { topic }).publish(
        Array.from({ length: 6 }, (_, i) => job(i)),
      );
      const first = await nextDelivery(it);
      const second = await nextDelivery(it);
      // Give mqtt.js the time to read the third PUBLISH and park it.
      await new Promise((r) => setTimeout(r, 200));
      expect(await settledWithin(first.reject("bad"), 5000)).toEqual({ resolved: undefined });
      await second.accept();
      const ids = [first.event?.id, second.event?.id];
      for (let i = 2; i < 6; i++) {
        const d = await nextDelivery(it);
        ids.push(d.event?.id);
        await d.accept();
      }
      expect(ids).toEqual(["job-0", "job-1", "job-2", "job-3", "job-4", "job-5"]);
      const dead = await nextDelivery(dlq[Symbol.asyncIterator]());
      expect(dead.event?.id).toBe("job-0");
      await dead.accept();
    });
  },
);
