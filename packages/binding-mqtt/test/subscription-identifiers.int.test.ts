import { type AddressInfo, createServer, type Socket, connect as tcpConnect } from "node:net";
import { json } from "@posthorn/format-json";
import { brokerUrl, nextDelivery, requireBroker, settledWithin } from "@posthorn/testkit";
import mqtt, { type MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { clientsOf, closedAfterEach, job, uniqueTopic } from "./live-harness.js";

// An MQTT 5 broker without Subscription Identifiers, modelled by a TCP proxy in front of the
// Mosquitto on this machine: it adds Subscription Identifier Available = 0 to the CONNACK (MQTT 5
// 3.2.2.3.12) and, as such a broker must (a Protocol Error, MQTT 5 3.8.2.1.2), closes the
// connection on a SUBSCRIBE that carries one.

const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;
const opened = closedAfterEach();
const client = clientsOf(url, opened);
const servers: Array<{ close(): void }> = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

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

/** Whether a SUBSCRIBE packet (one-byte Remaining Length) carries a Subscription Identifier. */
function carriesIdentifier(packet: Buffer): boolean {
  // Fixed header (2 bytes), packet identifier (2), Property Length (a short one: 1 byte).
  const propertiesLength = packet[4] as number;
  const properties = packet.subarray(5, 5 + propertiesLength);
  return properties.includes(0x0b);
}

/** The CONNACK with Subscription Identifier Available = 0 added (short packets only). */
function withoutIdentifiers(connack: Buffer): Buffer {
  // 0x20, Remaining Length, flags, reason code, Property Length, properties.
  const out = Buffer.concat([connack, Buffer.from([0x29, 0x00])]);
  out[1] = (connack[1] as number) + 2;
  out[4] = (connack[4] as number) + 2;
  return out;
}

async function brokerWithoutIdentifiers() {
  const target = new URL(url);
  const stats = { refused: 0, connections: 0 };
  const sockets = new Set<Socket>();
  const server = createServer((down) => {
    stats.connections++;
    const up = tcpConnect(Number(target.port || 1883), target.hostname);
    sockets.add(down).add(up);
    const close = () => {
      down.destroy();
      up.destroy();
    };
    down.on(
      "data",
      packets((p) => {
        if ((p[0] as number) >> 4 === 8 && carriesIdentifier(p)) {
          stats.refused++;
          close();
          return;
        }
        up.write(p);
      }),
    );
    up.on(
      "data",
      packets((p) => down.write((p[0] as number) >> 4 === 2 ? withoutIdentifiers(p) : p)),
    );
    down.on("close", close);
    up.on("close", close);
    down.on("error", close);
    up.on("error", close);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  servers.push({
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  });
  const { port } = server.address() as AddressInfo;
  return { url: `mqtt://127.0.0.1:${port}`, stats };
}

describe.skipIf(!ok)("a broker without Subscription Identifiers (skipped: no broker)", () => {
  for (const how of ["manualConnect", "connecting", "connected"] as const) {
    it(`a subscriber made on a ${how} client subscribes without one, and receives`, {
      timeout: 20_000,
    }, async () => {
      const broker = await brokerWithoutIdentifiers();
      const topic = uniqueTopic(`no-sub-ids-${how}`);
      const options = { protocolVersion: 5, reconnectPeriod: 0 } as const;
      const c: MqttClient =
        how === "connected"
          ? await mqtt.connectAsync(broker.url, options)
          : mqtt.connect(broker.url, { ...options, manualConnect: how === "manualConnect" });
      opened.push(c);
      let closes = 0;
      c.on("close", () => closes++);
      const subscriber = await mqttSubscriber(c, { topic, formats: [json] });
      opened.push(subscriber);
      if (how === "manualConnect") c.connect();
      expect(await settledWithin(subscriber.ready, 5000)).toEqual({ resolved: undefined });
      await mqttPublisher(await client({ protocolVersion: 5 }), { topic }).publish(job(1));
      const d = await nextDelivery(subscriber[Symbol.asyncIterator](), 5000);
      expect(d.event?.id).toBe("job-1");
      await d.accept();
      expect(broker.stats.refused).toBe(0);
      expect(closes).toBe(0);
    });
  }
});
