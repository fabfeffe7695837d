import { type AddressInfo, createServer, type Socket, connect as tcpConnect } from "node:net";
import { json } from "@posthorn/format-json";
import { brokerUrl, nextDelivery, requireBroker } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { clientsOf, closedAfterEach, job, persistentSession, uniqueTopic } from "./live-harness.js";

// A broker slow to read its sockets, modelled by a TCP proxy in front of the Mosquitto on this
// machine: it passes the client's packets on one at a time, `delayMs` apart, and when the client's
// socket goes it drops those it had not passed on yet, as a broker loses the unread data of a
// socket that was reset. It can also lose or hold back packets on their way to the client.

const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;

const opened = closedAfterEach();

/** Splits a byte stream into whole MQTT packets (fixed header, Remaining Length, the rest). */
function packets(onPacket: (bytes: Buffer) => void): (chunk: Buffer) => void {
  let buffered = Buffer.alloc(0);
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      let i = 1;
      let length = 0;
      let factor = 1;
      let complete = false;
      while (i < buffered.length && i <= 4) {
        const byte = buffered[i++] as number;
        length += (byte & 0x7f) * factor;
        factor *= 128;
        if ((byte & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete || buffered.length < i + length) return;
      onPacket(buffered.subarray(0, i + length));
      buffered = buffered.subarray(i + length);
    }
  };
}

/**
 * The proxy: `url` to connect through; `dropped` counts packets lost with a client's socket.
 * Each packet the broker sends goes to `toClient`, which passes it on with `write` (or not).
 */
