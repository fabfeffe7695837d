import { CloudEvent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { brokerUrl, requireBroker } from "@posthorn/testkit";
import type { MqttClient } from "mqtt";
import { describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { closedAfterEach, uniqueTopic, v5Clients } from "./live-harness.js";

// MQTT 5 3.3.4 (Flow Control): a client sends at most the server's Receive Maximum of QoS 1 and 2
// PUBLISHes not yet acknowledged. mqtt.js does not count them; Mosquitto (Receive Maximum 20)
// refused the QoS 2 ones past it with 0x97 Quota exceeded: 40 of 100 concurrent publishes failed.

const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;

const opened = closedAfterEach();

const client = v5Clients(url, opened);

/** The most QoS 1/2 PUBLISHes the client had sent and not seen completed at any moment. */
function watchInFlight(c: MqttClient): () => number {
  const open = new Set<number>();
  let most = 0;
  c.on("packetsend", (packet) => {
    if (packet.cmd === "publish" && packet.qos > 0 && packet.messageId !== undefined) {
      open.add(packet.messageId);
      most = Math.max(most, open.size);
    }
  });
  c.on("packetreceive", (packet) => {
    if (packet.cmd === "puback" || packet.cmd === "pubcomp")
      open.delete(packet.messageId as number);
  });
  return () => most;
}

function event(i: number): CloudEvent {
  return new CloudEvent({ specversion: "1.0", id: `e-${i}`, source: "/t", type: "t", data: { i } });
}

describe.skipIf(!ok)("the server's Receive Maximum (skipped: no broker outside CI)", () => {
  for (const qos of [1, 2] as const) {
    it(`QoS ${qos}: 100 concurrent publishes all resolve and arrive, never more in flight than the server allows`, async () => {
      const topic = uniqueTopic(`receive-max-${qos}`);
      const received = new Set<string>();
      const subscriber = await mqttSubscriber(await client(), { topic, qos, formats: [json] });
      opened.push(subscriber);
      const all = (async () => {
        for await (const d of subscriber) {
          received.add(d.event?.id as string);
          await d.accept();
          if (received.size === 100) return;
        }
      })();
      const pub = await client();
      const limit = (pub as unknown as { _serverProperties?: { receiveMaximum?: number } })
        ._serverProperties?.receiveMaximum;
      expect(limit).toBe(20); // Mosquitto's default max_inflight_messages
      const most = watchInFlight(pub);
      const publisher = mqttPublisher(pub, { topic, qos });
      const results = await Promise.allSettled(
        Array.from({ length: 100 }, (_, i) => publisher.publish(event(i))),
      );
      expect(results.filter((r) => r.status === "rejected")).toEqual([]);
      await all;
      expect(received.size).toBe(100);
      expect(most()).toBeLessThanOrEqual(20);
      expect(most()).toBeGreaterThan(1);
    });
  }
});

describe.skipIf(!ok)(
  "dead-letter copies within the Receive Maximum (skipped: no broker outside CI)",
  () => {
    it("20 rejections at once and 20 publishes on the same client: every one succeeds, never more than 20 in flight", async () => {
      const topic = uniqueTopic("receive-max-dlq");
      const deadLetterTopic = `${topic}/dead`;
      const otherTopic = `${topic}/other`;
      const watcher = await client();
      await watcher.subscribeAsync([deadLetterTopic, otherTopic], { qos: 2 });
      let copies = 0;
      let others = 0;
      watcher.on("message", (t) => {
        if (t === deadLetterTopic) copies++;
        else if (t === otherTopic) others++;
      });

      const sub = await client();
      const most = watchInFlight(sub);
      const subscriber = await mqttSubscriber(sub, {
        topic,
        qos: 1,
        formats: [json],
        deadLetterTopic,
        deadLetterQos: 2,
      });
      opened.push(subscriber);
      const producer = mqttPublisher(await client(), { topic, qos: 1 });
      await Promise.all(Array.from({ length: 20 }, (_, i) => producer.publish(event(i))));

      // Mosquitto sends a client at most 20 unacknowledged: all of them in hand at once.
      // (Not a for await loop: leaving one closes the subscriber.)
      const deliveries = subscriber[Symbol.asyncIterator]();
      const inHand = [];
      while (inHand.length < 20) inHand.push((await deliveries.next()).value);
      const sideways = mqttPublisher(sub, { topic: otherTopic, qos: 2 });
      const results = await Promise.allSettled([
        ...inHand.map((d) => d.reject("refused in bulk")),
        ...Array.from({ length: 20 }, (_, i) => sideways.publish(event(100 + i))),
      ]);
      expect(results.filter((r) => r.status === "rejected")).toEqual([]);
      await expect.poll(() => [copies, others], { timeout: 5000 }).toEqual([20, 20]);
      expect(most()).toBeLessThanOrEqual(20);
    });
  },
);
