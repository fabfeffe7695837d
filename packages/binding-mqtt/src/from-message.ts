import {
  asDecodeError,
  CloudEvent,
  canonicalMediaType,
  checkCountOption,
  DEAD_LETTER_ORIGINAL_TOPIC,
  DEAD_LETTER_REASON,
  decodeData,
  extensions as defaultExtensions,
  type EventFormat,
  findFormat,
  formatWithRegistry,
  invalidEvent,
  isAttributeName,
  isCloudEventsContentType,
  isContextAttribute,
  type Message,
  type MessageProperties,
  malformed,
  noFormatFor,
  PosthornError,
  parseCanonical,
  ReceivedMessage,
} from "@posthorn/core";
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_MAX_USER_PROPERTIES,
  type FromMqttMessageOptions,
  type MqttMessage,
} from "./mqtt-message.js";
import { JSON_EVENT_CONTENT_TYPE } from "./to-message.js";

/** How an MQTT message carries a CloudEvent, as {@link classifyMqttMessage} tells it. */
export type MqttEventMode = "binary" | "structured";

// `"specversion"` as bytes: a structured JSON event without a content type names it somewhere.
const SPECVERSION_KEY = new TextEncoder().encode('"specversion"');

/**
 * Tells whether an MQTT message carries a CloudEvent, and in which mode, without decoding it
 * (MQTT binding 3.1 and 3.2):
 * - a Content Type of the form `application/cloudevents...` is structured mode;
 * - otherwise, at MQTT 5, a `specversion` User Property is binary mode;
 * - otherwise, with no Content Type (every MQTT 3.1.1 message, and MQTT 5 messages from 3.1.1
 *   publishers), a payload that is a JSON object naming `"specversion"` is a structured event
 *   in the JSON format.
 *
 * @param message - the received message
 * @param options - the MQTT version the client speaks (default 5); below 5, user properties are
 *   not read
 * @returns the mode, or `undefined` for a plain (non-CloudEvents) message
 */
export function classifyMqttMessage(
  message: MqttMessage,
  options: Pick<FromMqttMessageOptions, "protocolVersion"> = {},
): MqttEventMode | undefined {
  const contentType = message.contentType;
  if (contentType !== undefined && isCloudEventsContentType(contentType)) return "structured";
  const props = message.userProperties;
  if ((options.protocolVersion ?? 5) === 5 && props && Object.hasOwn(props, "specversion")) {
    return "binary";
  }
  if (contentType === undefined && looksLikeJsonEvent(message.payload)) return "structured";
  return undefined;
}

/**
 * Reads a CloudEvent from an MQTT message, detecting the mode ({@link classifyMqttMessage}) and,
 * in structured mode, the format from the Content Type among `options.formats`. In binary mode,
 * attributes whose type is declared (context attributes and extensions in `options.registry`)
 * are restored to that type; other extensions stay Strings. A user property whose name cannot be
 * an attribute name (not lower-case letters and digits: `X-Request-Id`, `content_encoding`) is
 * the producer's or the broker's, not the event's: it is not read, and {@link toPlainMessage}
 * keeps it (as the subscriber's `delivery.message.properties`). Two exceptions are refused, as
 * likely mis-spelt attributes: `data_base64`, and a name that differs only in ASCII case from a
 * context attribute or from another user property of the message (`Type`, `ID`). The two a
 * subscriber's `reject()` adds to a dead-letter copy (core's `DEAD_LETTER_ORIGINAL_TOPIC` and
 * `DEAD_LETTER_REASON`) are not counted against `maxUserProperties`, so the copy of an event that
 * fitted still decodes; every other user property counts, foreign ones too, in structured mode
 * as in binary mode. `maxPayloadBytes` and `maxUserProperties` are checked before the message is
 * classified: a message over one is `PayloadTooLarge` whatever it carries.
 *
 * @param message - the payload and MQTT 5 properties
 * @param options - the formats to accept, the protocol version, the extension registry, limits
 * @throws {@link PosthornError} `MalformedInput` (not a CloudEvent, a repeated attribute user
 *   property, a `data` or `data_base64` user property, unparseable payload), `InvalidEvent` (an
 *   attribute breaks a rule, a user property named as an attribute in another case),
 *   `UnsupportedContentType` (no registered format for the Content Type), `PayloadTooLarge` (a
 *   limit is exceeded); `NotSupported`, before anything is read, for a `maxPayloadBytes`,
 *   `maxUserProperties` or `json.maxDepth` that is not a whole number of 0 or more (or `Infinity`)
 */
