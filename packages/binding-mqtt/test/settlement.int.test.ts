import { isPosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { brokerUrl, nextDelivery, requireBroker } from "@posthorn/testkit";
import mqtt from "mqtt";
import { describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { clientsOf, closedAfterEach, job, persistentSession, uniqueTopic } from "./live-harness.js";

const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;

const opened = closedAfterEach();

const client = clientsOf(url, opened);

describe.skipIf(!ok)("settlement over Mosquitto (skipped: no broker outside CI)", () => {
  for (const version of [5, 4] as const) {
    const mode = version === 5 ? "binary" : "structured";
    describe(`MQTT ${version === 5 ? "5" : "3.1.1"}`, () => {
      it("accept() acknowledges: the message is not redelivered after a reconnect", async () => {
        const topic = uniqueTopic("accept");
        const sub = await client(persistentSession(version, "settle"));
        const subscriber = await mqttSubscriber(sub, { topic, formats: [json] });
        opened.push(subscriber);
        const pub = await client({ protocolVersion: version });
        const publisher = mqttPublisher(pub, { topic, mode, format: json });
        const it = subscriber[Symbol.asyncIterator]();
        await publisher.publish(job(1));
        const first = await nextDelivery(it);
        expect(first.event?.id).toBe("job-1");
        expect(first.deliveryCount).toBe(1);
        await first.accept();
        // accept() hands the PUBACK to the connection; let it reach the broker before the drop.
        await new Promise((r) => setTimeout(r, 200));
        // Drop the connection: the session resumes and resends only what was not acknowledged.
        const reconnected = new Promise((r) => sub.once("connect", r));
        (sub as unknown as { stream: { destroy(): void } }).stream.destroy();
        await reconnected;
        await publisher.publish(job(2));
        const second = await nextDelivery(it);
        expect(second.event?.id).toBe("job-2");
        await second.accept();
      });

      it("release() withholds the ack and the broker redelivers after the reconnect", async () => {
        const topic = uniqueTopic("release");
        const sub = await client(persistentSession(version, "settle"));
        const subscriber = await mqttSubscriber(sub, { topic, formats: [json] });
        opened.push(subscriber);
        expect(subscriber.capabilities.release).toBe("emulated");
        const pub = await client({ protocolVersion: version });
        await mqttPublisher(pub, { topic, mode, format: json }).publish(job(3));
        const it = subscriber[Symbol.asyncIterator]();
        const first = await nextDelivery(it);
        expect(first.event?.id).toBe("job-3");
        await first.release();
        const again = await nextDelivery(it);
        expect(again.event?.id).toBe("job-3");
        expect(again.deliveryCount).toBe(2);
        expect(again.message.metadata?.dup).toBe(true);
        await again.accept();
        await expect(again.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
      });

      it("reject() publishes the message unchanged to the dead-letter topic and acks it", async () => {
        const topic = uniqueTopic("reject");
        const deadLetterTopic = `${topic}/dead`;
        const dlqClient = await client({ protocolVersion: version });
        const dlq = await mqttSubscriber(dlqClient, { topic: deadLetterTopic, formats: [json] });
        opened.push(dlq);
        const sub = await client(persistentSession(version, "settle"));
        const subscriber = await mqttSubscriber(sub, { topic, formats: [json], deadLetterTopic });
        opened.push(subscriber);
        expect(subscriber.capabilities.reject).toBe("dead-letter-topic");
        const pub = await client({ protocolVersion: version });
        await mqttPublisher(pub, { topic, mode, format: json }).publish(job(4));
        const got = await nextDelivery(subscriber[Symbol.asyncIterator]());
        await got.reject("cannot process");
        const dead = await nextDelivery(dlq[Symbol.asyncIterator]());
        expect(dead.event?.id).toBe("job-4");
        expect(dead.event?.data).toEqual({ i: 4 });
        await dead.accept();
      });

      it("QoS 2 deliveries are acknowledged on accept()", async () => {
        const topic = uniqueTopic("qos2");
        const sub = await client({ protocolVersion: version });
        const subscriber = await mqttSubscriber(sub, { topic, qos: 2, formats: [json] });
        opened.push(subscriber);
        const pub = await client({ protocolVersion: version });
        const publisher = mqttPublisher(pub, { topic, qos: 2, mode, format: json });
        const it = subscriber[Symbol.asyncIterator]();
        for (const i of [5, 6]) {
          await publisher.publish(job(i));
          const d = await nextDelivery(it);
          expect(d.event?.id).toBe(`job-${i}`);
          expect(d.message.metadata?.qos).toBe(2);
          await d.accept();
        }
      });

      it("QoS 2 release(): the broker resends the PUBLISH (DUP set), and the one accepted before is not resent", async () => {
        const topic = uniqueTopic("qos2-release");
        const sub = await client(persistentSession(version, "settle"));
        const subscriber = await mqttSubscriber(sub, { topic, qos: 2, formats: [json] });
        opened.push(subscriber);
        const pub = await client({ protocolVersion: version });
        const publisher = mqttPublisher(pub, { topic, qos: 2, mode, format: json });
        for (const i of [10, 11]) await publisher.publish(job(i));
        const it = subscriber[Symbol.asyncIterator]();
        const [accepted, released] = [await nextDelivery(it), await nextDelivery(it)];
        await accepted.accept();
        await released.release();
        const again = await nextDelivery(it);
        expect([again.event?.id, again.deliveryCount, again.message.metadata?.dup]).toEqual([
          "job-11",
          2,
          true,
        ]);
        await again.accept();
        const more = await Promise.race([
          it.next().then((r) => (r.done ? "done" : r.value.event?.id)),
          new Promise((r) => setTimeout(() => r("nothing"), 500)),
        ]);
        expect(more).toBe("nothing");
      });
    });
  }

  it("declares what a clean session and no dead-letter topic cannot do, as NotSupported", async () => {
    const topic = uniqueTopic("caps");
    const sub = await client({ protocolVersion: 5 });
    const subscriber = await mqttSubscriber(sub, { topic, formats: [json] });
    opened.push(subscriber);
    expect(subscriber.capabilities).toMatchObject({
      release: "none",
      reject: "none",
      deliveryCount: "none",
    });
    const pub = await client({ protocolVersion: 5 });
    await mqttPublisher(pub, { topic }).publish(job(7));
    const d = await nextDelivery(subscriber[Symbol.asyncIterator]());
    for (const action of [() => d.release(), () => d.reject("x"), () => d.inProgress()]) {
      const err = await action().catch((e: unknown) => e);
      expect(isPosthornError(err, "NotSupported")).toBe(true);
    }
    // Each says what would make it work (it said "this transport cannot redeliver" and "has no
    // dead-letter path configured", naming nothing to set).
    await expect(d.release()).rejects.toMatchObject({
      message: expect.stringMatching(/clean: false.*sessionExpiryInterval.*reconnectPeriod/),
    });
    await expect(d.reject("x")).rejects.toMatchObject({
      message: expect.stringContaining("no deadLetterTopic"),
    });
    await d.accept();
  });

  it("delivers plain MQTT messages as Message envelopes", async () => {
    const topic = uniqueTopic("plain");
    const sub = await client({ protocolVersion: 5 });
    const subscriber = await mqttSubscriber(sub, { topic, formats: [json] });
    opened.push(subscriber);
    const pub = await client({ protocolVersion: 5 });
    await pub.publishAsync(topic, "21.5", {
      qos: 1,
      properties: { contentType: "text/plain", userProperties: { unit: ["C", "K"] } },
    });
    const d = await nextDelivery(subscriber[Symbol.asyncIterator]());
    expect(d.event).toBeUndefined();
    expect(d.error).toBeUndefined();
    expect(new TextDecoder().decode(d.message.body)).toBe("21.5");
    expect(d.message.contentType).toBe("text/plain");
    expect(d.message.properties.unit).toEqual(["C", "K"]);
    await d.accept();
  });

  it("gives an error, not a crash, for a message that claims to be an event but is broken", async () => {
    const topic = uniqueTopic("broken");
    const sub = await client({ protocolVersion: 5 });
    const subscriber = await mqttSubscriber(sub, { topic, formats: [json] });
    opened.push(subscriber);
    const pub = await client({ protocolVersion: 5 });
    await pub.publishAsync(topic, "{not json", {
      qos: 1,
      properties: { contentType: "application/cloudevents+json" },
    });
    const d = await nextDelivery(subscriber[Symbol.asyncIterator]());
    expect(d.event).toBeUndefined();
    expect(d.error?.code).toBe("MalformedInput");
    await d.accept();
  });

  it("applies json.maxDepth to binary-mode data: deeper is an error delivery, not an event", async () => {
    const topic = uniqueTopic("nested");
    const sub = await client({ protocolVersion: 5 });
    const subscriber = await mqttSubscriber(sub, { topic, formats: [json], json: { maxDepth: 4 } });
    opened.push(subscriber);
    const pub = await client({ protocolVersion: 5 });
    const attributes = { specversion: "1.0", id: "n-1", source: "/nested", type: "t" };
    for (const [id, depth] of [
      ["n-4", 4],
      ["n-5", 5],
    ] as const) {
      await pub.publishAsync(topic, `${"[".repeat(depth)}${"]".repeat(depth)}`, {
        qos: 1,
        properties: {
          contentType: "application/json",
          userProperties: { ...attributes, id },
        },
      });
    }
    const iterator = subscriber[Symbol.asyncIterator]();
    const within = await nextDelivery(iterator);
    expect(within.event?.id).toBe("n-4");
    await within.accept();
    const beyond = await nextDelivery(iterator);
    expect(beyond.event).toBeUndefined();
    expect(beyond.error?.code).toBe("MalformedInput");
    expect(beyond.error?.message).toContain("deeper than 4");
    await beyond.accept();
  });

  it("two shared-subscription consumers split 1,000 jobs, none lost", async () => {
    const topic = uniqueTopic("jobs");
    const group = `g${Date.now().toString(36)}`;
    const seen = new Map<string, number>();
    const counts: number[] = [];
    const consumers = await Promise.all(
      [0, 1].map(async () => {
        const c = await client({ protocolVersion: 5 });
        const s = await mqttSubscriber(c, { topic, group, formats: [json] });
        opened.push(s);
        return s;
      }),
    );
    expect(consumers[0]?.filter).toBe(`$share/${group}/${topic}`);
    const total = 1000;
    const done = new Promise<void>((resolve) => {
      consumers.forEach(async (s, index) => {
        counts[index] = 0;
        for await (const d of s) {
          const id = d.event?.id as string;
          seen.set(id, (seen.get(id) ?? 0) + 1);
          counts[index] = (counts[index] ?? 0) + 1;
          await d.accept();
          if (seen.size === total) resolve();
        }
      });
    });
    const pub = await client({ protocolVersion: 5 });
    const publisher = mqttPublisher(pub, { topic, qos: 1 });
    await Promise.all(Array.from({ length: total }, (_, i) => publisher.publish(job(i))));
    await done;
    expect(seen.size).toBe(total);
    expect(counts[0]).toBeGreaterThan(0);
    expect(counts[1]).toBeGreaterThan(0);
    expect((counts[0] ?? 0) + (counts[1] ?? 0)).toBeGreaterThanOrEqual(total);
  });

  it("close() withholds acknowledgements of unsettled deliveries so the session resends them", async () => {
    const topic = uniqueTopic("close");
    const options = persistentSession(5, "settle");
    const sub = await client(options);
    const subscriber = await mqttSubscriber(sub, { topic, formats: [json], drainTimeoutMs: 50 });
    const pub = await client({ protocolVersion: 5 });
    await mqttPublisher(pub, { topic }).publish(job(8));
    const d = await nextDelivery(subscriber[Symbol.asyncIterator]());
    expect(d.event?.id).toBe("job-8");
    await subscriber.close();
    // The unsettled message comes back when the same session resumes on a new connection.
    await sub.endAsync();
    // Listen before the CONNACK: the broker resends in-flight messages right after it.
    const again = mqtt.connect(url, options);
    opened.push(again);
    const back = new Promise<string>((resolve) =>
      again.once("message", (_t, payload, packet) => {
        void payload;
        resolve(String(packet.properties?.userProperties?.id));
      }),
    );
    expect(await back).toBe("job-8");
  });
});
