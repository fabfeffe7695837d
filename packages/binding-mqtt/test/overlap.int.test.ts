import { CloudEvent, type Delivery } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { brokerUrl, requireBroker } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { type MqttSubscriber, mqttPublisher, mqttSubscriber } from "../src/index.js";
import { closedAfterEach, connect, uniqueTopic } from "./live-harness.js";

// Two subscribers on one client whose filters overlap: Mosquitto sends an MQTT 5 client one copy
// per matching subscription, and both copies went to the subscriber made first, the other none.

const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;

const opened = closedAfterEach();

/** Every delivery's event id a subscriber gets within `ms`, each accepted. */
async function collect(subscriber: MqttSubscriber, ms: number): Promise<string[]> {
  const ids: string[] = [];
  const it = subscriber[Symbol.asyncIterator]();
  const deadline = Date.now() + ms;
  for (;;) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      it.next(),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now()));
      }),
    ]);
    clearTimeout(timer);
    if (r === undefined || r.done) return ids;
    const d: Delivery = r.value;
    ids.push(d.event?.id as string);
    await d.accept();
  }
}

describe.skipIf(!ok)("overlapping filters on one client (skipped: no broker outside CI)", () => {
  it("MQTT 5: each subscriber gets the copy sent for its own subscription", async () => {
    const base = uniqueTopic("overlap");
    const client = await connect(url, { protocolVersion: 5 });
    opened.push(client);
    const all = await mqttSubscriber(client, { topic: `${base}/#`, formats: [json] });
    const orders = await mqttSubscriber(client, { topic: `${base}/orders`, formats: [json] });
    opened.push(all, orders);
    const pub = await connect(url, { protocolVersion: 5 });
    opened.push(pub);
    const publisher = mqttPublisher(pub, { topic: `${base}/orders` });
    await publisher.publish(
      new CloudEvent({ specversion: "1.0", id: "o-1", source: "/t", type: "t", data: 1 }),
    );
    await publisher.publish(
      new CloudEvent({ specversion: "1.0", id: "p-1", source: "/t", type: "t", data: 1 }),
      { topic: `${base}/payments` },
    );
    const [fromAll, fromOrders] = await Promise.all([collect(all, 800), collect(orders, 800)]);
    expect(fromAll).toEqual(["o-1", "p-1"]);
    expect(fromOrders).toEqual(["o-1"]);
  });
});