export function fromMqttMessage(message: MqttMessage, options: FromMqttMessageOptions): CloudEvent {
  // Checked on every call, as the subscriber checks its own once: NaN compared false and turned
  // a limit off, a negative one refused every message.
  checkCountOption("maxPayloadBytes", options.maxPayloadBytes, 0);
  checkCountOption("maxUserProperties", options.maxUserProperties, 0);
  checkCountOption("json.maxDepth", options.json?.maxDepth, 0);
  const over = mqttLimitError(message, options);
  if (over !== undefined) throw over;
  const mode = classifyMqttMessage(message, options);
  if (mode === undefined) throw malformed("the MQTT message does not carry a CloudEvent");
  try {
    if (mode === "binary") return fromBinary(message, options);
    const format = structuredFormat(message.contentType, options.formats);
    return formatWithRegistry(format, options.registry).decode(message.payload);
  } catch (err) {
    throw asDecodeError(err, "MQTT message");
  }
}

/**
 * The names of `props` that count against `maxUserProperties`: all of them but the two reject()
 * adds to a dead-letter copy, which are about the message, not the event (so the copy of an
 * event that fitted still fits, and decodes to the event that was rejected).
 */
function counted(props: NonNullable<MqttMessage["userProperties"]>): string[] {
  const names = Object.keys(props);
  if (
    Object.hasOwn(props, DEAD_LETTER_ORIGINAL_TOPIC) ||
    Object.hasOwn(props, DEAD_LETTER_REASON)
  ) {
    return names.filter((name) => !isDeadLetterName(name));
  }
  return names;
}

/**
 * @internal The `PayloadTooLarge` error for a message over `maxPayloadBytes` or
 * `maxUserProperties` (the limits checked, not validated: callers check them once), whatever
 * it carries: a CloudEvent in either mode, or none. The limits protect the receiver, so a plain
 * message is held to them as an event is. `undefined` when it is within both.
 */
export function mqttLimitError(
  message: MqttMessage,
  options: Pick<FromMqttMessageOptions, "maxPayloadBytes" | "maxUserProperties">,
): PosthornError | undefined {
  const maxBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  if (message.payload.length > maxBytes) {
    return new PosthornError(
      "PayloadTooLarge",
      `MQTT payload of ${message.payload.length} bytes exceeds the limit of ${maxBytes}`,
    );
  }
  const props = message.userProperties;
  if (props === undefined) return undefined;
  const maxProps = options.maxUserProperties ?? DEFAULT_MAX_USER_PROPERTIES;
  // Cheap first: a message with no more names than the limit cannot be over it.
  const n = Object.keys(props).length <= maxProps ? 0 : counted(props).length;
  if (n <= maxProps) return undefined;
  return new PosthornError(
    "PayloadTooLarge",
    `${n} user properties exceed the limit of ${maxProps}`,
  );
}

function structuredFormat(
  contentType: string | undefined,
  formats: readonly EventFormat[],
): EventFormat {
  // MQTT binding 3.2: without a Content Type (MQTT 3.1.1) the event is in the JSON format.
  const match = findFormat(formats, contentType ?? JSON_EVENT_CONTENT_TYPE);
  if (match === undefined) {
    throw noFormatFor(contentType ?? JSON_EVENT_CONTENT_TYPE, formats);
  }
  if (match.batch) {
    throw new PosthornError("UnsupportedContentType", "the MQTT binding defines no batch mode");
  }
  return match.format;
}

function fromBinary(message: MqttMessage, options: FromMqttMessageOptions): CloudEvent {
  const registry = options.registry ?? defaultExtensions;
  const props = message.userProperties ?? {};
  // Counted against maxUserProperties already (mqttLimitError).
  const names = counted(props);
  // Only attribute names (lower-case letters and digits, so never `__proto__`) are written, so a
  // plain object: V8 keeps it in fast mode, and the event constructor reads it about twice as
  // fast as a dictionary. `constructor` or `toString` becomes an own member, as any extension.
  const init: Record<string, unknown> = {};
  let foreign: string[] | undefined;
  for (const name of names) {
    // A name that cannot be an attribute is the producer's or the broker's, not the event's:
    // left to the message's properties, unread here (it may repeat, as MQTT allows).
    if (!isAttributeName(name)) {
      if (foreign === undefined) foreign = [name];
      else foreign.push(name);
      continue;
    }
    const value = single(name, props[name]);
    if (name === "data") {
      throw malformed(`user property ${name} is not an attribute name`, undefined, name);
    }
    const type = isContextAttribute(name) ? undefined : registry.typeOf(name);
    // MQTT binding 3.1.3.1: user properties carry canonical strings; restore declared types.
    init[name] =
      type === undefined || type === "String" ? value : parseCanonical(value, type, name);
  }
  if (foreign !== undefined) for (const name of foreign) checkForeign(name, props);
  // MQTT binding 3.1.3.2: Content Type is datacontenttype.
  const contentType = message.contentType;
  const fromProperty = init.datacontenttype as string | undefined;
  if (contentType !== undefined) {
    // The same media type written differently (case, spacing, parameter order) agrees.
    if (
      fromProperty !== undefined &&
      fromProperty !== contentType &&
      canonicalMediaType(fromProperty) !== canonicalMediaType(contentType)
    ) {
      throw malformed(
        "the datacontenttype user property contradicts the Content Type",
        undefined,
        "datacontenttype",
      );
    }
    init.datacontenttype = contentType;
  }
  const datacontenttype = init.datacontenttype as string | undefined;
  // No payload and no content type is an event without data; the binding cannot tell it from
  // empty binary data, which equivalence treats the same.
  if (message.payload.length > 0 || datacontenttype !== undefined) {
    const data = decodeData(message.payload, datacontenttype, options.json);
    if (data !== undefined) init.data = data;
  }
  return new CloudEvent(init as never);
}

