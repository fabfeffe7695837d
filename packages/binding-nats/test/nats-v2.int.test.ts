import {
  jetStreamPublisher,
  jetStreamSubscriber,
  natsPublisher,
  natsSubscriber,
} from "@posthorn/binding-nats";
import { equivalent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { vector } from "@posthorn/testkit";
import { AckPolicy, connect, type NatsConnection } from "nats";
import { afterAll, describe, expect, it } from "vitest";
import { startTestNats, unique } from "./nats-server.js";

// The same publishers and subscribers over the `nats` v2 package, which the binding supports
// through the same structural types as the modular v3 clients.
const server = await startTestNats();
const nc: NatsConnection = await connect({ servers: server.url });

afterAll(async () => {
  await nc.close();
  await server.stop();
});

describe("with the nats v2 package", () => {
  it("publishes and receives on core NATS in binary and structured mode", async () => {
    const subject = unique("v2core");
    const subscriber = natsSubscriber(nc, { subject, formats: [json] });
    await nc.flush();
    const event = vector("typical").event;
    await natsPublisher(nc, { subject }).publish(event);
    await natsPublisher(nc, { subject, mode: "structured", format: json }).publish(event);
    const it = subscriber[Symbol.asyncIterator]();
    for (let i = 0; i < 2; i++) {
      const r = await it.next();
      expect(r.done).toBe(false);
      expect(equivalent(r.value?.event ?? vector("minimal").event, event)).toBe(true);
    }
    await subscriber.close();
  });

  it("publishes with acks and de-duplication, and settles on a durable consumer", async () => {
    const jsm = await nc.jetstreamManager();
    const stream = unique("V2").toUpperCase();
    const subject = `${stream.toLowerCase()}.jobs`;
    await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] });
    await jsm.consumers.add(stream, { durable_name: "w", ack_policy: AckPolicy.Explicit });
    const js = nc.jetstream();
    const publisher = jetStreamPublisher(js, { subject });
    const event = vector("typical").event;
    expect((await publisher.publishWithAck(event)).duplicate).toBe(false);
    expect((await publisher.publishWithAck(event)).duplicate).toBe(true);
    const subscriber = await jetStreamSubscriber(js, { stream, consumer: "w", formats: [json] });
    const it = subscriber[Symbol.asyncIterator]();
    const first = (await it.next()).value;
    expect(first?.deliveryCount).toBe(1);
    await first?.release({ delayMs: 100 });
    const second = (await it.next()).value;
    expect(second?.deliveryCount).toBe(2);
    await second?.accept();
    await subscriber.close();
    const info = await jsm.consumers.info(stream, "w");
    expect(info.num_ack_pending).toBe(0);
    await jsm.streams.delete(stream);
  });

  it("keeps the jobs pulled ahead in progress until handed out: each is handled once past the ack wait", async () => {
    const jsm = await nc.jetstreamManager();
    const stream = unique("V2AHEAD").toUpperCase();
    const subject = `${stream.toLowerCase()}.jobs`;
    await jsm.streams.add({ name: stream, subjects: [subject] });
    await jsm.consumers.add(stream, {
      durable_name: "w",
      ack_policy: AckPolicy.Explicit,
      ack_wait: 1_000_000_000,
    });
    try {
      const js = nc.jetstream();
      const publisher = jetStreamPublisher(js, { subject });
      for (const id of ["a", "b", "c"]) {
        await publisher.publish(vector("typical").event.cloneWith({ id }));
      }
      const subscriber = await jetStreamSubscriber(js, { stream, consumer: "w", formats: [json] });
      const it = subscriber[Symbol.asyncIterator]();
      const seen: string[] = [];
      // Handlers of 1.2 s, past the 1 s ack wait (inProgress() every 300 ms for the one in hand):
      // b and c wait in nats.js's buffer for 1.2 s and 2.4 s.
      for (;;) {
        const r = await Promise.race([
          it.next(),
          new Promise<undefined>((resolve) => setTimeout(resolve, 1500)),
        ]);
        if (r === undefined || r.done) break;
        const d = r.value;
        seen.push(`${d.event?.id}#${d.deliveryCount}`);
        const work = setInterval(() => void d.inProgress(), 300);
        await new Promise((resolve) => setTimeout(resolve, 1200));
        clearInterval(work);
        await d.accept();
      }
      await subscriber.close();
      expect(seen).toEqual(["a#1", "b#1", "c#1"]);
    } finally {
      await jsm.streams.delete(stream);
    }
  });

  it("close() with drainTimeoutMs waits for a delivery in hand, whose accept then reaches the server", async () => {
    const jsm = await nc.jetstreamManager();
    const stream = unique("V2DRAIN").toUpperCase();
    const subject = `${stream.toLowerCase()}.jobs`;
    await jsm.streams.add({ name: stream, subjects: [subject] });
    await jsm.consumers.add(stream, { durable_name: "w", ack_policy: AckPolicy.Explicit });
    try {
      const js = nc.jetstream();
      await jetStreamPublisher(js, { subject }).publish(vector("typical").event);
      const subscriber = await jetStreamSubscriber(js, {
        stream,
        consumer: "w",
        formats: [json],
        drainTimeoutMs: 5000,
      });
      const inHand = (await subscriber[Symbol.asyncIterator]().next()).value;
      const started = Date.now();
      const closing = subscriber.close();
      setTimeout(() => void inHand?.accept(), 200);
      await closing;
      const took = Date.now() - started;
      expect(took).toBeGreaterThanOrEqual(150);
      expect(took).toBeLessThan(3000);
      expect(inHand?.settled).toBe(true);
      // The server applies an ack after the API request that follows it may be answered.
      let info = await jsm.consumers.info(stream, "w");
      for (let i = 0; i < 40 && info.num_ack_pending > 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
        info = await jsm.consumers.info(stream, "w");
      }
      expect(info.num_ack_pending).toBe(0);
      expect(info.num_pending).toBe(0);
      expect(info.num_redelivered).toBe(0);
    } finally {
      await jsm.streams.delete(stream);
    }
  });
});
