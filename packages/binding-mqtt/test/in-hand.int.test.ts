import { type AddressInfo, createServer } from "node:net";
import type { Delivery } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { brokerUrl, nextDelivery, requireBroker } from "@posthorn/testkit";
import { Aedes } from "aedes";
import mqtt, { type IClientOptions } from "mqtt";
import mqttPacket from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import {
  clientsOf,
  closedAfterEach,
  connect,
  job,
  persistentSession,
  uniqueTopic,
} from "./live-harness.js";

// Several QoS 1/2 deliveries in hand on one connection: mqtt.js handles incoming packets one at a
// time, and the subscriber used to hold that loop until accept(), so a loop that pulled a second
// delivery before settling the first waited forever (and so did a publish's PUBACK on that client).

const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;

const opened = closedAfterEach();

const client = clientsOf(url, opened);

async function within<T>(what: string, p: Promise<T>, ms = 3000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** What the broker resends to a session resumed on a new connection, within `ms`. */
async function resent(options: IClientOptions, ms = 1000): Promise<string[]> {
  const again = mqtt.connect(url, options);
  opened.push(again);
  const ids: string[] = [];
  again.on("message", (_t, _p, packet) => ids.push(String(packet.properties?.userProperties?.id)));
  await new Promise((r) => setTimeout(r, ms));
  return ids;
}

describe.skipIf(!ok)("several deliveries in hand (skipped: no broker outside CI)", () => {
  for (const version of [5, 4] as const) {
    for (const qos of [1, 2] as const) {
      it(`MQTT ${version === 5 ? "5" : "3.1.1"}, QoS ${qos}: a loop that collects two deliveries before accepting either gets both`, async () => {
        const topic = uniqueTopic("collect");
        const sub = await client({ protocolVersion: version });
        const subscriber = await mqttSubscriber(sub, { topic, qos, formats: [json] });
        opened.push(subscriber);
        const pub = await client({ protocolVersion: version });
        const publisher = mqttPublisher(pub, { topic, qos, mode: "structured", format: json });
        for (let i = 0; i < 4; i++) await publisher.publish(job(i));
        const it = subscriber[Symbol.asyncIterator]();
        const ids: string[] = [];
        for (let round = 0; round < 2; round++) {
          const batch = [await nextDelivery(it), await nextDelivery(it)];
          for (const d of batch) {
            ids.push(d.event?.id as string);
            await d.accept();
          }
        }
        expect(ids).toEqual(["job-0", "job-1", "job-2", "job-3"]);
      });
    }
  }

  it("a publish on the subscribing client resolves while a delivery is in hand", async () => {
    const topic = uniqueTopic("same-client");
    const sub = await client({ protocolVersion: 5 });
    const subscriber = await mqttSubscriber(sub, { topic, formats: [json] });
    opened.push(subscriber);
    const publisher = mqttPublisher(sub, { topic: `${topic}/out` });
    await mqttPublisher(await client({ protocolVersion: 5 }), { topic }).publish(job(1));
    const d = await nextDelivery(subscriber[Symbol.asyncIterator]());
    // Its PUBACK comes in behind the held delivery: mqtt.js must still read it.
    await within("publish on the same client", publisher.publish(job(2)));
    await d.accept();
  });

  it("accepted out of order, every one is acknowledged; the unsettled one comes back", async () => {
    const topic = uniqueTopic("order");
    const options = persistentSession(5, "hand");
    const sub = await client(options);
    const subscriber = await mqttSubscriber(sub, { topic, formats: [json], drainTimeoutMs: 0 });
    const pub = await client({ protocolVersion: 5 });
    const publisher = mqttPublisher(pub, { topic });
    for (let i = 0; i < 3; i++) await publisher.publish(job(i));
    const it = subscriber[Symbol.asyncIterator]();
    const [a, b, c] = [await nextDelivery(it), await nextDelivery(it), await nextDelivery(it)];
    await c.accept();
    await a.accept();
    // b stays unsettled: close() lets it go without an acknowledgement.
    await subscriber.close();
    await new Promise((r) => setTimeout(r, 200));
    await sub.endAsync();
    expect(b.event?.id).toBe("job-1");
    expect(await resent(options)).toEqual(["job-1"]);
  });
});

describe.skipIf(!ok)("release() with several in hand (skipped: no broker outside CI)", () => {
  /**
   * `count` jobs published to a subscriber on a persistent session that reconnects by itself (as
   * release() needs), and the iterator they come from.
   */
  async function jobsWaiting(label: string, count: number) {
    const topic = uniqueTopic(label);
    const sub = await client({ ...persistentSession(5, "hand"), reconnectPeriod: 100 });
    const subscriber = await mqttSubscriber(sub, { topic, formats: [json] });
    opened.push(subscriber);
    const publisher = mqttPublisher(await client({ protocolVersion: 5 }), { topic });
    for (let i = 0; i < count; i++) await publisher.publish(job(i));
    return subscriber[Symbol.asyncIterator]();
  }

  /**
   * Three jobs in hand, in order, on a persistent session that reconnects by itself (as release()
   * needs), and the iterator they came from.
   */
  async function threeInHand(label: string) {
    const it = await jobsWaiting(label, 3);
    const inHand = [
      await nextDelivery(it),
      await nextDelivery(it),
      await nextDelivery(it),
    ] as const;
    return { it, inHand };
  }

  it("the others of the dropped connection come again, and settling their old copies is SettlementFailed", async () => {
    const {
      it,
      inHand: [a, b, c],
    } = await threeInHand("release-several");
    await c.accept(); // waits behind b, so it is not sent before the drop
    await a.release();
    // b's connection is gone: its acknowledgement could only be written to a destroyed socket.
    await expect(b.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
    const again = [await nextDelivery(it), await nextDelivery(it), await nextDelivery(it)];
    expect(again.map((d) => d.event?.id)).toEqual(["job-0", "job-1", "job-2"]);
    expect(again.map((d) => d.deliveryCount)).toEqual([2, 1, 1]);
    for (const d of again) await d.accept();
  });

  it("deliveries of the dropped connection not yet pulled are not handed out: what comes next is the resent copies, each of which can be accepted", async () => {
    const it = await jobsWaiting("release-unpulled", 4);
    const first = await nextDelivery(it);
    // job-1 to job-3 arrive and wait in the subscriber, unpulled, on the connection release() drops.
    await new Promise((r) => setTimeout(r, 300));
    await first.release();
    const next: Delivery[] = [];
    for (let i = 0; i < 4; i++) {
      const d = await within(`delivery ${i} after the release`, nextDelivery(it));
      next.push(d);
      // The old copies could not be acknowledged: SettlementFailed, and each came again later.
      await d.accept();
    }
    expect(next.map((d) => d.event?.id)).toEqual(["job-0", "job-1", "job-2", "job-3"]);
    expect(next[0]?.deliveryCount).toBe(2);
    await expect(within("a fifth delivery", it.next(), 500)).rejects.toThrow(/nothing within/);
  });

  it("without a persistent session, deliveries not yet pulled when the connection is lost are still handed out: nothing would resend them", async () => {
    const topic = uniqueTopic("lost-clean");
    const sub = await client({ protocolVersion: 5, reconnectPeriod: 100 });
    const subscriber = await mqttSubscriber(sub, { topic, formats: [json] });
    opened.push(subscriber);
    const publisher = mqttPublisher(await client({ protocolVersion: 5 }), { topic });
    for (let i = 0; i < 3; i++) await publisher.publish(job(i));
    const it = subscriber[Symbol.asyncIterator]();
    const first = await nextDelivery(it);
    await new Promise((r) => setTimeout(r, 300));
    const gone = new Promise<void>((r) => sub.once("close", () => r()));
    (sub as unknown as { stream: { destroy(): void } }).stream.destroy();
    await gone;
    const rest = [await within("job-1", nextDelivery(it)), await within("job-2", nextDelivery(it))];
    expect([first, ...rest].map((d) => d.event?.id)).toEqual(["job-0", "job-1", "job-2"]);
  });

  it("acknowledgements sent just before release() reach the broker: the accepted ones do not come again", async () => {
    const {
      it,
      inHand: [a, b, c],
    } = await threeInHand("release-after-accepts");
    // All three in hand, so nothing waits for the network between these: the two PUBACKs and the
    // dropped connection happen in one tick.
    await a.accept();
    await b.accept();
    await c.release();
    const again = await nextDelivery(it);
    expect([again.event?.id, again.deliveryCount]).toEqual(["job-2", 2]);
    await again.accept();
    await expect(within("a fourth delivery", it.next(), 500)).rejects.toThrow(/nothing within/);
  });
});

// Mosquitto does not show the order acknowledgements arrive in: here a real broker (aedes, in
// process) gets the subscriber's connection, and the test reads the PUBACKs it sends.
it("acknowledgements go out in the order the messages arrived, whatever order they are settled in", async () => {
  const broker = await Aedes.createBroker();
  const pubacks: number[] = [];
  const server = createServer((socket) => {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on("packet", (packet) => {
      if (packet.cmd === "puback") pubacks.push(packet.messageId as number);
    });
    socket.on("data", (chunk: Buffer) => parser.parse(chunk));
    broker.handle(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const brokerUrl = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const sub = await connect(brokerUrl, { protocolVersion: 4 });
    opened.push(sub);
    const subscriber = await mqttSubscriber(sub, { topic: "order", formats: [json] });
    opened.push(subscriber);
    const pub = await connect(brokerUrl, { protocolVersion: 4 });
    opened.push(pub);
    const publisher = mqttPublisher(pub, { topic: "order", mode: "structured", format: json });
    for (let i = 0; i < 3; i++) await publisher.publish(job(i));
    const it = subscriber[Symbol.asyncIterator]();
    const [a, b, c] = [await nextDelivery(it), await nextDelivery(it), await nextDelivery(it)];
    // The publisher's client sends no PUBACK; every one seen is the subscriber's.
    const id = (d: Delivery) => d.message.metadata?.messageId as number;
    const settle = async (d: Delivery) => {
      await d.accept();
      await new Promise((r) => setTimeout(r, 100));
      return [...pubacks];
    };
    expect(await settle(c)).toEqual([]);
    expect(await settle(a)).toEqual([id(a)]);
    expect(await settle(b)).toEqual([id(a), id(b), id(c)]);
  } finally {
    for (const x of opened.splice(0).reverse()) {
      if ("endAsync" in x) await x.endAsync(true);
      else await x.close();
    }
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
