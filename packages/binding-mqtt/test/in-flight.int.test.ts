import { CloudEvent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { type LaunchedBroker, nextDelivery, startMosquitto } from "@posthorn/testkit";
import { type IClientOptions, type MqttClient, Store } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MqttSubscriber, mqttPublisher, mqttSubscriber } from "../src/index.js";
import { clientsOf, closedAfterEach, persistentSession, uniqueTopic } from "./live-harness.js";

// How many deliveries a QoS 1/2 subscriber holds unsettled, against a Mosquitto 2.0.11 this file
// starts with the default in-flight window (max_inflight_messages 20; the testkit's default is 0,
// no limit). That Mosquitto keeps the window only while nothing is acknowledged: each PUBACK for
// the oldest message in flight, which is what MQTT's ordered acknowledgements always send, let it
// move up to a whole window more from its queue into flight. A bare mqtt.js client acknowledging
// in order one message every 3 ms had 285 of 300 unacknowledged at once (receiveMaximum 5: 240).
// Before the subscriber kept a window of its own, it handed out 162-170 of the 200 below at once
// at MQTT 3.1.1 (MQTT 5: 140-160, QoS 2: 131-139, receiveMaximum 5: 115-122; two runs).

let broker: LaunchedBroker;
beforeAll(async () => {
  broker = await startMosquitto({ config: () => ["max_inflight_messages 20"] });
});
afterAll(async () => {
  await broker?.stop();
});

const opened = closedAfterEach();

const client = clientsOf(() => broker.url, opened);

function event(i: number): CloudEvent {
  return new CloudEvent({ specversion: "1.0", id: `${i}`, source: "/in-flight", type: "t" });
}

/**
 * The most QoS 1/2 messages mqtt.js processed and the client had not acknowledged at once: QoS 1
 * from PUBLISH to PUBACK, QoS 2 from PUBREL to PUBCOMP (mqtt.js answers the PUBREL itself; see
 * {@link watchQos2Held} for the PUBLISHes).
 */
function watchUnacknowledged(c: MqttClient): () => number {
  const open = new Set<number>();
  let most = 0;
  c.on("packetreceive", (packet) => {
    if ((packet.cmd === "publish" && packet.qos === 1) || packet.cmd === "pubrel") {
      open.add(packet.messageId as number);
      most = Math.max(most, open.size);
    }
  });
  c.on("packetsend", (packet) => {
    if (packet.cmd === "puback" || packet.cmd === "pubcomp")
      open.delete(packet.messageId as number);
  });
  return () => most;
}

/**
 * An mqtt.js `incomingStore` (the client option) and the most QoS 2 PUBLISHes the client held at
 * once: processed and not yet answered with a PUBREC, or kept in the store for the PUBREL. mqtt.js
 * used to answer each PUBLISH at once and keep it until the PUBREL, and the subscriber saw it only
 * then: 173-180 of 200 were held, against a window of 20.
 */
function watchQos2Held(): { incomingStore: Store; watch(c: MqttClient): () => number } {
  const stored = new Set<number>();
  const incomingStore = new Store();
  const put = incomingStore.put.bind(incomingStore);
  const del = incomingStore.del.bind(incomingStore);
  incomingStore.put = (packet, cb) => {
    stored.add(packet.messageId as number);
    return put(packet, cb);
  };
  incomingStore.del = (packet, cb) => {
    stored.delete(packet.messageId as number);
    return del(packet, cb);
  };
  return {
    incomingStore,
    watch(c) {
      const unanswered = new Set<number>();
      let most = 0;
      c.on("packetreceive", (packet) => {
        if (packet.cmd === "publish" && packet.qos === 2)
          unanswered.add(packet.messageId as number);
        most = Math.max(most, new Set([...unanswered, ...stored]).size);
      });
      c.on("packetsend", (packet) => {
        if (packet.cmd === "pubrec") unanswered.delete(packet.messageId as number);
      });
      return () => most;
    },
  };
}

const COUNT = 200;

/**
 * A slow consumer that pulls every delivery as soon as it comes and settles each a few ms later,
 * in a scrambled order. Returns the most it held unsettled at once and the ids in arrival order.
 */
async function consume(subscriber: MqttSubscriber): Promise<{ most: number; ids: number[] }> {
  const deliveries = subscriber[Symbol.asyncIterator]();
  const ids: number[] = [];
  const settling: Promise<void>[] = [];
  let inHand = 0;
  let most = 0;
  while (ids.length < COUNT) {
    const d = await nextDelivery(deliveries, 10_000);
    const i = ids.length;
    ids.push(Number(d.event?.id));
    inHand++;
    most = Math.max(most, inHand);
    settling.push(
      (async () => {
        await new Promise((r) => setTimeout(r, 2 + ((i * 7) % 5)));
        // Settled when accept() is called: a delivery it lets in may be pulled before it resolves.
        inHand--;
        await d.accept();
      })(),
    );
  }
  await Promise.all(settling);
  return { most, ids };
}

async function publishAll(topic: string, qos: 1 | 2): Promise<void> {
  // Structured JSON, which a 3.1.1 subscriber reads as an event too.
  const publisher = mqttPublisher(await client({ protocolVersion: 5 }), {
    topic,
    qos,
    mode: "structured",
    format: json,
  });
  await Promise.all(Array.from({ length: COUNT }, (_, i) => publisher.publish(event(i))));
}

