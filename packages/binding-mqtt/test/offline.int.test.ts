import { PosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { type LaunchedBroker, startMosquitto, startPersistentMosquitto } from "@posthorn/testkit";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { uniqueTopic } from "./live-harness.js";

// Publishing while the broker is away, against a Mosquitto this file starts and kills. mqtt.js
// keeps what is published offline (QoS 0 in its queue, QoS 1/2 in its outgoing store) and sends
// it after reconnecting; these tests check what publish() and close() report meanwhile.
let broker: LaunchedBroker;
const clients: MqttClient[] = [];

beforeAll(async () => {
  broker = await startMosquitto();
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined);
  if (broker.process.exitCode !== null || broker.process.signalCode !== null) {
    await broker.restart();
  }
});

afterAll(async () => {
  await broker?.stop();
});

const event = (id: string) => ({ specversion: "1.0", id, source: "/offline", type: "t.offline" });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Where a promise stands after `ms`: its outcome, or "pending". */
async function stateAfter(p: Promise<unknown>, ms: number): Promise<unknown> {
  return Promise.race([
    p.then(
      () => "resolved",
      (err: unknown) => (err instanceof PosthornError ? err.code : String(err)),
    ),
    sleep(ms).then(() => "pending"),
  ]);
}

async function client(url: string): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, {
    protocolVersion: 5,
    reconnectPeriod: 100,
    connectTimeout: 5000,
  });
  c.on("error", () => {});
  clients.push(c);
  return c;
}

describe("MQTT publisher while the broker is away", () => {
  it("publishes at QoS 0, 1 and 2 made while the broker is down stay pending, then resolve once it returns; QoS 1 and 2 arrive", {
    timeout: 30_000,
  }, async () => {
    // A broker that keeps the subscriber's session across the restart, so what the publisher
    // resends reaches it whichever client reconnects first (QoS 0 is not queued for a session
    // that is offline: at-most-once).
    const persistent = await startPersistentMosquitto();
    try {
      const topic = uniqueTopic("offline-kept");
      const sub = await mqtt.connectAsync(persistent.url, {
        protocolVersion: 5,
        clean: false,
        clientId: `posthorn-offline-${process.pid}-${Date.now().toString(36)}`,
        properties: { sessionExpiryInterval: 300 },
        reconnectPeriod: 100,
      });
      sub.on("error", () => {});
      clients.push(sub);
      const subscriber = await mqttSubscriber(sub, { topic, qos: 2, formats: [json] });
      const pub = await client(persistent.url);
      const publisher = mqttPublisher(pub, { topic });
      await persistent.terminate();
      await sleep(300);
      expect(pub.connected).toBe(false);
      const sends = ([0, 1, 2] as const).map((qos) => publisher.publish(event(`q${qos}`), { qos }));
      expect(await stateAfter(Promise.all(sends), 1000)).toBe("pending");
      await persistent.restart();
      await Promise.all(sends);
      const ids: string[] = [];
      for await (const d of subscriber) {
        if (d.event?.id !== "q0") ids.push(d.event?.id ?? "?");
        await d.accept();
        if (ids.length === 2) break;
      }
      expect(ids.sort()).toEqual(["q1", "q2"]);
    } finally {
      for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined);
      await persistent.stop();
    }
  });

  it("close() with publishes waiting for the broker rejects with Timeout after closeTimeoutMs", {
    timeout: 30_000,
  }, async () => {
    const topic = uniqueTopic("offline-close");
    const pub = await client(broker.url);
    const publisher = mqttPublisher(pub, { topic, closeTimeoutMs: 300 });
    await broker.kill();
    await sleep(300);
    const sent = publisher.publish(event("c1"), { qos: 1 });
    sent.catch(() => undefined);
    const closing = publisher.close();
    closing.catch(() => undefined);
    expect(await stateAfter(closing, 5000)).toBe("Timeout");
    // Every close() call gets the same answer; the publish is still mqtt.js's to resend.
    expect(await stateAfter(publisher.close(), 100)).toBe("Timeout");
    expect(await stateAfter(sent, 100)).toBe("pending");
    await broker.restart();
    await expect(sent).resolves.toBeUndefined();
  });

  it("publishes mqtt.js still holds when the client is ended fail with Closed instead of staying pending", {
    timeout: 30_000,
  }, async () => {
    const topic = uniqueTopic("offline-end");
    const pub = await client(broker.url);
    const publisher = mqttPublisher(pub, { topic });
    await broker.kill();
    await sleep(300);
    const sends = ([0, 1, 2] as const).map((qos) => publisher.publish(event(`e${qos}`), { qos }));
    for (const s of sends) s.catch(() => undefined);
    await pub.endAsync(true);
    for (const s of sends) expect(await stateAfter(s, 3000)).toBe("Closed");
    // close() has nothing left to wait for, and a publish on the ended client is refused.
    expect(await stateAfter(publisher.close(), 1000)).toBe("resolved");
    const other = mqttPublisher(pub, { topic });
    expect(await stateAfter(other.publish(event("late")), 3000)).toBe("Closed");
  });

  it("a publish on a client that never connects fails with Closed once the client is ended", {
    timeout: 30_000,
  }, async () => {
    // Nothing listens on a port Mosquitto has left.
    const gone = await startMosquitto();
    await gone.stop();
    const c = mqtt.connect(gone.url, {
      protocolVersion: 5,
      reconnectPeriod: 100,
      connectTimeout: 1000,
    });
    c.on("error", () => {});
    clients.push(c);
    const publisher = mqttPublisher(c, { topic: uniqueTopic("never") });
    const sent = publisher.publish(event("n1"), { qos: 1 });
    sent.catch(() => undefined);
    expect(await stateAfter(sent, 1000)).toBe("pending");
    await c.endAsync(true);
    expect(await stateAfter(sent, 3000)).toBe("Closed");
  });

  it("with reconnectPeriod 0, publishes held when the connection drops fail with ConnectionFailed, and later ones are refused at once", {
    timeout: 30_000,
  }, async () => {
    const topic = uniqueTopic("offline-no-reconnect");
    const pub = await mqtt.connectAsync(broker.url, {
      protocolVersion: 5,
      reconnectPeriod: 0,
      connectTimeout: 5000,
    });
    pub.on("error", () => {});
    clients.push(pub);
    const publisher = mqttPublisher(pub, { topic, closeTimeoutMs: 10_000 });
    // Stopped, the broker takes the bytes (the kernel does) but never acknowledges them.
    broker.process.kill("SIGSTOP");
    const held = publisher.publish(event("h1"), { qos: 1 });
    held.catch(() => undefined);
    expect(await stateAfter(held, 300)).toBe("pending");
    const closing = publisher.close();
    closing.catch(() => undefined);
    await broker.kill();
    expect(await stateAfter(held, 3000)).toBe("ConnectionFailed");
    // close() had only that publish to wait for.
    expect(await stateAfter(closing, 1000)).toBe("resolved");
    const other = mqttPublisher(pub, { topic });
    expect(await stateAfter(other.publish(event("h2"), { qos: 1 }), 1000)).toBe("ConnectionFailed");
  });
});
