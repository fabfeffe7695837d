import { PosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { brokerUrl, requireBroker, settledWithin, shutdownEvent } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { mqttPublisher, mqttSubscriber } from "../src/index.js";
import { clientsOf, closedAfterEach, uniqueTopic } from "./live-harness.js";

// Topics no PUBLISH may carry, against the Mosquitto of MQTT_URL. Mosquitto 2.0.11 closed the
// connection on each (the empty topic: left unanswered), mqtt.js resent the QoS 1 PUBLISH after
// every reconnect, and the publish never settled while the client reconnected in a loop.
const ok = await requireBroker("mqtt");
const url = brokerUrl("mqtt") as string;
const opened = closedAfterEach();
const client = clientsOf(url, opened);

const BAD_TOPICS: ReadonlyArray<readonly [string, string]> = [
  ["a multi-level wildcard", "orders/#"],
  ["a single-level wildcard", "orders/+/eu"],
  ["empty", ""],
  ["U+0000", "orders\u0000eu"],
  ["a control character", "orders\u0001eu"],
  ["a noncharacter", "orders\uFFFEeu"],
  ["a lone surrogate (mqtt.js sent U+FFFD: another topic)", "orders\uD800eu"],
  ["over 65,535 UTF-8 bytes", "t".repeat(65_536)],
];

const refusal = (attribute: string) => ({ name: "PosthornError", code: "NotSupported", attribute });

describe.skipIf(!ok)("topic names a PUBLISH cannot carry (skipped: no broker outside CI)", () => {
  it.each(BAD_TOPICS)(
    "mqttPublisher refuses a topic that is %s with NotSupported",
    async (_, topic) => {
      const c = await client({ protocolVersion: 5 });
      expect(() => mqttPublisher(c, { topic, qos: 1 })).toThrow(PosthornError);
      expect(() => mqttPublisher(c, { topic, qos: 1 })).toThrow(
        expect.objectContaining(refusal("topic")),
      );
    },
  );

  for (const protocolVersion of [5, 4] as const) {
    it(`MQTT ${protocolVersion === 5 ? "5" : "3.1.1"}: a per-call topic no PUBLISH may carry rejects at once, nothing sent, and the client stays connected`, {
      timeout: 20_000,
    }, async () => {
      const c = await client({ protocolVersion });
      let closes = 0;
      c.on("close", () => closes++);
      const good = uniqueTopic("topic-names");
      const publisher = mqttPublisher(c, { topic: good, qos: 1, mode: "structured", format: json });
      for (const [what, topic] of BAD_TOPICS) {
        for (const qos of [0, 1] as const) {
          const outcome = await settledWithin(
            publisher.publish(shutdownEvent("mqtt", 1), { topic, qos }),
            1000,
          );
          expect({ what, qos, outcome }).toEqual({
            what,
            qos,
            outcome: { rejected: expect.objectContaining(refusal("topic")) },
          });
        }
      }
      // Nothing went out, so the broker had nothing to close the connection over.
      expect(await settledWithin(publisher.publish(shutdownEvent("mqtt", 2)), 5000)).toEqual({
        resolved: undefined,
      });
      expect(closes).toBe(0);
      await publisher.close();
    });
  }

  it("mqttSubscriber refuses a deadLetterTopic no PUBLISH may carry before subscribing", async () => {
    const c = await client({ protocolVersion: 5 });
    for (const [what, deadLetterTopic] of BAD_TOPICS) {
      const outcome = await settledWithin(
        mqttSubscriber(c, { topic: uniqueTopic("dl-topic"), formats: [json], deadLetterTopic }),
        2000,
      );
      expect({ what, outcome }).toEqual({
        what,
        outcome: { rejected: expect.objectContaining(refusal("deadLetterTopic")) },
      });
    }
  });
});
