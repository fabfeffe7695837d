import { existsSync } from "node:fs";
import { join } from "node:path";
import { json } from "@posthorn/format-json";
import { inCi, type LaunchedBroker, settledWithin, startMosquitto } from "@posthorn/testkit";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type MqttSubscriber, mqttPublisher, mqttSubscriber } from "../src/index.js";
import { connect, uniqueTopic } from "./live-harness.js";

// A subscription the broker refuses (a SUBACK failure code), against Mosquitto processes this
// file starts on free ports with access control of their own.
//
// Mosquitto's acl_file cannot refuse a subscription: its check grants every SUBSCRIBE ("FIXME -
// implement ACL subscription strings" in Mosquitto's source, 2.0.x included) and applies the
// rules when it delivers. Its dynamic security plugin checks subscriptions and answers a denied
// one with reason 0x87 (Not authorized) at MQTT 5 and 0x80 at MQTT 3.1.1.

const MOSQUITTO = ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"]
  .map((d) => join(d, "mosquitto"))
  .find((p) => existsSync(p));
const DYNSEC = [
  "/usr/lib/x86_64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/usr/lib",
  "/usr/local/lib",
  "/usr/lib/mosquitto",
]
  .map((d) => join(d, "mosquitto_dynamic_security.so"))
  .find((p) => existsSync(p));
if ((MOSQUITTO === undefined || DYNSEC === undefined) && inCi()) {
  throw new Error("mosquitto and its dynamic security plugin must be installed under CI=true");
}

const clients: MqttClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined);
});

const event = (id: string) => ({ specversion: "1.0", id, source: "/acl", type: "t.acl" });

describe.skipIf(MOSQUITTO === undefined || DYNSEC === undefined)(
  "MQTT subscription refused by the broker (Mosquitto, dynamic security plugin; skipped: not installed, never under CI)",
  () => {
    let broker: LaunchedBroker;
    beforeAll(async () => {
      // Anonymous clients may subscribe to anything but denied/#.
      const dynsec = {
        defaultACLAccess: {
          publishClientSend: true,
          publishClientReceive: true,
          subscribe: true,
          unsubscribe: true,
        },
        clients: [],
        groups: [{ groupname: "anonymous", roles: [{ rolename: "limited" }], clients: [] }],
        roles: [
          {
            rolename: "limited",
            acls: [{ acltype: "subscribePattern", topic: "denied/#", priority: 0, allow: false }],
          },
        ],
        anonymousGroup: "anonymous",
      };
      broker = await startMosquitto({
        config: (dir) => [`plugin ${DYNSEC}`, `plugin_opt_config_file ${join(dir, "dynsec.json")}`],
        files: { "dynsec.json": JSON.stringify(dynsec) },
      });
    });
    afterAll(async () => {
      await broker?.stop();
    });

    for (const [protocolVersion, reason] of [
      [5, 0x87],
      [4, 0x80],
    ] as const) {
      it(`at MQTT ${protocolVersion === 5 ? "5" : "3.1.1"}, mqttSubscriber() rejects with PublishRejected, protocolCode ${reason}, not retryable; the client goes on`, async () => {
        const client = await connect(broker.url, { protocolVersion });
        clients.push(client);
        const topic = `denied/${uniqueTopic("suback")}`;
        const refused = await mqttSubscriber(client, { topic, formats: [json] }).then(
          () => "resolved",
          (err: unknown) => err,
        );
        expect(refused).toMatchObject({
          name: "PosthornError",
          code: "PublishRejected",
          protocolCode: reason,
          retryable: false,
          message: expect.stringContaining(`subscribe to ${topic}: the broker refused`),
        });
        // The refusal ended only that subscription: another on the same client works.
        const allowed = uniqueTopic("allowed");
        const subscriber = await mqttSubscriber(client, { topic: allowed, formats: [json] });
        const pub = await connect(broker.url, { protocolVersion });
        clients.push(pub);
        await mqttPublisher(pub, { topic: allowed, mode: "structured", format: json }).publish(
          event("ok"),
        );
        const it = subscriber[Symbol.asyncIterator]();
        const got = await it.next();
        expect(got.done ? undefined : got.value.event?.id).toBe("ok");
        await got.value?.accept();
        await subscriber.close();
      });
    }

    it("made before connect() on a manualConnect client, mqttSubscriber() resolves; after connect() its ready rejects with PublishRejected and its iteration fails the same", async () => {
      const client = mqtt.connect(broker.url, {
        protocolVersion: 5,
        manualConnect: true,
        connectTimeout: 5000,
      });
      clients.push(client);
      const topic = `denied/${uniqueTopic("suback-manual")}`;
      const made = await settledWithin(mqttSubscriber(client, { topic, formats: [json] }), 3000);
      expect(made).toHaveProperty("resolved");
      const subscriber = (made as { resolved: MqttSubscriber }).resolved;
      client.connect();
      const refusal = {
        name: "PosthornError",
        code: "PublishRejected",
        protocolCode: 0x87,
        message: expect.stringContaining(`subscribe to ${topic}: the broker refused`),
      };
      await expect(subscriber.ready).rejects.toMatchObject(refusal);
      await expect(subscriber[Symbol.asyncIterator]().next()).rejects.toMatchObject(refusal);
      await subscriber.close();
    });
  },
);

describe.skipIf(MOSQUITTO === undefined)(
  "MQTT subscription to a topic Mosquitto's acl_file denies: not refused, the messages withheld (skipped: mosquitto not installed, never under CI)",
  () => {
    let broker: LaunchedBroker;
    beforeAll(async () => {
      // Anonymous clients may publish to denied/# but not read it.
      broker = await startMosquitto({
        config: (dir) => [`acl_file ${join(dir, "acl")}`],
        files: { acl: "topic readwrite allowed/#\ntopic write denied/#\n" },
      });
    });
    afterAll(async () => {
      await broker?.stop();
    });

    it("mqttSubscriber() resolves (the SUBACK grants it), and messages on the denied topic never reach it", async () => {
      const client = await connect(broker.url, { protocolVersion: 5 });
      clients.push(client);
      const leaf = uniqueTopic("acl-file");
      // One filter over both: denied/<leaf> and allowed/<leaf>.
      const subscriber = await mqttSubscriber(client, { topic: `+/${leaf}`, formats: [json] });
      const pub = await connect(broker.url, { protocolVersion: 5 });
      clients.push(pub);
      // Mosquitto takes the first publish (write is allowed) and delivers it to nobody; the
      // second, sent after it on the same connection, arrives.
      await mqttPublisher(pub, { topic: `denied/${leaf}`, qos: 1 }).publish(event("withheld"));
      await mqttPublisher(pub, { topic: `allowed/${leaf}`, qos: 1 }).publish(event("delivered"));
      const it = subscriber[Symbol.asyncIterator]();
      const first = await it.next();
      expect(first.done ? undefined : first.value.event?.id).toBe("delivered");
      await first.value?.accept();
      expect(await settledWithin(it.next(), 500)).toBe("pending");
      await subscriber.close();
    });
  },
);
