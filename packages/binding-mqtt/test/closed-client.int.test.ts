import { json } from "@posthorn/format-json";
import { brokerUrl, nextDelivery, requireBroker, settledWithin } from "@posthorn/testkit";
import mqtt, { type MqttClient } from "mqtt";
import { describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { clientsOf, closedAfterEach, job, uniqueTopic } from "./live-harness.js";

// A client closed for good: its connection lost with reconnectPeriod 0 (nothing reconnects it
// until the application calls reconnect()), or ended. mqtt.js queues what is published on it and
// never calls back, so each of these used to hang: a QoS 0 delivery's reject() (its dead-letter
// copy queued), a publisher or subscriber made after the close (the close event they would have
// learnt it from had passed). Against the Mosquitto of MQTT_URL.
const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;
const opened = closedAfterEach();
const client = clientsOf(url, opened);

/** Loses the client's connection the way a crash or a reset does, and waits for its close. */
async function loseConnection(c: MqttClient): Promise<void> {
  const gone = new Promise<void>((r) => c.once("close", () => r()));
  (c as unknown as { stream: { destroy(): void } }).stream.destroy();
  await gone;
}

const goneForGood = expect.objectContaining({ code: "ConnectionFailed", retryable: false });

describe.skipIf(!ok)("a client closed for good (skipped: no broker)", () => {
  it("reject() of a QoS 0 delivery after the connection was lost (reconnectPeriod 0) fails with SettlementFailed, its cause ConnectionFailed not retryable", {
    timeout: 20_000,
  }, async () => {
    const topic = uniqueTopic("closed-qos0-reject");
    const c = await client({ protocolVersion: 5, reconnectPeriod: 0 });
    const subscriber = await mqttSubscriber(c, {
      topic,
      qos: 0,
      formats: [json],
      deadLetterTopic: `${topic}/dead`,
    });
    opened.push(subscriber);
    const it = subscriber[Symbol.asyncIterator]();
    await mqttPublisher(await client({ protocolVersion: 5 }), { topic, qos: 0 }).publish(job(1));
    const delivery = await nextDelivery(it);
    await loseConnection(c);
    expect(await settledWithin(delivery.reject("cannot process"), 3000)).toEqual({
      rejected: expect.objectContaining({ code: "SettlementFailed", cause: goneForGood }),
    });
  });

  it("a publisher made after the connection was lost (reconnectPeriod 0) refuses at once with ConnectionFailed, not retryable", {
    timeout: 20_000,
  }, async () => {
    const c = await client({ protocolVersion: 5, reconnectPeriod: 0 });
    await loseConnection(c);
    const publisher = mqttPublisher(c, { topic: uniqueTopic("closed-late-publisher") });
    for (const qos of [0, 1] as const) {
      expect(await settledWithin(publisher.publish(job(qos), { qos }), 2000)).toEqual({
        rejected: goneForGood,
      });
    }
    expect(await settledWithin(publisher.close(), 1000)).toEqual({ resolved: undefined });
  });

  it("a subscriber made after the connection was lost (reconnectPeriod 0) is refused with ConnectionFailed, not retryable", {
    timeout: 20_000,
  }, async () => {
    const c = await client({ protocolVersion: 5, reconnectPeriod: 0 });
    await loseConnection(c);
    const made = mqttSubscriber(c, { topic: uniqueTopic("closed-late-sub"), formats: [json] });
    expect(await settledWithin(made, 2000)).toEqual({ rejected: goneForGood });
  });

  it("a subscriber made on an ended client (reconnectPeriod 0) is refused with Closed", {
    timeout: 20_000,
  }, async () => {
    const c = await client({ protocolVersion: 5, reconnectPeriod: 0 });
    await c.endAsync();
    const made = mqttSubscriber(c, { topic: uniqueTopic("ended-sub"), formats: [json] });
    expect(await settledWithin(made, 2000)).toEqual({
      rejected: expect.objectContaining({ code: "Closed" }),
    });
  });

  it("a subscriber made on a manualConnect client that is then ended without ever connecting: ready rejects with Closed, and iteration fails the same", {
    timeout: 20_000,
  }, async () => {
    const c = mqtt.connect(url, { protocolVersion: 5, manualConnect: true });
    const subscriber = await mqttSubscriber(c, {
      topic: uniqueTopic("ended-unopened"),
      formats: [json],
    });
    // mqtt.js's own end() of a client that never connected throws (it has no stream), and emits
    // neither 'end' nor 'close'.
    expect(() => c.end()).toThrow(TypeError);
    const closed = expect.objectContaining({ name: "PosthornError", code: "Closed" });
    expect(await settledWithin(subscriber.ready, 2000)).toEqual({ rejected: closed });
    expect(await settledWithin(subscriber[Symbol.asyncIterator]().next(), 2000)).toEqual({
      rejected: closed,
    });
    expect(await settledWithin(subscriber.close(), 2000)).toEqual({ resolved: undefined });
    // A subscriber made on it afterwards is refused at once: mqtt.js would never send its SUBSCRIBE.
    const late = mqttSubscriber(c, { topic: uniqueTopic("ended-unopened-late"), formats: [json] });
    expect(await settledWithin(late, 2000)).toEqual({ rejected: closed });
  });

  it("a publisher made while the client is closed for good publishes again once the application calls client.reconnect()", {
    timeout: 20_000,
  }, async () => {
    const topic = uniqueTopic("closed-reconnect");
    const subscriber = await mqttSubscriber(await client({ protocolVersion: 5 }), {
      topic,
      formats: [json],
    });
    opened.push(subscriber);
    const c = await client({ protocolVersion: 5, reconnectPeriod: 0 });
    await loseConnection(c);
    const publisher = mqttPublisher(c, { topic });
    await expect(publisher.publish(job(1))).rejects.toMatchObject({ code: "ConnectionFailed" });
    const back = new Promise<void>((r) => c.once("connect", () => r()));
    c.reconnect();
    await back;
    expect(await settledWithin(publisher.publish(job(2)), 3000)).toEqual({ resolved: undefined });
    const delivery = await nextDelivery(subscriber[Symbol.asyncIterator](), 5000);
    expect(delivery.event?.id).toBe("job-2");
    await delivery.accept();
  });

  for (const protocolVersion of [5, 4] as const) {
    for (const how of ["lost", "ended", "connected"] as const) {
      it(`MQTT ${protocolVersion === 5 ? "5" : "3.1.1"}: a subscriber on a clean-session client (reconnectPeriod 0) receives again after client.reconnect() (connection ${how})`, {
        timeout: 20_000,
      }, async () => {
        const topic = uniqueTopic(`reconnect-resubscribe-${protocolVersion}-${how}`);
        const c = await client({ protocolVersion, reconnectPeriod: 0 });
        const subscriber = await mqttSubscriber(c, { topic, formats: [json] });
        opened.push(subscriber);
        const it = subscriber[Symbol.asyncIterator]();
        const publisher = mqttPublisher(await client({ protocolVersion: 5 }), {
          topic,
          mode: "structured",
          format: json,
        });
        await publisher.publish(job(1));
        const first = await nextDelivery(it);
        expect(first.event?.id).toBe("job-1");
        await first.accept();
        if (how === "lost") await loseConnection(c);
        if (how === "ended") await c.endAsync();
        const back = new Promise<void>((r) => c.once("connect", () => r()));
        c.reconnect();
        await back;
        // The broker has the subscription again once it answers a PINGREQ sent after it.
        expect(await settledWithin(pingRoundTrip(c), 3000)).toEqual({ resolved: undefined });
        await publisher.publish([job(2), job(3), job(4)]);
        const ids: string[] = [];
        for (let i = 0; i < 3; i++) {
          const d = await nextDelivery(it, 5000);
          ids.push(d.event?.id as string);
          await d.accept();
        }
        expect(ids).toEqual(["job-2", "job-3", "job-4"]);
      });
    }
  }

  it("on mqtt.js's own reconnects (reconnectPeriod above 0) the subscription is made again once, by mqtt.js", {
    timeout: 20_000,
  }, async () => {
    const topic = uniqueTopic("reconnect-auto");
    const c = await client({ protocolVersion: 5, reconnectPeriod: 100 });
    const subscriber = await mqttSubscriber(c, { topic, formats: [json] });
    opened.push(subscriber);
    const it = subscriber[Symbol.asyncIterator]();
    let subscribes = 0;
    c.on("packetsend", (packet: { cmd: string }) => {
      if (packet.cmd === "subscribe") subscribes++;
    });
    const back = new Promise<void>((r) => c.once("connect", () => r()));
    await loseConnection(c);
    await back;
    const publisher = mqttPublisher(await client({ protocolVersion: 5 }), { topic });
    await pingRoundTrip(c);
    await publisher.publish(job(1));
    const d = await nextDelivery(it, 5000);
    expect(d.event?.id).toBe("job-1");
    await d.accept();
    expect(subscribes).toBe(1);
  });
});

/**
 * Resolves when the broker answers a PINGREQ sent now: it has then read every packet the client
 * wrote before (a SUBSCRIBE mqtt.js sent at the CONNACK among them).
 */
function pingRoundTrip(c: MqttClient): Promise<void> {
  return new Promise<void>((resolve) => {
    const onPacket = (packet: { cmd: string }) => {
      if (packet.cmd !== "pingresp") return;
      c.off("packetreceive", onPacket);
      resolve();
    };
    c.on("packetreceive", onPacket);
    (c as unknown as { _sendPacket(p: { cmd: string }): void })._sendPacket({ cmd: "pingreq" });
  });
}