async function slowBroker(
  delayMs: number,
  toClient: (packet: Buffer, write: (packet: Buffer) => void) => void = (p, write) => write(p),
) {
  const target = new URL(url);
  const sockets = new Set<Socket>();
  const stats = { dropped: 0 };
  const server = createServer((down) => {
    const up = tcpConnect(Number(target.port || 1883), target.hostname);
    sockets.add(down).add(up);
    const waiting: Buffer[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const passOn = () => {
      timer = undefined;
      const next = waiting.shift();
      if (next) up.write(next);
      if (waiting.length > 0) timer = setTimeout(passOn, delayMs);
    };
    down.on(
      "data",
      packets((p) => {
        waiting.push(p);
        timer ??= setTimeout(passOn, delayMs);
      }),
    );
    up.on(
      "data",
      packets((p) => toClient(p, (bytes) => down.write(bytes))),
    );
    const close = () => {
      clearTimeout(timer);
      stats.dropped += waiting.splice(0).length;
      down.destroy();
      up.destroy();
    };
    down.on("close", close).on("error", close);
    up.on("close", close).on("error", close);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  opened.push({
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
  return { url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`, stats };
}

/** The MQTT packet type of PUBREL (the high nibble of its first byte). */
const PUBREL = 6;

describe.skipIf(!ok)(
  "release() against a broker slow to read (skipped: no broker outside CI)",
  () => {
    it("with mqtt.js's keepalive PINGREQ unanswered, release() waits for the PINGRESP to its own: the message accepted just before does not come again", {
      timeout: 20_000,
    }, async () => {
      const broker = await slowBroker(150);
      const topic = uniqueTopic("slow-release");
      const sub = await clientsOf(
        broker.url,
        opened,
      )({
        ...persistentSession(5, "slow"),
        keepalive: 1,
        reconnectPeriod: 100,
      });
      const subscriber = await mqttSubscriber(sub, { topic, formats: [json] });
      opened.push(subscriber);
      const publisher = mqttPublisher(await clientsOf(url, opened)({ protocolVersion: 5 }), {
        topic,
      });
      for (let i = 0; i < 2; i++) await publisher.publish(job(i));
      const it = subscriber[Symbol.asyncIterator]();
      const [a, b] = [await nextDelivery(it), await nextDelivery(it)];
      // mqtt.js's own keepalive PINGREQ goes out; its PINGRESP comes once the broker read it, before
      // it read the PUBACK and the PINGREQ release() sends behind it.
      await new Promise<void>((resolve) => {
        const onSend = (packet: { cmd: string }) => {
          if (packet.cmd !== "pingreq") return;
          sub.off("packetsend", onSend);
          resolve();
        };
        sub.on("packetsend", onSend);
      });
      await a.accept();
      await b.release();
      const again = await nextDelivery(it, 10_000);
      expect([again.event?.id, again.deliveryCount]).toEqual(["job-1", 2]);
      await again.accept();
      const more = await Promise.race([
        it.next().then((r) => (r.done ? "done" : r.value.event?.id)),
        new Promise((r) => setTimeout(() => r("nothing"), 1000)),
      ]);
      expect(more).toBe("nothing");
    });

    it("a QoS 2 message accepted whose PUBREL is lost with the connection is completed after the reconnect, not handed out again", {
      timeout: 20_000,
    }, async () => {
      // The first connection's PUBRELs never reach the client (packet type 6).
      let connection = 0;
      const broker = await slowBroker(0, (p, write) => {
        if (connection !== 1 || (p[0] as number) >> 4 !== PUBREL) write(p);
      });
      const topic = uniqueTopic("slow-pubrel");
      const options = { ...persistentSession(5, "slow"), reconnectPeriod: 100 };
      const sub = await clientsOf(broker.url, opened)(options);
      connection = 1;
      const subscriber = await mqttSubscriber(sub, { topic, qos: 2, formats: [json] });
      opened.push(subscriber);
      const publisher = mqttPublisher(await clientsOf(url, opened)({ protocolVersion: 5 }), {
        topic,
        qos: 2,
      });
      await publisher.publish(job(20));
      const it = subscriber[Symbol.asyncIterator]();
      const d = await nextDelivery(it);
      let pubrels = 0;
      sub.on("packetreceive", (p) => {
        if (p.cmd === "pubrel") pubrels++;
      });
      let pubcomps = 0;
      sub.on("packetsend", (p) => {
        if (p.cmd === "pubcomp") pubcomps++;
      });
      await d.accept();
      await new Promise((r) => setTimeout(r, 300));
      expect(pubrels).toBe(0);
      const back = new Promise((r) => sub.once("connect", r));
      connection = 2;
      (sub as unknown as { stream: { destroy(): void } }).stream.destroy();
      await back;
      const more = await Promise.race([
        it.next().then((r) => (r.done ? "done" : r.value.event?.id)),
        new Promise((r) => setTimeout(() => r("nothing"), 1000)),
      ]);
      expect(more).toBe("nothing");
      // The broker resent the PUBREL, and mqtt.js completed the exchange.
      expect([pubrels, pubcomps]).toEqual([1, 1]);
    });

    it("a QoS 2 message whose PUBLISH mqtt.js answered before the subscriber was made (a resumed session) is handed out at its PUBREL, and accept() completes it", {
      timeout: 20_000,
    }, async () => {
      const topic = uniqueTopic("slow-early");
      const options = { ...persistentSession(5, "slow"), reconnectPeriod: 100 };
      // The session subscribes, goes away, and a message waits for it.
      const first = await clientsOf(url, opened)(options);
      await first.subscribeAsync(topic, { qos: 2 });
      await first.endAsync();
      const publisher = mqttPublisher(await clientsOf(url, opened)({ protocolVersion: 5 }), {
        topic,
        qos: 2,
      });
      await publisher.publish(job(30));
      // The PUBREL is held back until the subscriber is there.
      const held: Array<() => void> = [];
      let holding = true;
      const broker = await slowBroker(0, (p, write) => {
        if (holding && (p[0] as number) >> 4 === PUBREL) held.push(() => write(p));
        else write(p);
      });
      const sub = await clientsOf(broker.url, opened)(options);
      const sent: string[] = [];
      sub.on("packetsend", (p) => {
        if (p.cmd === "pubcomp") sent.push(p.cmd);
      });
      while (held.length === 0) await new Promise((r) => setTimeout(r, 20));
      const subscriber = await mqttSubscriber(sub, { topic, qos: 2, formats: [json] });
      opened.push(subscriber);
      holding = false;
      for (const write of held.splice(0)) write();
      const d = await nextDelivery(subscriber[Symbol.asyncIterator]());
      expect(d.event?.id).toBe("job-30");
      // mqtt.js sent the PUBREC before the subscriber was made; the PUBCOMP waits for accept().
      expect(sent).toEqual([]);
      await d.accept();
      await new Promise((r) => setTimeout(r, 200));
      expect(sent).toEqual(["pubcomp"]);
    });
  },
);
