import { once } from "node:events";
import { type AddressInfo, createServer } from "node:net";
import type { Delivery } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import {
  type LaunchedBroker,
  nextDelivery,
  startMosquitto,
  takeDeliveries,
} from "@posthorn/testkit";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MqttSubscriber, mqttPublisher, mqttSubscriber } from "../src/index.js";
import { closedAfterEach, job, uniqueTopic } from "./live-harness.js";

// A worker that restarts on its persistent session: the broker resends what the last process
// held unsettled right after CONNACK. Made as docs/bindings/mqtt.md says (manualConnect, the
// subscribers, then connect()), the subscribers get every one of them; made on a connected
// client, mqtt.js's own handler acknowledged them unseen (10 of 10 lost, QoS 1 and 2).
let broker: LaunchedBroker;
const opened = closedAfterEach();

beforeAll(async () => {
  broker = await startMosquitto();
});

afterAll(async () => {
  await broker?.stop();
});

const HELD = 10;

function workerOptions(clientId: string): IClientOptions {
  return {
    protocolVersion: 5,
    clean: false,
    clientId,
    properties: { sessionExpiryInterval: 60 },
    reconnectPeriod: 100,
    connectTimeout: 5000,
    manualConnect: true,
  };
}

/** `promise`, or a failure naming `what` when it does not settle within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** What `subscriber` is handed within `ms`, each accepted. */
async function collect(subscriber: MqttSubscriber, ms: number): Promise<Delivery[]> {
  const it = subscriber[Symbol.asyncIterator]();
  const got: Delivery[] = [];
  const deadline = Date.now() + ms;
  for (;;) {
    let delivery: Delivery;
    try {
      delivery = await nextDelivery(it, Math.max(deadline - Date.now(), 1));
    } catch {
      return got;
    }
    got.push(delivery);
    await delivery.accept();
  }
}

/** A client made as documented: not connected until the test makes its subscribers. */
function worker(clientId: string): MqttClient {
  const c = mqtt.connect(broker.url, workerOptions(clientId));
  opened.push(c);
  return c;
}

