import { type AddressInfo, createServer, type Socket, connect as tcpConnect } from "node:net";
import { json } from "@posthorn/format-json";
import { brokerUrl, nextDelivery, requireBroker } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { clientsOf, closedAfterEach, job, persistentSession, uniqueTopic } from "./live-harness.js";

// A broker slow to read its sockets, modelled by a TCP proxy in front of the Mosquitto on this
// machine: it passes the client's packets on one at a time, `delayMs` apart, and when the client's
// socket goes it drops those it had not passed on yet, as a broker loses the unread data of a
// socket that was reset.

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

/** The proxy: `url` to connect through; `dropped` counts packets lost with a client's socket. */
async function slowBroker(delayMs: number) {
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
    up.on("data", (chunk: Buffer) => down.write(chunk));
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
  },
);
