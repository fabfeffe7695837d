import {
  binaryContentType,
  CloudEvent,
  type CloudEventLike,
  canonicalString,
  type EventFormat,
  encodeData,
  invalidEvent,
  isBytes,
  isInteger,
  PosthornError,
  prefixedName,
  thrownFor,
} from "@posthorn/core";
import {
  ATTRIBUTE_PREFIX,
  CONTENT_TYPE_HEADER,
  type KafkaEncodeOptions,
  type OutgoingKafkaRecord,
} from "./record.js";

/**
 * Maps an event onto a Kafka record (CloudEvents Kafka protocol binding, version 1.0).
 *
 * - binary mode (default): every attribute but `datacontenttype` as a `ce_<name>` header holding
 *   its canonical string, `datacontenttype` as the `content-type` header, the data as the value;
 *   an event without data becomes a record without a value (a tombstone in a compacted topic);
 * - structured mode: the event encoded by `options.format` as the value, the format's media type
 *   as the `content-type` header.
 *
 * The key is the one the caller gives, unless `options.keyMapper` computes one (3.1).
 *
 * @param input - the event; plain `CloudEventV1`-shaped objects are validated first
 * @param options - mode, format and key
 * @returns the record, with string headers and a byte value
 * @throws {@link PosthornError} `InvalidEvent` when the event cannot be represented, or when
 *   `options.keyMapper` or the format's `encode` throws something other than a `PosthornError`
 *   (`attribute` `key` or `value`, what it threw as `cause`; a `PosthornError` is thrown as it
 *   is), `NotSupported` for `batch` mode, structured mode without a format, or a key that is not
 *   a string, bytes or `null`
 * @example
 * ```ts
 * const record = toKafkaRecord(event, { mode: "structured", format: json, key: "order-42" });
 * await producer.send({ topic: "orders", messages: [record] });
 * ```
 */
export function toKafkaRecord(
  input: CloudEventLike,
  options: KafkaEncodeOptions = {},
): OutgoingKafkaRecord {
  const event = CloudEvent.from(input);
  const key = recordKey(event, options);
  const mode = options.mode ?? "binary";
  if (mode === "structured") {
    return structured(event, options.format, key);
  }
  if (mode !== "binary") {
    throw new PosthornError(
      "NotSupported",
      `the Kafka binding has no ${String(mode)} content mode (Kafka binding 1.3); use binary or structured`,
    );
  }
  return binary(event, key);
}

function recordKey(event: CloudEvent, options: KafkaEncodeOptions): Uint8Array | string | null {
  // Kafka binding 3.1: the caller's key by default; a key mapper only when the caller opts in.
  const mapper = options.keyMapper;
  if (mapper !== undefined) {
    let mapped: unknown;
    try {
      mapped = mapper(event);
    } catch (err) {
      throw thrownFor(err, "the keyMapper", event.id, "key");
    }
    if (mapped !== undefined) return checkedKey(mapped, "the keyMapper returned");
  }
  return options.key === undefined ? null : checkedKey(options.key, "the key given is");
}

/**
 * A record key as Kafka takes one: a string, bytes or `null`. JavaScript callers can hand over
 * anything; a number failed later inside the client with Node's own wording.
 */
function checkedKey(key: unknown, what: string): Uint8Array | string | null {
  if (key === null || typeof key === "string" || key instanceof Uint8Array) return key;
  throw new PosthornError(
    "NotSupported",
    `${what} a ${typeof key}: a Kafka record key is a string, bytes (Uint8Array) or null; convert it, e.g. with String()`,
    { attribute: "key" },
  );
}

function structured(
  event: CloudEvent,
  format: EventFormat | undefined,
  key: Uint8Array | string | null,
): OutgoingKafkaRecord {
  if (format === undefined) {
    throw new PosthornError("NotSupported", "structured mode needs an event format");
  }
  // Kafka binding 3.3.1: content-type is the format's media type; 3.3.2: the value is the
  // formatted event, so even an event without data is not a tombstone.
  let value: Uint8Array;
  try {
    value = format.encode(event);
  } catch (err) {
    throw thrownFor(err, `the ${format.contentType} format's encode`, event.id, "value");
  }
  return { key, value, headers: { [CONTENT_TYPE_HEADER]: structuredContentType(format) } };
}

const contentTypes = new WeakMap<EventFormat, string>();

/**
 * The `content-type` header of a structured record in `format` (text formats name UTF-8).
 *
 * @param format - the event format
 */
export function structuredContentType(format: EventFormat): string {
  let ct = contentTypes.get(format);
  if (ct === undefined) {
    ct = format.text ? `${format.contentType}; charset=UTF-8` : format.contentType;
    contentTypes.set(format, ct);
  }
  return ct;
}

function binary(event: CloudEvent, key: Uint8Array | string | null): OutgoingKafkaRecord {
  const headers: Record<string, string> = {};
  const data = event.data;
  let datacontenttype: string | undefined;
  for (const name of Object.keys(event)) {
    if (name === "data") continue;
    const value = event[name];
    if (name === "datacontenttype") {
      datacontenttype = value as string;
      continue;
    }
    // Kafka binding 3.2.3: each attribute as its own header, name prefixed `ce_` (3.2.3.1),
    // value the attribute's canonical string as UTF-8.
    headers[prefixedName(ATTRIBUTE_PREFIX, name)] = headerValue(name, value);
  }
  // Kafka binding 3.2.1: datacontenttype is the content-type header.
  const contentType = binaryContentType(data, datacontenttype);
  if (contentType !== undefined) headers[CONTENT_TYPE_HEADER] = contentType;
  // Kafka binding 3.2.2: the data bytes are the value; no data is no value.
  const value = encodeData(data, contentType) ?? null;
  return { key, value, headers };
}

function headerValue(name: string, value: unknown): string {
  switch (typeof value) {
    case "string":
      return value;
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!isInteger(value)) {
        throw invalidEvent(`${name} must be an Integer in the signed 32-bit range`, name);
      }
      return String(value);
    default:
      if (isBytes(value)) return canonicalString(value);
      throw invalidEvent(
        `${name} has a value of type ${typeof value}, not a CloudEvents type`,
        name,
      );
  }
}
