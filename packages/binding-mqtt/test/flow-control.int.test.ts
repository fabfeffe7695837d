import type { Delivery } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { type LaunchedBroker, settledWithin, startMosquitto } from "@posthorn/testkit";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { uniqueTopic } from "./live-harness.js";

// A QoS 0 subscriber whose application pulls slowly or not at all, against a Mosquitto this file
// starts (max_inflight_messages 0: the broker keeps sending to a client that stops reading, it
// does not drop QoS 0 messages). mqtt.js emits 'message' for every PUBLISH it processes, so
// counting those shows how far it read.
let broker: LaunchedBroker;
const clients: MqttClient[] = [];

beforeAll(async () => {
  broker = await startMosquitto();
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined);
});

afterAll(async () => {
  await broker?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function client(): Promise<MqttClient> {
  const c = await mqtt.connectAsync(broker.url, {
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
  clients.push(c);
  return c;
}

const COUNT = 2000;
const data = "x".repeat(1024);

async function publishAll(topic: string): Promise<void> {
  const publisher = mqttPublisher(await client(), { topic, qos: 0 });
  const sends: Promise<void>[] = [];
  for (let i = 0; i < COUNT; i++) {
    sends.push(
      publisher.publish({ specversion: "1.0", id: `f-${i}`, source: "/flow", type: "t", data }),
    );
  }
  await Promise.all(sends);
}

describe("MQTT QoS 0 subscriber flow control", () => {
  it("stops mqtt.js reading past maxPending deliveries not pulled, and every message arrives in order once pulled", {
    timeout: 60_000,
  }, async () => {
    const topic = uniqueTopic("flow");
    const sub = await client();
    let processed = 0;
    sub.on("message", () => processed++);
    const subscriber = await mqttSubscriber(sub, {
      topic,
      qos: 0,
      formats: [json],
      maxPending: 16,
    });
    await publishAll(topic);
    // Time for mqtt.js to read whatever it is allowed to (all 2,000 without flow control).
    const deadline = Date.now() + 3000;
    while (processed < COUNT && Date.now() < deadline) await sleep(50);
    expect(processed).toBeLessThanOrEqual(16);
    const ids: string[] = [];
    for await (const d of subscriber) {
      ids.push(d.event?.id ?? "?");
      if (ids.length === COUNT) break;
    }
    expect(ids).toEqual(Array.from({ length: COUNT }, (_, i) => `f-${i}`));
  });

  it("closing a subscriber that stopped mqtt.js lets the client go on: a later subscriber on it receives", {
    timeout: 60_000,
  }, async () => {
    const topic = uniqueTopic("flow-close");
    const sub = await client();
    const subscriber = await mqttSubscriber(sub, {
      topic,
      qos: 0,
      formats: [json],
      maxPending: 4,
    });
    await publishAll(topic);
    await sleep(200);
    await subscriber.close();
    const next = await mqttSubscriber(sub, { topic: `${topic}-next`, qos: 1, formats: [json] });
    await mqttPublisher(await client(), { topic: `${topic}-next`, qos: 1 }).publish({
      specversion: "1.0",
      id: "after",
      source: "/flow",
      type: "t",
    });
    for await (const d of next) {
      expect(d.event?.id).toBe("after");
      await d.accept();
      break;
    }
  });

  it("reject() of a delivery pulled while mqtt.js is held past maxPending: mqtt.js reads at most twice maxPending, reject() ends with SettlementFailed (cause Timeout), the copy still arrives, and so does every message", {
    timeout: 30_000,
  }, async () => {
    const topic = uniqueTopic("flow-reject");
    const deadLetterTopic = `${topic}/dead`;
    const dlq = await mqttSubscriber(await client(), { topic: deadLetterTopic, formats: [json] });
    const sub = await client();
    let processed = 0;
    sub.on("message", () => processed++);
    const subscriber = await mqttSubscriber(sub, {
      topic,
      qos: 0,
      formats: [json],
      maxPending: 4,
      deadLetterTopic,
    });
    await publishAll(topic);
    const deadline = Date.now() + 3000;
    while (processed < COUNT && Date.now() < deadline) await sleep(50);
    // mqtt.js is held: the copy's PUBACK is behind what it does not read.
    expect(processed).toBeLessThanOrEqual(4);
    const it = subscriber[Symbol.asyncIterator]();
    const first = (await it.next()).value as Delivery;
    // mqtt.js read on past maxPending up to twice it, then was held again: the copy's PUBACK,
    // behind the 2,000 messages, cannot be read until they are pulled, and reject() ends.
    // Not "lost": the copy was sent, and usually arrives (it does, below).
    expect(await settledWithin(first.reject("cannot process"), 5000)).toEqual({
      rejected: expect.objectContaining({
        code: "SettlementFailed",
        retryable: false,
        cause: expect.objectContaining({ code: "Timeout" }),
        message: expect.stringContaining("it usually arrives"),
      }),
    });
    await sleep(200);
    expect(processed).toBeLessThanOrEqual(2 * 4 + 1);
    // The rest still arrive, in order, and the copy was sent all the same.
    const ids: string[] = [];
    for (let d = await it.next(); !d.done; d = await it.next()) {
      ids.push(d.value.event?.id ?? "?");
      if (ids.length === COUNT - 1) break;
    }
    expect(ids).toEqual(Array.from({ length: COUNT - 1 }, (_, i) => `f-${i + 1}`));
    const copy = (await dlq[Symbol.asyncIterator]().next()).value as Delivery;
    expect(copy.event?.id).toBe("f-0");
    await copy.accept();
    await subscriber.close();
    await dlq.close();
  });

  it("reject() while mqtt.js is held past maxPending resolves when the application pulls meanwhile", {
    timeout: 30_000,
  }, async () => {
    const topic = uniqueTopic("flow-reject-pulling");
    const deadLetterTopic = `${topic}/dead`;
    const dlq = await mqttSubscriber(await client(), { topic: deadLetterTopic, formats: [json] });
    const sub = await client();
    let processed = 0;
    sub.on("message", () => processed++);
    const subscriber = await mqttSubscriber(sub, {
      topic,
      qos: 0,
      formats: [json],
      maxPending: 16,
      deadLetterTopic,
    });
    await publishAll(topic);
    const deadline = Date.now() + 3000;
    while (processed < 16 && Date.now() < deadline) await sleep(50);
    const it = subscriber[Symbol.asyncIterator]();
    const first = (await it.next()).value as Delivery;
    const rejected = first.reject("cannot process");
    const ids: string[] = [];
    for (let d = await it.next(); !d.done; d = await it.next()) {
      ids.push(d.value.event?.id ?? "?");
      if (ids.length === COUNT - 1) break;
    }
    expect(await settledWithin(rejected, 5000)).toEqual({ resolved: undefined });
    expect(ids).toEqual(Array.from({ length: COUNT - 1 }, (_, i) => `f-${i + 1}`));
    const copy = (await dlq[Symbol.asyncIterator]().next()).value as Delivery;
    expect(copy.event?.id).toBe("f-0");
    await copy.accept();
    await subscriber.close();
    await dlq.close();
  });

  it("reject() on one subscriber while another subscriber on the client holds mqtt.js past maxPending: that one reads at most twice its maxPending, and reject() ends", {
    timeout: 30_000,
  }, async () => {
    const topic = uniqueTopic("flow-reject-other");
    const sub = await client();
    let processed = 0;
    sub.on("message", (t) => {
      if (t === topic) processed++;
    });
    const held = await mqttSubscriber(sub, { topic, qos: 0, formats: [json], maxPending: 4 });
    const other = await mqttSubscriber(sub, {
      topic: `${topic}-other`,
      qos: 0,
      formats: [json],
      deadLetterTopic: `${topic}-other/dead`,
    });
    const otherIt = other[Symbol.asyncIterator]();
    await mqttPublisher(await client(), { topic: `${topic}-other`, qos: 1 }).publish({
      specversion: "1.0",
      id: "other-1",
      source: "/flow",
      type: "t",
    });
    const delivery = (await otherIt.next()).value as Delivery;
    // Now the first subscriber fills up and mqtt.js stops reading.
    await publishAll(topic);
    await sleep(300);
    expect(processed).toBeLessThanOrEqual(4);
    expect(await settledWithin(delivery.reject(), 5000)).toEqual({
      rejected: expect.objectContaining({
        code: "SettlementFailed",
        cause: expect.objectContaining({ code: "Timeout" }),
      }),
    });
    await sleep(200);
    expect(processed).toBeLessThanOrEqual(2 * 4 + 1);
    await held.close();
    await other.close();
  });

  it("reject() at QoS 1 on a persistent session whose copy's wait ends (Timeout): the message is not sent again, the copy arrives once, and the message is acknowledged once mqtt.js reads the copy's answer", {
    timeout: 30_000,
  }, async () => {
    const topic = uniqueTopic("flow-reject-persistent");
    const deadLetterTopic = `${topic}/dead`;
    const dead = await client();
    const copies: string[] = [];
    // Binary mode: the event's id is a user property.
    const idOf = (packet: { properties?: { userProperties?: Record<string, unknown> } }) =>
      String(packet.properties?.userProperties?.id);
    dead.on("message", (t, _payload, packet) => {
      if (t === deadLetterTopic) copies.push(idOf(packet));
    });
    await dead.subscribeAsync(deadLetterTopic, { qos: 1 });
    const session = {
      protocolVersion: 5,
      clean: false,
      clientId: `posthorn-flow-${Math.random().toString(36).slice(2, 10)}`,
      properties: { sessionExpiryInterval: 30 },
      reconnectPeriod: 100,
      connectTimeout: 5000,
    } as const;
    const sub = await mqtt.connectAsync(broker.url, session);
    clients.push(sub);
    const subscriber = await mqttSubscriber(sub, {
      topic,
      qos: 1,
      formats: [json],
      maxPending: 4,
      deadLetterTopic,
    });
    const publisher = mqttPublisher(await client(), { topic, qos: 1 });
    const n = 30;
    for (let i = 0; i < n; i++) {
      await publisher.publish({ specversion: "1.0", id: `p-${i}`, source: "/flow", type: "t" });
    }
    await sleep(200);
    const it = subscriber[Symbol.asyncIterator]();
    const first = (await it.next()).value as Delivery;
    expect(first.event?.id).toBe("p-0");
    // A loop that awaits reject() before pulling the next: mqtt.js is held at twice maxPending.
    expect(await settledWithin(first.reject("cannot process"), 5000)).toEqual({
      rejected: expect.objectContaining({
        code: "SettlementFailed",
        retryable: false,
        cause: expect.objectContaining({ code: "Timeout" }),
        message: expect.stringContaining("not confirmed in time"),
      }),
    });
    // The rest arrive once pulled, and p-0 does not come again (it did, at each of the
    // reconnects the subscriber made, while the loop went on rejecting it).
    const ids: string[] = [];
    while (ids.length < n - 1) {
      const d = await it.next();
      if (d.done) break;
      ids.push(d.value.event?.id ?? "?");
      await d.value.accept();
    }
    expect(ids).toEqual(Array.from({ length: n - 1 }, (_, i) => `p-${i + 1}`));
    const deadline = Date.now() + 3000;
    while (copies.length < 1 && Date.now() < deadline) await sleep(50);
    expect(copies).toEqual(["p-0"]);
    // Every message was acknowledged, p-0 included: a new connection on the session gets none.
    await subscriber.close();
    const resumed = await mqtt.connectAsync(broker.url, { ...session, reconnectPeriod: 0 });
    clients.splice(clients.indexOf(sub), 1);
    await sub.endAsync(true);
    clients.push(resumed);
    const again: string[] = [];
    resumed.on("message", (_t, _payload, packet) => again.push(idOf(packet)));
    await sleep(500);
    expect(again).toEqual([]);
    expect(copies).toEqual(["p-0"]);
  });

  it("refuses a maxPending below 1 with NotSupported", async () => {
    const sub = await client();
    for (const maxPending of [0, -1, Number.NaN]) {
      await expect(
        mqttSubscriber(sub, { topic: uniqueTopic("flow-bad"), formats: [json], maxPending }),
      ).rejects.toMatchObject({ code: "NotSupported" });
    }
  });
});
