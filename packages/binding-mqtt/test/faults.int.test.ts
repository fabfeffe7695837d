import { json } from "@posthorn/format-json";
import {
  DeliveryLedger,
  expectEverySentEventReceived,
  type FaultBroker,
  faultEvent,
  nextDelivery,
  publishEachWithRetry,
  receiveIntoLedger,
  startPersistentMosquitto,
} from "@posthorn/testkit";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { connect, uniqueTopic } from "./live-harness.js";

// Faults against a Mosquitto this file starts, with persistence on: a restart keeps persistent
// sessions, their subscriptions, and their queued and unacknowledged QoS 1 messages.
const EVENTS = Number(process.env.POSTHORN_FAULT_EVENTS ?? 10_000);

let broker: FaultBroker;
const clients: MqttClient[] = [];

beforeAll(async () => {
  broker = await startPersistentMosquitto();
});

afterAll(async () => {
  for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined);
  await broker?.stop();
});

/** A client whose MQTT 5 session outlives its connections (and a broker restart). */
async function persistentClient(label: string, extra: IClientOptions = {}): Promise<MqttClient> {
  const c = await connect(broker.url, {
    protocolVersion: 5,
    clean: false,
    clientId: `posthorn-faults-${label}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    properties: { sessionExpiryInterval: 300 },
    reconnectPeriod: 100,
    ...extra,
  });
  clients.push(c);
  return c;
}

describe("MQTT under broker faults (Mosquitto with persistence, QoS 1, persistent sessions)", () => {
  it(`a broker restart mid-stream of ${EVENTS} events loses nothing the publisher reported as sent`, {
    timeout: 120_000,
  }, async () => {
    const ledger = new DeliveryLedger("mqtt");
    const topic = uniqueTopic("faults-restart");
    const sub = await persistentClient("sub");
    const subscriber = await mqttSubscriber(sub, { topic, qos: 1, formats: [json] });
    const consuming = receiveIntoLedger(subscriber, ledger, {
      // The connection dropped with this delivery in hand: the session brings it back.
      onSettlementFailed: () => {},
    });

    const pub = await persistentClient("pub");
    const publisher = mqttPublisher(pub, { topic, qos: 1, timeoutMs: 5000 });
    const events = Array.from({ length: EVENTS }, (_, i) => faultEvent("mqtt", i));
    const publishing = publishEachWithRetry(events, 64, (e) => publisher.publish(e), ledger);

    await ledger.waitForSent(Math.floor(EVENTS / 3), 60_000);
    const receivedBefore = ledger.deliveryCount;
    await broker.restart();
    await publishing;
    const complete = await ledger.waitForAll(45_000);
    console.log(`${ledger.summary()} [restart after ${receivedBefore} deliveries]`);

    await publisher.close();
    await subscriber.close();
    await consuming;
    expectEverySentEventReceived(ledger, { sent: EVENTS, complete });
  });

  it("a consumer that crashes between receiving and settling: the job comes back to the consumer that resumes the session", async () => {
    const topic = uniqueTopic("faults-crash");
    const clientId = `posthorn-faults-crash-${process.pid}-${Date.now().toString(36)}`;
    const options: IClientOptions = { clientId, reconnectPeriod: 0 };
    const first = await persistentClient("crash-a", options);
    const subscriber = await mqttSubscriber(first, { topic, qos: 1, formats: [json] });
    const pub = await persistentClient("crash-pub");
    await mqttPublisher(pub, { topic, qos: 1 }).publish(faultEvent("mqtt", 1));
    const got = await nextDelivery(subscriber[Symbol.asyncIterator](), 5000);
    expect(got.event?.id).toBe("mqtt-fault-1");
    // The crash: the socket goes away with the acknowledgement unsent, and nothing reconnects.
    const gone = new Promise<void>((r) => first.once("close", () => r()));
    (first as unknown as { stream: { destroy(): void } }).stream.destroy();
    await gone;
    await first.endAsync(true);
    await expect(got.accept()).rejects.toMatchObject({ code: "SettlementFailed" });

    // Another consumer process resumes the session (same client id): the broker resends the job
    // right after CONNACK, so the subscriber is made before the client has connected (with
    // connectAsync, mqtt.js's default handler would take and acknowledge the resent message).
    const second = mqtt.connect(broker.url, {
      protocolVersion: 5,
      clean: false,
      clientId,
      properties: { sessionExpiryInterval: 300 },
      reconnectPeriod: 100,
    });
    clients.push(second);
    const resumed = await mqttSubscriber(second, { topic, qos: 1, formats: [json] });
    const again = await nextDelivery(resumed[Symbol.asyncIterator](), 5000);
    expect(again.event?.id).toBe("mqtt-fault-1");
    expect(again.message.metadata?.dup).toBe(true);
    await again.accept();
    await resumed.close();
  });
});
