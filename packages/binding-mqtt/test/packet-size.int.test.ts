import { json } from "@posthorn/format-json";
import {
  type LaunchedBroker,
  nextDelivery,
  settledWithin,
  startMosquitto,
} from "@posthorn/testkit";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { clientsOf, closedAfterEach, uniqueTopic } from "./live-harness.js";

// Against a Mosquitto this file starts with `max_packet_size 2000`, which it names as its Maximum
// Packet Size in the CONNACK (MQTT 5 3.2.2.3.6). mqtt.js does not check it: Mosquitto closed the
// connection on a larger PUBLISH, mqtt.js resent it after every reconnect, and the publish never
// settled while the client reconnected in a loop.
const MAX = 2000;
let broker: LaunchedBroker;
beforeAll(async () => {
  broker = await startMosquitto({ config: () => [`max_packet_size ${MAX}`] });
});
afterAll(async () => {
  await broker?.stop();
});
const opened = closedAfterEach();
const client = clientsOf(() => broker.url, opened);

/** Counts the connections `c` lost from now on. */
function closesOf(c: MqttClient): () => number {
  let closes = 0;
  c.on("close", () => closes++);
  return () => closes;
}

const event = (n: number, bytes: number) => ({
  specversion: "1.0",
  id: `big-${n}`,
  source: "/tests/packet-size",
  type: "t.size",
  tenant: "grüße",
  data: "x".repeat(bytes),
});

describe("the server's Maximum Packet Size (MQTT 5)", () => {
  for (const mode of ["binary", "structured"] as const) {
    for (const qos of [0, 1] as const) {
      it(`${mode}, QoS ${qos}: a PUBLISH over it is PayloadTooLarge with nothing sent, one up to it arrives`, {
        timeout: 30_000,
      }, async () => {
        const topic = uniqueTopic(`size-${mode}-${qos}`);
        const sub = await client({ protocolVersion: 5 });
        const received: string[] = [];
        sub.on("message", (t, payload, packet) => {
          if (t !== topic) return;
          const id = packet.properties?.userProperties?.id ?? JSON.parse(payload.toString()).id;
          received.push(String(id));
        });
        await sub.subscribeAsync(topic, { qos: 1 });
        const c = await client({ protocolVersion: 5 });
        const closes = closesOf(c);
        const publisher = mqttPublisher(c, { topic, qos, mode, format: json });
        // Data sizes across the limit: the PUBLISH is 2,000 bytes at about 1,780-1,900 bytes of data.
        const sent: string[] = [];
        let refused = 0;
        for (let bytes = 1700; bytes < 1960; bytes += 3) {
          const outcome = await settledWithin(publisher.publish(event(bytes, bytes)), 2000);
          if ("resolved" in (outcome as object)) sent.push(`big-${bytes}`);
          else {
            expect(outcome).toEqual({
              rejected: expect.objectContaining({ name: "PosthornError", code: "PayloadTooLarge" }),
            });
            refused++;
          }
        }
        expect(sent.length).toBeGreaterThan(10);
        expect(refused).toBeGreaterThan(10);
        expect(closes()).toBe(0);
        const deadline = Date.now() + 5000;
        while (received.length < sent.length && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 10));
        }
        expect(received).toEqual(sent);
        await publisher.close();
      });
    }
  }

  it("a dead-letter copy over it: reject() is SettlementFailed with PayloadTooLarge as cause, the connection stays", {
    timeout: 20_000,
  }, async () => {
    const topic = uniqueTopic("size-dl");
    const c = await client({ protocolVersion: 5 });
    const closes = closesOf(c);
    const subscriber = await mqttSubscriber(c, {
      topic,
      formats: [json],
      deadLetterTopic: `${topic}/dead`,
    });
    opened.push(subscriber);
    const it = subscriber[Symbol.asyncIterator]();
    const publisher = mqttPublisher(await client({ protocolVersion: 5 }), { topic });
    // Fits; its copy, with the original topic and a reason added, does not.
    await publisher.publish([event(1, 1800), event(2, 10)]);
    const first = await nextDelivery(it);
    expect(await settledWithin(first.reject("r".repeat(200)), 3000)).toEqual({
      rejected: expect.objectContaining({
        code: "SettlementFailed",
        cause: expect.objectContaining({ code: "PayloadTooLarge" }),
      }),
    });
    const second = await nextDelivery(it);
    expect(second.event?.id).toBe("big-2");
    await second.accept();
    expect(closes()).toBe(0);
  });
});
