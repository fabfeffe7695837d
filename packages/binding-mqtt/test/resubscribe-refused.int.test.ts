import { existsSync } from "node:fs";
import { join } from "node:path";
import { json } from "@posthorn/format-json";
import {
  inCi,
  type LaunchedBroker,
  nextDelivery,
  settledWithin,
  startMosquitto,
} from "@posthorn/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { clientsOf, closedAfterEach, job, uniqueTopic } from "./live-harness.js";

// mqtt.js subscribes again on its own after its automatic reconnects (a clean session, or one the
// broker no longer had), with no callback. When the broker refuses that SUBSCRIBE, the subscriber
// must end its iteration with the refusal rather than silently receive nothing. Against a
// Mosquitto this file starts with its dynamic security plugin: the test grants a subscription,
// then denies the filter at run time (addRoleACL on $CONTROL/dynamic-security/v1, which the
// anonymous role may use here), which makes Mosquitto disconnect the role's clients; mqtt.js
// reconnects and subscribes again, and Mosquitto answers 0x87 (MQTT 5) or 0x80 (3.1.1).

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

const CONTROL = "$CONTROL/dynamic-security/v1";
let broker: LaunchedBroker;
const opened = closedAfterEach();
const client = clientsOf(() => broker.url, opened);

describe.skipIf(MOSQUITTO === undefined || DYNSEC === undefined)(
  "mqtt.js's resubscription refused after a reconnect (Mosquitto, dynamic security plugin; skipped: not installed, never under CI)",
  () => {
    beforeAll(async () => {
      const dynsec = {
        defaultACLAccess: {
          publishClientSend: true,
          publishClientReceive: true,
          subscribe: true,
          unsubscribe: true,
        },
        clients: [],
        groups: [{ groupname: "anonymous", roles: [{ rolename: "open" }], clients: [] }],
        // The tests' own admin access: the anonymous role may send commands.
        roles: [
          {
            rolename: "open",
            acls: [{ acltype: "publishClientSend", topic: CONTROL, priority: 0, allow: true }],
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
      it(`at MQTT ${protocolVersion === 5 ? "5" : "3.1.1"}, iteration ends with PublishRejected, protocolCode ${reason}`, {
        timeout: 20_000,
      }, async () => {
        const gate = uniqueTopic(`gate-v${protocolVersion}`).replaceAll("/", "-");
        const topic = `${gate}/jobs`;
        const c = await client({ protocolVersion, reconnectPeriod: 100 });
        const subscriber = await mqttSubscriber(c, { topic, formats: [json] });
        opened.push(subscriber);
        const it = subscriber[Symbol.asyncIterator]();
        const pub = await client({ protocolVersion });
        const publisher = mqttPublisher(pub, { topic, mode: "structured", format: json });
        await publisher.publish(job(1));
        const first = await nextDelivery(it);
        expect(first.event?.id).toBe("job-1");
        await first.accept();

        // Mosquitto's dynamic security plugin disconnects the clients of a role whose ACLs change
        // (the subscriber among them): mqtt.js reconnects by itself and sends its SUBSCRIBE
        // again, which the broker now refuses.
        const suback = new Promise<number[]>((resolve) => {
          c.on("packetreceive", (p) => {
            if (p.cmd === "suback") resolve((p as unknown as { granted: number[] }).granted);
          });
        });
        const admin = await client({ protocolVersion: 5, reconnectPeriod: 0 });
        const command = {
          command: "addRoleACL",
          rolename: "open",
          acltype: "subscribePattern",
          topic: `${gate}/#`,
          priority: 0,
          allow: false,
        };
        await admin.publishAsync(CONTROL, JSON.stringify({ commands: [command] }), { qos: 0 });
        expect(await settledWithin(suback, 5000)).toEqual({ resolved: [reason] });

        expect(await settledWithin(it.next(), 3000)).toEqual({
          rejected: expect.objectContaining({
            name: "PosthornError",
            code: "PublishRejected",
            protocolCode: reason,
            retryable: false,
            message: expect.stringContaining(`subscribe to ${topic}: the broker refused`),
          }),
        });
      });
    }
  },
);
