import { json } from "@posthorn/format-json";
import {
  baselineHandles,
  expectNoLeakedHandles,
  type LaunchedBroker,
  nextDelivery,
  type OpenHandles,
  shutdownEvent,
  startMosquitto,
  takeDeliveries,
} from "@posthorn/testkit";
import mqtt, { type IClientOptions } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { job, uniqueTopic } from "./live-harness.js";

// Graceful shutdown against a Mosquitto this file starts: close() of publishers and subscribers
// resolves with deliveries in hand, what was not settled comes back, and nothing stays open.
let broker: LaunchedBroker;
let baseline: OpenHandles;

beforeAll(async () => {
  broker = await startMosquitto();
  baseline = await baselineHandles();
});

afterAll(async () => {
  await broker?.stop();
});

function options(clientId: string): IClientOptions {
  return {
    protocolVersion: 5,
    clean: false,
    clientId,
    properties: { sessionExpiryInterval: 60 },
    reconnectPeriod: 100,
    connectTimeout: 5000,
  };
}

describe("MQTT graceful shutdown", () => {
  it("close() resolves with publishes in flight and a delivery in hand; the unsettled one comes back; no socket or timer is left", async () => {
    const topic = uniqueTopic("shutdown");
    const clientId = `posthorn-shutdown-${process.pid}-${Date.now().toString(36)}`;
    const sub = await mqtt.connectAsync(broker.url, options(clientId));
    const subscriber = await mqttSubscriber(sub, {
      topic,
      qos: 1,
      formats: [json],
      drainTimeoutMs: 300,
    });
    const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, connectTimeout: 5000 });
    const publisher = mqttPublisher(pub, { topic, qos: 1 });

    // Publishes in flight when close() is called: close() waits for their acknowledgements.
    const publishes = [1, 2, 3].map((i) => publisher.publish(shutdownEvent("mqtt", i)));
    await publisher.close();
    await Promise.all(publishes);
    await expect(publisher.publish(shutdownEvent("mqtt", 9))).rejects.toMatchObject({
      code: "Closed",
    });

    const it = subscriber[Symbol.asyncIterator]();
    const [first] = await takeDeliveries(it, 1);
    expect(first?.event?.id).toBe("shutdown-1");
    await first?.accept();
    const [inHand] = await takeDeliveries(it, 1);
    expect(inHand?.event?.id).toBe("shutdown-2");
    // close() waits drainTimeoutMs for the delivery in hand, then lets it go unacknowledged.
    const started = Date.now();
    await subscriber.close();
    expect(Date.now() - started).toBeLessThan(3000);
    expect((await it.next()).done).toBe(true);
    await expect(inHand?.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
    await sub.endAsync();
    await pub.endAsync();

    // The session resumes: what was not acknowledged (in hand, and not yet handed out) returns.
    const again = mqtt.connect(broker.url, options(clientId));
    const resumed = await mqttSubscriber(again, { topic, qos: 1, formats: [json] });
    // One delivery in hand at a time per connection (mqtt.js): accept each before the next.
    const rit = resumed[Symbol.asyncIterator]();
    const back: string[] = [];
    for (let i = 0; i < 2; i++) {
      const [d] = await takeDeliveries(rit, 1);
      back.push(d?.event?.id ?? "?");
      await d?.accept();
    }
    expect(back.sort()).toEqual(["shutdown-2", "shutdown-3"]);
    await resumed.close();
    await again.endAsync();

    await expectNoLeakedHandles(baseline);
  });

  it("close() with deliveries unsettled on a client that goes on: after a reconnect the session's copies wait for a later subscriber on that client, mqtt.js does not acknowledge them", {
    timeout: 20_000,
  }, async () => {
    const topic = uniqueTopic("closed-unsettled");
    const sub = await mqtt.connectAsync(
      broker.url,
      options(`posthorn-closed-${process.pid}-${Date.now().toString(36)}`),
    );
    const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, connectTimeout: 5000 });
    try {
      const closing = await mqttSubscriber(sub, { topic, formats: [json], drainTimeoutMs: 0 });
      const other = await mqttSubscriber(sub, { topic: `${topic}/other`, formats: [json] });
      const publisher = mqttPublisher(pub, { topic });
      for (let i = 0; i < 3; i++) await publisher.publish(job(i));
      const it = closing[Symbol.asyncIterator]();
      const unsettled = await takeDeliveries(it, 3);
      await closing.close();
      await expect(unsettled[0]?.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
      // The other subscriber goes on (3 withheld leave room in the broker's window of 20).
      await mqttPublisher(pub, { topic: `${topic}/other` }).publish(job(9));
      const oit = other[Symbol.asyncIterator]();
      const o = await nextDelivery(oit);
      expect(o.event?.id).toBe("job-9");
      await o.accept();
      const reconnect = async () => {
        const back = new Promise((r) => sub.once("connect", r));
        (sub as unknown as { stream: { destroy(): void } }).stream.destroy();
        await back;
        // The session's resent copies arrive (and before, mqtt.js acknowledged them).
        await new Promise((r) => setTimeout(r, 500));
      };
      await reconnect();
      const later = await mqttSubscriber(sub, { topic, formats: [json] });
      await reconnect();
      const lit = later[Symbol.asyncIterator]();
      const again = await takeDeliveries(lit, 3);
      expect(again.map((d) => [d.event?.id, d.message.metadata?.dup])).toEqual([
        ["job-0", true],
        ["job-1", true],
        ["job-2", true],
      ]);
      for (const d of again) await d.accept();
      await later.close();
      await other.close();
    } finally {
      await sub.endAsync(true);
      await pub.endAsync(true);
    }
  });
});