describe("a worker restarted on its persistent session (Mosquitto)", () => {
  it("made as documented (manualConnect, each subscriber awaited, then connect()), gets back all it held unsettled: QoS 1 and QoS 2, on two subscribers", async () => {
    const clientId = `posthorn-resume-${process.pid}-${Date.now().toString(36)}`;
    const subscriptions = [
      { topic: uniqueTopic("resume-q1"), qos: 1 },
      { topic: uniqueTopic("resume-q2"), qos: 2 },
    ] as const;

    // The first process: HELD on each subscriber pulled, none settled, then it dies.
    const first = worker(clientId);
    const subs: MqttSubscriber[] = [];
    for (const { topic, qos } of subscriptions) {
      subs.push(
        await within(
          mqttSubscriber(first, { topic, qos, formats: [json] }),
          3000,
          "mqttSubscriber() on a client not connected yet",
        ),
      );
    }
    first.connect();
    await Promise.all(subs.map((s) => s.ready));
    const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, connectTimeout: 5000 });
    opened.push(pub);
    for (const { topic, qos } of subscriptions) {
      const publisher = mqttPublisher(pub, { topic, qos });
      await Promise.all(Array.from({ length: HELD }, (_, n) => publisher.publish(job(n))));
    }
    for (const s of subs) await takeDeliveries(s[Symbol.asyncIterator](), HELD, 5000);
    const gone = new Promise<void>((r) => first.once("close", () => r()));
    (first as unknown as { stream: { destroy(): void } }).stream.destroy();
    await gone;
    await first.endAsync(true);

    // The restarted process, the same way: every held message comes again, DUP set.
    const second = worker(clientId);
    const again: MqttSubscriber[] = [];
    for (const { topic, qos } of subscriptions) {
      again.push(
        await within(
          mqttSubscriber(second, { topic, qos, formats: [json] }),
          3000,
          "mqttSubscriber() on a client not connected yet",
        ),
      );
    }
    second.connect();
    const back = await Promise.all(again.map((s) => collect(s, 2500)));
    for (const [i, deliveries] of back.entries()) {
      expect(
        deliveries.map((d) => d.event?.id),
        `QoS ${subscriptions[i]?.qos}: came back ${deliveries.length} of ${HELD}`,
      ).toEqual(Array.from({ length: HELD }, (_, n) => `job-${n}`));
      expect(deliveries.every((d) => d.message.metadata?.dup === true)).toBe(true);
    }
    await Promise.all(again.map((s) => s.ready));
    for (const s of again) await s.close();
  });

  it("ready resolves at the SUBACK once the application connects; a message published after it is delivered, and release() works", async () => {
    const topic = uniqueTopic("resume-ready");
    const c = worker(`posthorn-resume-ready-${process.pid}-${Date.now().toString(36)}`);
    const subscriber = await within(
      mqttSubscriber(c, { topic, qos: 1, formats: [json] }),
      3000,
      "mqttSubscriber() on a client not connected yet",
    );
    let settled = false;
    void subscriber.ready.then(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false);
    c.connect();
    await subscriber.ready;
    const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, connectTimeout: 5000 });
    opened.push(pub);
    await mqttPublisher(pub, { topic, qos: 1 }).publish(job(1));
    const it = subscriber[Symbol.asyncIterator]();
    const delivery = await nextDelivery(it, 5000);
    expect(delivery.event?.id).toBe("job-1");
    await delivery.release();
    const redelivered = await nextDelivery(it, 5000);
    expect(redelivered.event?.id).toBe("job-1");
    expect(redelivered.deliveryCount).toBe(2);
    await redelivered.accept();
    await subscriber.close();
  });

  it("when the first connection attempt fails, ready rejects and iteration fails with ConnectionFailed", async () => {
    // A port nothing listens on any more.
    const probe = createServer().listen(0, "127.0.0.1");
    await once(probe, "listening");
    const { port } = probe.address() as AddressInfo;
    await new Promise((r) => probe.close(r));
    const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      protocolVersion: 5,
      manualConnect: true,
      reconnectPeriod: 0,
      connectTimeout: 2000,
    });
    opened.push(c);
    const subscriber = await within(
      mqttSubscriber(c, { topic: uniqueTopic("resume-refused"), qos: 1, formats: [json] }),
      3000,
      "mqttSubscriber() on a client not connected yet",
    );
    c.on("error", () => undefined);
    c.connect();
    await expect(subscriber.ready).rejects.toMatchObject({ code: "ConnectionFailed" });
    await expect(subscriber[Symbol.asyncIterator]().next()).rejects.toMatchObject({
      code: "ConnectionFailed",
    });
    await subscriber.close();
  });

  it("close() before connect() resolves at once, and the filter is unsubscribed when the client connects", async () => {
    const topic = uniqueTopic("resume-closed");
    const c = worker(`posthorn-resume-closed-${process.pid}-${Date.now().toString(36)}`);
    const subscriber = await within(
      mqttSubscriber(c, { topic, qos: 1, formats: [json] }),
      3000,
      "mqttSubscriber() on a client not connected yet",
    );
    await within(subscriber.close(), 1000, "close() before connect()");
    const packets: string[] = [];
    c.on("packetreceive", (p) => packets.push(p.cmd));
    c.connect();
    // The queued SUBSCRIBE goes out, and the UNSUBSCRIBE after it.
    const deadline = Date.now() + 5000;
    while (!packets.includes("unsuback") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(packets).toContain("unsuback");
    const received: string[] = [];
    c.on("message", (t) => received.push(t));
    const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, connectTimeout: 5000 });
    opened.push(pub);
    await mqttPublisher(pub, { topic, qos: 1 }).publish(job(1));
    await new Promise((r) => setTimeout(r, 300));
    expect(received).toEqual([]);
  });
});