/**
 * Refuses the foreign (not attribute) names that look like a mis-spelt attribute rather than the
 * producer's own: `data_base64`, the JSON format's member for binary data, and a name that differs
 * only in ASCII case from a context attribute or from another user property of this message
 * (`Type`, `ID`, `Tenant` beside `tenant`). Reading it as foreign would drop what the producer
 * meant as an attribute without a word. Declared extensions are not in the list: `CorrelationId`
 * or an HTTP bridge's `Traceparent` is as likely the producer's own, and the event is complete
 * without it.
 */
function checkForeign(name: string, props: NonNullable<MqttMessage["userProperties"]>): void {
  if (name === "data_base64") {
    throw malformed(`user property ${name} is not an attribute name`, undefined, name);
  }
  const folded = caseFolded(name);
  if (folded !== undefined && (isContextAttribute(folded) || Object.hasOwn(props, folded))) {
    throw invalidEvent(
      `user property ${name} differs from the attribute name ${folded} only in case ` +
        "(attribute names are lower-case)",
      name,
    );
  }
}

/** `name` in lower case when it is ASCII letters and digits only, else `undefined`. */
function caseFolded(name: string): string | undefined {
  if (name.length === 0) return undefined;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (!((c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57))) {
      return undefined;
    }
  }
  return name.toLowerCase();
}

function isDeadLetterName(name: string): boolean {
  return name === DEAD_LETTER_ORIGINAL_TOPIC || name === DEAD_LETTER_REASON;
}

function single(name: string, value: string | readonly string[] | undefined): string {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    if (value.length === 1 && typeof value[0] === "string") return value[0];
    throw malformed(`user property ${name} appears ${value.length} times`, undefined, name);
  }
  throw malformed(`user property ${name} is not a string`, undefined, name);
}

function looksLikeJsonEvent(payload: Uint8Array): boolean {
  let i = 0;
  const n = payload.length;
  // Skip JSON whitespace (and a UTF-8 byte order mark) before the opening brace.
  if (n >= 3 && payload[0] === 0xef && payload[1] === 0xbb && payload[2] === 0xbf) i = 3;
  while (i < n) {
    const c = payload[i] as number;
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
    i++;
  }
  if (payload[i] !== 0x7b) return false;
  return indexOfBytes(payload, SPECVERSION_KEY, i + 1) !== -1;
}

function indexOfBytes(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0] as number;
  const last = haystack.length - needle.length;
  for (
    let i = haystack.indexOf(first, from);
    i !== -1 && i <= last;
    i = haystack.indexOf(first, i + 1)
  ) {
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/**
 * The transport-neutral {@link Message} view of an MQTT message: the payload as `body`, the
 * Content Type, and User Properties as `properties` (a repeated name keeps all its values).
 *
 * @param message - the payload and MQTT 5 properties
 * @param metadata - transport details to attach (topic, QoS, retain and dup flags)
 */
export function toPlainMessage(
  message: MqttMessage,
  metadata?: Readonly<Record<string, unknown>>,
): Message {
  // Copied on first access: a subscriber that reads the event never needs them.
  return new ReceivedMessage(
    message.payload,
    message.contentType,
    metadata,
    message.userProperties,
    userProperties,
  );
}

function userProperties(props: MqttMessage["userProperties"]): MessageProperties {
  // A null prototype: property names are untrusted, and `__proto__` must stay a name.
  const out = Object.create(null) as Record<string, string | readonly string[]>;
  if (props) for (const name of Object.keys(props)) out[name] = props[name] as string;
  return out;
}
