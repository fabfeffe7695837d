import {
  type AttributeValue,
  binaryContentType,
  CloudEvent,
  type CloudEventLike,
  canonicalString,
  type EventFormat,
  encodeData,
  invalidEvent,
  isAttributeName,
  isBytes,
  isValidString,
  PosthornError,
} from "@posthorn/core";
import type { MqttMessage, ToMqttMessageOptions } from "./mqtt-message.js";

/** Media type of the JSON event format, the only one MQTT 3.1.1 can carry. */
export const JSON_EVENT_CONTENT_TYPE = "application/cloudevents+json";

const EMPTY = new Uint8Array(0);

/**
 * Maps a CloudEvent onto an MQTT PUBLISH (CloudEvents MQTT protocol binding, section 3).
 *
 * - MQTT 5 binary mode (3.1.1 of the binding): every attribute but `datacontenttype` as a User
 *   Property named after the attribute, holding its canonical string; `datacontenttype` as the
 *   Content Type property; the data as the payload.
 * - MQTT 5 structured mode (3.1.2): Content Type is the format's media type; the payload is the
 *   formatted event.
 * - MQTT 3.1.1 (3.2): structured mode in the JSON format only, with no properties at all.
 *
 * @param event - the event (a Posthorn event or any `CloudEventV1`-shaped object)
 * @param options - mode, format and protocol version
 * @throws {@link PosthornError} `NotSupported` for binary mode or a non-JSON format at 3.1.1,
 *   `InvalidEvent` when the event or its data cannot be represented
 * @example
 * ```ts
 * const { payload, contentType, userProperties } = toMqttMessage(event, { mode: "binary" });
 * client.publish(topic, Buffer.from(payload), { qos: 1, properties: { contentType, userProperties } });
 * ```
 */
export function toMqttMessage(
  event: CloudEventLike,
  options: ToMqttMessageOptions = {},
): MqttMessage {
  const version = options.protocolVersion ?? 5;
  const mode = options.mode ?? (version === 5 ? "binary" : "structured");
  if (version !== 5) {
    // MQTT binding 3.2: 3.1.1 has no properties, so only structured JSON can be told apart.
    if (mode !== "structured") {
      throw new PosthornError(
        "NotSupported",
        "MQTT 3.1.1 carries CloudEvents in structured mode only (it has no user properties)",
      );
    }
    const format = requireFormat(options.format);
    if (format.contentType !== JSON_EVENT_CONTENT_TYPE) {
      throw new PosthornError(
        "NotSupported",
        `MQTT 3.1.1 carries the JSON event format only, not ${format.contentType}`,
      );
    }
    return { payload: format.encode(event) };
  }
  if (mode === "structured") {
    const format = requireFormat(options.format);
    // MQTT binding 3.1.2: Content Type names the event format.
    return { payload: format.encode(event), contentType: format.contentType };
  }
  if (mode !== "binary") {
    throw new PosthornError("NotSupported", `MQTT has no ${mode} content mode`);
  }
  return toBinary(CloudEvent.from(event));
}

function requireFormat(format: EventFormat | undefined): EventFormat {
  if (format === undefined) {
    throw new PosthornError("NotSupported", "structured mode needs an event format");
  }
  return format;
}

function toBinary(event: CloudEvent): MqttMessage {
  const userProperties: Record<string, string> = {};
  let data: unknown;
  let hasData = false;
  for (const name of Object.keys(event)) {
    const value = event[name];
    if (name === "data") {
      data = value;
      hasData = true;
    } else if (name !== "datacontenttype") {
      if (!isAttributeName(name)) {
        throw invalidEvent(
          `attribute name ${JSON.stringify(name)} is not lower-case letters and digits`,
          name,
        );
      }
      if (!isAttributeValue(value)) {
        throw invalidEvent(`${name} is not a CloudEvents attribute value`, name);
      }
      // MQTT binding 3.1.3.1: attribute name as the user property name, canonical string value.
      const text = canonicalString(value);
      // Brokers close the connection on control characters in UTF-8 strings (MQTT 5 1.5.4), so
      // an event that breaks the String rules is refused here rather than on the wire.
      if (!isValidString(text)) {
        throw invalidEvent(
          `${name} holds a control character, noncharacter or lone surrogate`,
          name,
        );
      }
      userProperties[name] = text;
    }
  }
  const datacontenttype = event.datacontenttype;
  // MQTT binding 3.1.3.2: datacontenttype travels as the Content Type property.
  const contentType = binaryContentType(hasData ? data : undefined, datacontenttype);
  const payload = hasData ? (encodeData(data, datacontenttype) ?? EMPTY) : EMPTY;
  return contentType === undefined
    ? { payload, userProperties }
    : { payload, contentType, userProperties };
}

function isAttributeValue(value: unknown): value is AttributeValue {
  const t = typeof value;
  return t === "string" || t === "number" || t === "boolean" || isBytes(value);
}