const inOrder = Array.from({ length: COUNT }, (_, i) => i);

describe("deliveries in hand stay within the in-flight window while a slow consumer settles", () => {
  const cases: [string, IClientOptions, 1 | 2, number][] = [
    ["MQTT 3.1.1, QoS 1", { protocolVersion: 4 }, 1, 20],
    ["MQTT 5, QoS 1", { protocolVersion: 5 }, 1, 20],
    ["MQTT 5, QoS 2", { protocolVersion: 5 }, 2, 20],
    [
      "MQTT 5, QoS 1, receiveMaximum 5",
      { protocolVersion: 5, properties: { receiveMaximum: 5 } },
      1,
      5,
    ],
  ];
  for (const [name, options, qos, window] of cases) {
    it(`${name}: at most ${window} handed out and unsettled, every message once and in order`, {
      timeout: 30_000,
    }, async () => {
      const topic = uniqueTopic("in-flight");
      const qos2 = qos === 2 ? watchQos2Held() : undefined;
      const sub = await client(
        qos2 === undefined ? options : { ...options, incomingStore: qos2.incomingStore },
      );
      const unacknowledged = watchUnacknowledged(sub);
      const qos2Held = qos2?.watch(sub);
      const subscriber = await mqttSubscriber(sub, { topic, qos, formats: [json] });
      opened.push(subscriber);
      await publishAll(topic, qos);
      const { most, ids } = await consume(subscriber);
      expect(ids).toEqual(inOrder);
      // The whole window is used (200 were waiting), and never more.
      expect(most).toBe(window);
      // mqtt.js read one more, the one held back, and then nothing until an acknowledgement.
      expect(unacknowledged()).toBeLessThanOrEqual(window + 1);
      // At QoS 2 the window counts from the PUBLISH: none is kept beyond it until its PUBREL.
      if (qos2Held !== undefined) expect(qos2Held()).toBeLessThanOrEqual(window + 1);
    });
  }

  it("maxInFlight takes fewer than the broker's window", { timeout: 30_000 }, async () => {
    const topic = uniqueTopic("in-flight-max");
    const sub = await client({ protocolVersion: 4 });
    const subscriber = await mqttSubscriber(sub, { topic, formats: [json], maxInFlight: 3 });
    opened.push(subscriber);
    await publishAll(topic, 1);
    const { most, ids } = await consume(subscriber);
    expect(ids).toEqual(inOrder);
    expect(most).toBe(3);
  });

  it("release() with a message waiting past the window: the released one comes again first, none accepted comes again, none is lost or doubled", {
    timeout: 30_000,
  }, async () => {
    const topic = uniqueTopic("in-flight-release");
    const sub = await client(persistentSession(5, "in-flight"));
    const subscriber = await mqttSubscriber(sub, { topic, formats: [json] });
    opened.push(subscriber);
    await publishAll(topic, 1);
    const deliveries = subscriber[Symbol.asyncIterator]();
    const first = await nextDelivery(deliveries);
    expect(first.event?.id).toBe("0");
    const accepted = new Set<string>();
    // Accept 30 (more than a window), release the 31st: it comes again, later ones come once.
    for (let i = 1; i <= 30; i++) {
      const d = i === 1 ? first : await nextDelivery(deliveries);
      accepted.add(d.event?.id as string);
      await d.accept();
    }
    const released = await nextDelivery(deliveries);
    expect(released.event?.id).toBe("30");
    await released.release();
    const seen: string[] = [];
    while (!seen.includes(`${COUNT - 1}`)) {
      const d = await nextDelivery(deliveries, 10_000);
      // A copy from the dropped connection can still be handed out until its close event; as
      // documented, settling it fails, and it comes again.
      const settled = await d.accept().then(
        () => true,
        (err: unknown) => {
          expect(err).toMatchObject({ code: "SettlementFailed" });
          return false;
        },
      );
      if (settled) seen.push(d.event?.id as string);
    }
    expect(seen.filter((id) => accepted.has(id))).toEqual([]);
    expect(seen[0]).toBe("30");
    expect(seen).toHaveLength(COUNT - 30);
    expect(new Set(seen)).toEqual(
      new Set(Array.from({ length: COUNT - 30 }, (_, i) => `${i + 30}`)),
    );
  });

  it("a message past the window stops mqtt.js until close(), which leaves it unacknowledged and lets the client go on", {
    timeout: 30_000,
  }, async () => {
    const topic = uniqueTopic("in-flight-close");
    const sub = await client({ protocolVersion: 5 });
    const subscriber = await mqttSubscriber(sub, {
      topic,
      formats: [json],
      maxInFlight: 2,
      drainTimeoutMs: 100,
    });
    await publishAll(topic, 1);
    const deliveries = subscriber[Symbol.asyncIterator]();
    await nextDelivery(deliveries);
    await nextDelivery(deliveries);
    // The third is held back, and with it every packet after it: this publish's PUBACK too.
    let published = false;
    const publish = mqttPublisher(sub, { topic: `${topic}-side`, qos: 1 })
      .publish(event(1000))
      .then(() => {
        published = true;
      });
    await new Promise((r) => setTimeout(r, 300));
    expect(published).toBe(false);
    await subscriber.close();
    await publish;
    expect(published).toBe(true);
  });
});
