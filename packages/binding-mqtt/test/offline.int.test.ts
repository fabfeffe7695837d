import { PosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import {
  type LaunchedBroker,
  nextDelivery,
  settledWithin,
  startMosquitto,
  startPersistentMosquitto,
} from "@posthorn/testkit";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_MAX_QUEUED, mqttPublisher, mqttSubscriber } from "../src/index.js";
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

  it("with reconnectPeriod 0, publishes held when the connection drops fail with ConnectionFailed (not retryable), and later ones are refused at once", {
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
    // Gone until the application reconnects the client: retrying on it cannot succeed.
    await expect(held).rejects.toMatchObject({ retryable: false });
    // close() had only that publish to wait for.
    expect(await stateAfter(closing, 1000)).toBe("resolved");
    const other = mqttPublisher(pub, { topic });
    const refused = other.publish(event("h2"), { qos: 1 });
    refused.catch(() => undefined);
    expect(await stateAfter(refused, 1000)).toBe("ConnectionFailed");
    await expect(refused).rejects.toMatchObject({ retryable: false });
  });

  it("past maxQueued while the broker is down, publish() fails at once with PublishRejected (retryable) and hands nothing to mqtt.js; what was kept arrives once the broker is back", {
    timeout: 30_000,
  }, async () => {
    // As in the first test: the subscriber's session survives the restart, so what the publisher
    // sends after it reaches the subscriber whichever client reconnects first.
    const persistent = await startPersistentMosquitto();
    try {
      const topic = uniqueTopic("offline-bounded");
      const sub = await mqtt.connectAsync(persistent.url, {
        protocolVersion: 5,
        clean: false,
        clientId: `posthorn-bounded-${process.pid}-${Date.now().toString(36)}`,
        properties: { sessionExpiryInterval: 300 },
        reconnectPeriod: 100,
      });
      sub.on("error", () => {});
      clients.push(sub);
      const subscriber = await mqttSubscriber(sub, { topic, qos: 1, formats: [json] });
      const pub = await client(persistent.url);
      const publisher = mqttPublisher(pub, { topic, qos: 1, maxQueued: 5 });
      await persistent.terminate();
      await sleep(300);
      expect(pub.connected).toBe(false);

      const kept = [0, 1, 2].map((i) => publisher.publish(event(`k${i}`)));
      // 3 held + 3 is past the bound: the whole array is refused, none of it handed over.
      const started = performance.now();
      const tooMany = publisher.publish([event("over-1"), event("over-2"), event("over-3")]);
      expect(await stateAfter(tooMany, 50)).toBe("PublishRejected");
      // 3 + 2 fits.
      kept.push(publisher.publish([event("k3"), event("k4")]));
      const over = publisher.publish(event("over-4"), { qos: 0 });
      await expect(over).rejects.toMatchObject({
        name: "PosthornError",
        code: "PublishRejected",
        retryable: true,
        message: expect.stringContaining("maxQueued 5"),
      });
      const refusedMs = performance.now() - started;
      console.log(
        `mqtt maxQueued 5, broker down: 5 kept, 2 calls past the bound refused in ${refusedMs.toFixed(1)} ms`,
      );
      expect(refusedMs).toBeLessThan(100);
      expect(await stateAfter(Promise.all(kept), 500)).toBe("pending");

      await persistent.restart();
      await Promise.all(kept);
      const iterator = subscriber[Symbol.asyncIterator]();
      const ids: string[] = [];
      // One at a time: while a QoS 1 delivery is in hand mqtt.js reads nothing else.
      for (let i = 0; i < 5; i++) {
        const d = await nextDelivery(iterator, 10_000);
        ids.push(d.event?.id ?? "?");
        await d.accept();
      }
      expect(ids.sort()).toEqual(["k0", "k1", "k2", "k3", "k4"]);
      // The refused ones were never handed to mqtt.js: nothing else comes.
      expect(await settledWithin(iterator.next(), 500)).toBe("pending");
      // Connected again, the bound does not apply.
      await expect(publisher.publish(event("after"))).resolves.toBeUndefined();
    } finally {
      for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined);
      await persistent.stop();
    }
  });

  it(`maxQueued defaults to ${DEFAULT_MAX_QUEUED}; 0 refuses every publish while the client is not connected`, {
    timeout: 30_000,
  }, async () => {
    const topic = uniqueTopic("offline-default-bound");
    const pub = await client(broker.url);
    const unbounded = mqttPublisher(pub, { topic, qos: 0 });
    const none = mqttPublisher(pub, { topic, maxQueued: 0 });
    await expect(none.publish(event("connected"))).resolves.toBeUndefined();
    await broker.kill();
    await sleep(300);
    expect(pub.connected).toBe(false);
    await expect(none.publish(event("z"))).rejects.toMatchObject({
      code: "PublishRejected",
      retryable: true,
    });
    const held = Array.from({ length: DEFAULT_MAX_QUEUED }, (_, i) =>
      unbounded.publish(event(`d${i}`)),
    );
    for (const h of held) h.catch(() => undefined);
    await expect(unbounded.publish(event("one-more"))).rejects.toMatchObject({
      code: "PublishRejected",
      retryable: true,
      message: expect.stringContaining(`holds ${DEFAULT_MAX_QUEUED} of this publisher's messages`),
    });
    // Each publisher counts its own messages.
    await expect(none.publish(event("z2"))).rejects.toMatchObject({ code: "PublishRejected" });
    expect(() => mqttPublisher(pub, { topic, maxQueued: -1 })).toThrow(
      expect.objectContaining({ code: "NotSupported" }),
    );
    await broker.restart();
    await Promise.all(held);
  });
});
