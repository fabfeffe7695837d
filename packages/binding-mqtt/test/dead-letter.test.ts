import {
  CloudEvent,
  DEAD_LETTER_ORIGINAL_TOPIC,
  DEAD_LETTER_REASON,
  differences,
  isPosthornError,
} from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { describe, expect, it } from "vitest";
import { fromMqttMessage, type MqttMessage, toMqttMessage, toPlainMessage } from "../src/index.js";

const event = new CloudEvent({
  specversion: "1.0",
  id: "dl-1",
  source: "/tests",
  type: "com.example.job",
  subject: "order 7",
  tenant: "acme",
  data: { n: 7 },
});

/** The message as reject() writes its dead-letter copy at MQTT 5: two user properties added. */
function deadLetterCopy(message: MqttMessage): MqttMessage {
  return {
    ...message,
    userProperties: {
      ...message.userProperties,
      [DEAD_LETTER_ORIGINAL_TOPIC]: "orders/eu",
      [DEAD_LETTER_REASON]: "cannot process",
    },
  };
}

describe("dead-letter user properties", () => {
  it("keep the names the Kafka binding writes as headers", () => {
    expect(DEAD_LETTER_REASON).toBe("posthorn-dead-letter-reason");
    expect(DEAD_LETTER_ORIGINAL_TOPIC).toBe("posthorn-original-topic");
  });

  it("are skipped by the binary-mode decoder, so a dead-letter copy reads as the same event", () => {
    const copy = deadLetterCopy(toMqttMessage(event, { mode: "binary" }));
    const back = fromMqttMessage(copy, { formats: [json] });
    expect(differences(back, event)).toEqual([]);
    expect(Object.keys(back)).not.toContain(DEAD_LETTER_REASON);
  });

  it("are skipped by the decoder whichever of the two is present", () => {
    const message = toMqttMessage(event, { mode: "binary" });
    for (const name of [DEAD_LETTER_ORIGINAL_TOPIC, DEAD_LETTER_REASON]) {
      const copy = { ...message, userProperties: { ...message.userProperties, [name]: "x" } };
      expect(differences(fromMqttMessage(copy, { formats: [json] }), event)).toEqual([]);
    }
  });

  it("do not count against maxUserProperties", () => {
    const message = toMqttMessage(event, { mode: "binary" });
    const count = Object.keys(message.userProperties ?? {}).length;
    const back = fromMqttMessage(deadLetterCopy(message), {
      formats: [json],
      maxUserProperties: count,
    });
    expect(differences(back, event)).toEqual([]);
  });

  it("are the only names not counted; another foreign name is counted, and neither is read", () => {
    const message = toMqttMessage(event, { mode: "binary" });
    const count = Object.keys(message.userProperties ?? {}).length;
    const noted: MqttMessage = {
      ...deadLetterCopy(message),
      userProperties: {
        ...deadLetterCopy(message).userProperties,
        "posthorn-dead-letter-note": "x",
      },
    };
    expect(differences(fromMqttMessage(noted, { formats: [json] }), event)).toEqual([]);
    let error: unknown;
    try {
      fromMqttMessage(noted, { formats: [json], maxUserProperties: count });
    } catch (err) {
      error = err;
    }
    expect(isPosthornError(error, "PayloadTooLarge")).toBe(true);
  });

  it("are kept in the plain message view, where a dead-letter consumer reads them", () => {
    const copy = deadLetterCopy(toMqttMessage(event, { mode: "binary" }));
    const message = toPlainMessage(copy);
    expect(message.properties?.[DEAD_LETTER_REASON]).toBe("cannot process");
    expect(message.properties?.[DEAD_LETTER_ORIGINAL_TOPIC]).toBe("orders/eu");
  });

  it("leave a structured-mode copy reading as the same event", () => {
    const copy = deadLetterCopy(toMqttMessage(event, { mode: "structured", format: json }));
    expect(differences(fromMqttMessage(copy, { formats: [json] }), event)).toEqual([]);
  });
});
