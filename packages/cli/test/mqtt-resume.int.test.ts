import { CloudEvent } from "@posthorn/core";
import { brokerUrl, nextDelivery, requireBroker } from "@posthorn/testkit";
import { createPublisher, createSubscriber } from "posthorn";
import { describe, expect, it } from "vitest";
import { unique } from "./run-cli.js";

// A named MQTT client keeps its session: a delivery left unsettled when the
// subscriber closed, comes back to the next subscriber on the same client id. The driver awaited
// the connection before making the subscriber, so mqtt.js took the message the broker resent
// right after CONNACK and acknowledged it: lost for good.
const ok = await requireBroker("mqtt");
const base = (brokerUrl("mqtt") ?? "").replace(/\/+$/, "");

describe.skipIf(!ok)(
  "an mqtt:// subscriber resuming its session (skipped: no broker outside CI)",
  () => {
    it("gets the message the last one left unsettled, resent after CONNACK", {
      timeout: 30_000,
    }, async () => {
      const topic = unique("posthorn-cli-resume");
      const client = unique("posthorn-cli-resume-client");
      const url = `${base}/${topic}?version=5&qos=1&clientid=${client}&clean=false`;
      const first = await createSubscriber(url);
      const publisher = await createPublisher(`${base}/${topic}?version=5&qos=1`);
      const event = new CloudEvent({
        specversion: "1.0",
        id: "resumed",
        source: "/cli",
        type: "t",
      });
      await publisher.publish(event);
      await publisher.close();
      const delivery = await nextDelivery(first[Symbol.asyncIterator](), 10_000);
      expect(delivery.event?.id).toBe("resumed");
      await first.close();

      const second = await createSubscriber(url);
      try {
        const again = await nextDelivery(second[Symbol.asyncIterator](), 10_000);
        expect(again.event?.id).toBe("resumed");
        expect(again.deliveryCount).toBeGreaterThanOrEqual(1);
        await again.accept();
      } finally {
        await second.close();
        // The session is not needed past this test: a clean connect on the same id ends it.
        await (
          await createSubscriber(`${base}/${topic}?version=5&clientid=${client}&clean=true`)
        ).close();
      }
    });
  },
);
