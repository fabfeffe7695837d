import {
  asDeclaredType,
  asDecodeError,
  CloudEvent,
  canonicalString,
  checkCountOption,
  dateToTimestamp,
  decodeData,
  extensions as defaultRegistry,
  type EventFormat,
  type ExtensionRegistry,
  findFormat,
  formatWithRegistry,
  invalidEvent,
  isBytes,
  isCloudEventsContentType,
  isContextAttribute,
  isInteger,
  type JsonLimits,
  type Message,
  type MessageProperties,
  malformed,
  noFormatFor,
  PosthornError,
  type PropertyValue,
  ReceivedMessage,
  utf8Encode,
  withFormerMaxDepth,
} from "@posthorn/core";
import {
  type AmqpMessage,
  DATA_SECTION_TYPECODE,
  SEQUENCE_SECTION_TYPECODE,
} from "./amqp-message.js";
import { UNDECODABLE_ANNOTATION } from "./wire-check.js";

/** Default limit on the body of a received message, in bytes. */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** Default limit on the number of application properties of a received message. */
export const DEFAULT_MAX_PROPERTIES = 1024;

/** Options for {@link readAmqpMessage} and {@link fromAmqpMessage}. */
export interface FromAmqpMessageOptions {
  /** The event formats structured mode may use. Without them, structured messages are errors. */
  formats?: readonly EventFormat[];
  /**
   * Where declared extension types are looked up, in both content modes: binary mode reads
   * declared extensions' property values into their types, and structured mode decodes with the
   * matched format adapted to this registry ({@link EventFormat.withRegistry}; a format without
   * it decodes with its own). Defaults to core's `extensions` in binary mode and to the format's
   * own in structured mode.
   */
  registry?: ExtensionRegistry;
  /**
   * Largest body accepted, in bytes; more is `PayloadTooLarge`, for every message, CloudEvent or
   * not. Default
   * {@link DEFAULT_MAX_MESSAGE_BYTES} (16 MiB). The same name as in every other binding.
   */
  maxPayloadBytes?: number;
  /**
   * The former name of {@link FromAmqpMessageOptions.maxPayloadBytes}, still read; when both are
   * given, `maxPayloadBytes` wins.
   *
   * @deprecated use maxPayloadBytes
   */
  maxMessageBytes?: number;
  /**
   * Most application properties accepted; more is `PayloadTooLarge`, for every message,
   * CloudEvent or not. Default 1024.
   */
  maxProperties?: number;
  /**
   * Limits for JSON data read in binary mode: `maxDepth`, the deepest nesting accepted (default
   * 128; deeper is `MalformedInput`). The same option as in every other binding.
   */
  json?: JsonLimits;
  /**
   * The former place of `json.maxDepth`, still read; when both are given, `json.maxDepth` wins.
   *
   * @deprecated use json: { maxDepth }
   */
  maxDepth?: number;
}

/** What {@link readAmqpMessage} made of an AMQP message. */
export interface AmqpDecoded {
  /** The message as a transport-neutral envelope: body bytes, content type, properties. */
  readonly message: Message;
  /** The event, when the message is a valid CloudEvent. */
  readonly event: CloudEvent | undefined;
  /**
   * Why a message that claims to be a CloudEvent could not be decoded, or, for any message, that
   * it is past `maxPayloadBytes` or `maxProperties` (`PayloadTooLarge`).
   */
  readonly error: PosthornError | undefined;
}

// Header and properties fields copied into Message.metadata, by rhea's name and ours.
const METADATA_FIELDS: ReadonlyArray<readonly [string, string]> = [
  ["message_id", "messageId"],
  ["correlation_id", "correlationId"],
  ["subject", "subject"],
  ["to", "to"],
  ["reply_to", "replyTo"],
  ["group_id", "groupId"],
  ["group_sequence", "groupSequence"],
  ["reply_to_group_id", "replyToGroupId"],
  ["user_id", "userId"],
  ["content_encoding", "contentEncoding"],
  ["creation_time", "creationTime"],
  ["absolute_expiry_time", "absoluteExpiryTime"],
  ["durable", "durable"],
  ["priority", "priority"],
  ["ttl", "ttl"],
  ["first_acquirer", "firstAcquirer"],
  ["delivery_count", "deliveryCount"],
  ["message_annotations", "messageAnnotations"],
  ["delivery_annotations", "deliveryAnnotations"],
];

const NAME = /^[a-z0-9]+$/;
const EMPTY = new Uint8Array(0);

/**
 * Reads an AMQP 1.0 message (amqp-protocol-binding.md section 3). Never throws for a message:
 * bad input ends in `error`, with the raw message kept. Bad options do throw, before anything is
 * read: a `maxPayloadBytes`, `maxMessageBytes`, `maxProperties`, `maxDepth` or `json.maxDepth`
 * that is not a whole number of 0 or more (or `Infinity`) is `NotSupported` naming it, as
 * `amqpSubscriber` refuses it when made (`NaN` turned the limit off, a negative one refused every
 * message).
 *
 * - Structured mode when `content-type` starts with `application/cloudevents`: the body is
 *   decoded with the registered format that media type names.
 * - Binary mode when any application property carries the `cloudEvents:` or `cloudEvents_`
 *   prefix: typed AMQP values become the matching CloudEvents types (any integer type within
 *   32 bits is an Integer, `timestamp` is a Timestamp, `binary` is Binary), and strings of
 *   declared extensions are read back into their declared type. `content-type` is
 *   `datacontenttype`; the data comes from the data section(s), or from an AMQP value body that is
 *   a string or binary.
 * - Anything else is a plain `Message` (no event, no error).
 *
 * The limits apply to every message: one past `maxProperties` or `maxPayloadBytes`, CloudEvent or
 * not, comes with a `PayloadTooLarge` error beside its message (a plain message's body that is
 * an AMQP value other than a string or binary is not counted).
 *
 * @param amqp - the message as rhea delivered it
 * @param options - formats for structured mode, the extension registry and the limits
 *   (`maxPayloadBytes` 16 MiB, `maxProperties` 1024, JSON nesting 128 by default)
 * @returns the message, and the event or the error
 * @throws {@link PosthornError} `NotSupported` for a limit option that is not a whole number of 0
 *   or more (or `Infinity`), never for the message
 */
export function readAmqpMessage(
  amqp: AmqpMessage,
  options: FromAmqpMessageOptions = {},
): AmqpDecoded {
  checkDecodeLimits(options);
  let bodyError: PosthornError | undefined;
  let body: Uint8Array | undefined;
  try {
    body = bodyBytes(amqp.body);
  } catch (err) {
    bodyError = asDecodeError(err, "AMQP body");
  }
  const props = amqp.application_properties;
  let count = 0;
  let claimsEvent = false;
  if (props !== undefined && props !== null && typeof props === "object") {
    for (const key of Object.keys(props)) {
      count++;
      if (!claimsEvent && prefixLength(key) > 0) claimsEvent = true;
    }
  }
  const contentType = typeof amqp.content_type === "string" ? amqp.content_type : undefined;
  // The properties are copied on first read: a subscriber that reads the event never needs them.
  const message = new ReceivedMessage(
    body ?? EMPTY,
    contentType,
    metadataOf(amqp),
    count === 0 ? undefined : (props as Record<string, unknown>),
    applicationProperties,
  );
  const refused = refusalOf(amqp);
  if (refused !== undefined) return { message, event: undefined, error: refused };
  const structured = isCloudEventsContentType(contentType);
  // The limits protect the receiver whatever the message holds: a message that is no CloudEvent
  // was handed out whatever its size and property count.
  const overLimit = limitError(count, body, options);
  if (!structured && !claimsEvent) return { message, event: undefined, error: overLimit };
  try {
    if (overLimit) throw overLimit;
    if (bodyError) throw bodyError;
    const event = structured
      ? decodeStructured(body, contentType, options)
      : decodeBinary(props as Record<string, unknown>, body, contentType, options);
    return { message, event, error: undefined };
  } catch (err) {
    return { message, event: undefined, error: asDecodeError(err, "AMQP message") };
  }
}

/**
 * Checks the limit options of {@link readAmqpMessage}: one rule for it (on every call, a few
 * comparisons: about 4 ns against about 1 us to read the smallest plain message) and for `amqpSubscriber` (once, when
 * made). Handed on unchecked, `NaN` compared false and turned a limit off, and a negative limit
 * refused every message.
 *
 * @throws {@link PosthornError} `NotSupported` naming the option
 * @internal
 */
export function checkDecodeLimits(options: FromAmqpMessageOptions): void {
  checkCountOption("maxPayloadBytes", options.maxPayloadBytes, 0);
  checkCountOption("maxMessageBytes", options.maxMessageBytes, 0);
  checkCountOption("maxProperties", options.maxProperties, 0);
  checkCountOption("maxDepth", options.maxDepth, 0);
  checkCountOption("json.maxDepth", options.json?.maxDepth, 0);
}

/**
 * `PayloadTooLarge` for more application properties than `maxProperties`, or a body past
 * `maxPayloadBytes` (or the deprecated `maxMessageBytes`); else undefined.
 */
function limitError(
  count: number,
  body: Uint8Array | undefined,
  options: FromAmqpMessageOptions,
): PosthornError | undefined {
  const maxProperties = options.maxProperties ?? DEFAULT_MAX_PROPERTIES;
  if (count > maxProperties) {
    return new PosthornError(
      "PayloadTooLarge",
      `the message has ${count} application properties, more than the limit of ${maxProperties} (option maxProperties)`,
    );
  }
  const max = options.maxPayloadBytes ?? options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  if (body !== undefined && body.length > max) {
    return new PosthornError(
      "PayloadTooLarge",
      `the message body has ${body.length} bytes, more than the limit of ${max} (option maxPayloadBytes)`,
    );
  }
  return undefined;
}

/**
 * Reads a CloudEvent from an AMQP 1.0 message, in either mode.
 *
 * @param amqp - the message as rhea delivered it
 * @param options - as for {@link readAmqpMessage}
 * @throws {@link PosthornError} `MalformedInput` when the message is not a CloudEvent or cannot
 *   be read, `InvalidEvent` when it breaks a CloudEvents rule, `UnsupportedContentType` for a
 *   format not registered, `PayloadTooLarge` past a limit;
 *   `NotSupported` for a limit option that is not a whole number of 0 or more
 */
export function fromAmqpMessage(
  amqp: AmqpMessage,
  options: FromAmqpMessageOptions = {},
): CloudEvent {
  const { event, error } = readAmqpMessage(amqp, options);
  if (error) throw error;
  if (event === undefined) {
    throw malformed("the AMQP message is not a CloudEvent: no cloudEvents: properties");
  }
  return event;
}

/**
 * The former name of {@link fromAmqpMessage} (which was the name of {@link readAmqpMessage}):
 * the names now mean what they mean in every other binding.
 *
 * @deprecated use fromAmqpMessage
 */
export const decodeAmqpMessage: typeof fromAmqpMessage = fromAmqpMessage;

// 3.2: the format the content type names decodes the body.
function decodeStructured(
  body: Uint8Array | undefined,
  contentType: string | undefined,
  options: FromAmqpMessageOptions,
): CloudEvent {
  const formats = options.formats ?? [];
  const match = findFormat(formats, contentType);
  if (match === undefined) throw noFormatFor(String(contentType), formats);
  if (match.batch) {
    throw new PosthornError(
      "UnsupportedContentType",
      `no registered event format reads ${contentType} (AMQP carries no batches)`,
    );
  }
  if (body === undefined) throw malformed("a structured-mode message has no body");
  return formatWithRegistry(match.format, options.registry).decode(body);
}

// 3.1: attributes from application properties, data from the application-data section.
function decodeBinary(
  props: Record<string, unknown>,
  body: Uint8Array | undefined,
  contentType: string | undefined,
  options: FromAmqpMessageOptions,
): CloudEvent {
  const registry = options.registry ?? defaultRegistry;
  // A plain object, not a prototype-less one (which V8 keeps in dictionary mode, dearer to fill
  // and to read): every name put in it passed attributeNameOf's check (lower-case letters and
  // digits), so `__proto__` never reaches it.
  const init: Record<string, unknown> = {};
  let propertyContentType: string | undefined;
  for (const key of Object.keys(props)) {
    const name = attributeNameOf(key);
    if (name === "") continue;
    const raw = props[key];
    if (raw === null || raw === undefined) continue;
    if (name === "datacontenttype") {
      // 3.1.1 puts it in content-type; a sender that also (or only) wrote the property is read.
      if (typeof raw !== "string") throw invalidEvent("datacontenttype must be a String", name);
      propertyContentType = raw;
      continue;
    }
    const value = attributeValue(name, raw, registry);
    if (Object.hasOwn(init, name)) {
      if (!sameValue(init[name], value)) {
        throw malformed(`attribute ${name} appears under both prefixes with different values`);
      }
      continue;
    }
    init[name] = value;
  }
  const datacontenttype = contentType ?? propertyContentType;
  if (datacontenttype !== undefined) init.datacontenttype = datacontenttype;
  if (body !== undefined) {
    const data = decodeData(
      body,
      datacontenttype,
      withFormerMaxDepth(options.json, options.maxDepth),
    );
    if (data !== undefined) init.data = data;
  }
  return new CloudEvent(init as never);
}

// Application-property name -> attribute name ("" for a property that carries none), for names
// seen before: the same few arrive on every message, and a look-up returns one string that V8
// has interned as a property key, where slicing made a fresh one per message to check and hash.
const attributeNames = new Map<string, string>();
const ATTRIBUTE_NAMES_LIMIT = 512;

/**
 * The attribute an application property carries (3.1.3.1: the prefix, then the name), or `""`.
 *
 * @throws {@link PosthornError} `InvalidEvent` when the name after the prefix is no attribute name
 */
function attributeNameOf(key: string): string {
  const known = attributeNames.get(key);
  if (known !== undefined) return known;
  const skip = prefixLength(key);
  const name = skip === 0 ? "" : key.slice(skip);
  if (name !== "" && (name === "data" || !NAME.test(name))) {
    throw invalidEvent(
      `attribute name ${JSON.stringify(name)} must consist of lower-case letters and digits`,
      name,
    );
  }
  if (attributeNames.size >= ATTRIBUTE_NAMES_LIMIT) attributeNames.clear();
  attributeNames.set(key, name);
  return name;
}

/** The length of a `cloudEvents:` / `cloudEvents_` prefix at the start of `key` (any case), or 0. */
function prefixLength(key: string): number {
  if (key.length <= 12) return 0;
  const sep = key.charCodeAt(11);
  if (sep !== 58 && sep !== 95) return 0;
  if (key.startsWith("cloudEvents")) return 12;
  return key.slice(0, 11).toLowerCase() === "cloudevents" ? 12 : 0;
}

// 3.1.3.2: native AMQP values and canonical strings are both read; strings of declared types are
// parsed back into them, native values checked against them.
function attributeValue(name: string, raw: unknown, registry: ExtensionRegistry): unknown {
  const declared = registry.typeOf(name);
  if (typeof raw === "string") {
    // The constructor checks the context attributes' strings.
    return isContextAttribute(name) ? raw : asDeclaredType(name, raw, declared, "AMQP");
  }
  if (typeof raw === "number") {
    if (!isInteger(raw)) {
      throw invalidEvent(`${name} is a number outside the 32-bit Integer range`, name);
    }
    return asDeclaredType(name, raw, declared, "AMQP");
  }
  if (typeof raw === "boolean") return asDeclaredType(name, raw, declared, "AMQP");
  if (raw instanceof Date) {
    // RFC 3339 writes years 0000 to 9999 only (an AMQP timestamp reaches past them); an invalid
    // date's year is NaN.
    const year = raw.getUTCFullYear();
    if (!(year >= 0 && year <= 9999)) {
      throw invalidEvent(`${name} is not a timestamp RFC 3339 can write`, name);
    }
    // A timestamp is a Timestamp, or a String when declared so; its text is the canonical one.
    if (declared !== undefined && declared !== "Timestamp" && declared !== "String") {
      throw invalidEvent(`${name} must be of type ${declared}; AMQP carried Timestamp`, name);
    }
    return dateToTimestamp(raw);
  }
  // A copy: rhea's Buffer is a view into the transfer frame.
  if (isBytes(raw)) return asDeclaredType(name, new Uint8Array(raw), declared, "AMQP");
  throw invalidEvent(`${name} holds an AMQP value that no CloudEvents type maps to`, name);
}

function sameValue(a: unknown, b: unknown): boolean {
  if (isBytes(a) && isBytes(b)) return canonicalString(a) === canonicalString(b);
  return a === b;
}

function isSection(
  body: object,
): body is { typecode: number; content: unknown; multiple?: boolean } {
  return typeof (body as { typecode?: unknown }).typecode === "number" && "content" in body;
}

/** The application data of a body: data section(s), or an AMQP value that is binary or a string. */
const REFUSAL = /^(MalformedInput|PayloadTooLarge|NotSupported): /;

/**
 * The error a message marked by the frame guard (or by the subscriber, for a message format
 * rhea does not decode) stands for: the annotation's value is the code, a colon and why.
 */
function refusalOf(amqp: AmqpMessage): PosthornError | undefined {
  const annotations = amqp.message_annotations;
  if (annotations === undefined || annotations === null || typeof annotations !== "object") {
    return undefined;
  }
  const value = (annotations as Record<string, unknown>)[UNDECODABLE_ANNOTATION];
  if (typeof value !== "string") return undefined;
  const code = REFUSAL.exec(value)?.[1] as
    | "MalformedInput"
    | "PayloadTooLarge"
    | "NotSupported"
    | undefined;
  return new PosthornError(
    code ?? "MalformedInput",
    `the AMQP message was not decoded: ${code === undefined ? value : value.slice(code.length + 2)}`,
  );
}

function bodyBytes(body: unknown): Uint8Array | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === "string") return utf8Encode(body);
  if (isBytes(body)) return plain(body);
  if (typeof body === "object" && isSection(body)) {
    if (body.typecode === SEQUENCE_SECTION_TYPECODE) {
      throw malformed("an AMQP sequence body cannot carry CloudEvents data");
    }
    if (body.typecode !== DATA_SECTION_TYPECODE) throw malformed("unknown AMQP body section");
    const content = body.content;
    if (isBytes(content)) return plain(content);
    if (Array.isArray(content) && content.every(isBytes)) return concat(content);
    throw malformed("an AMQP data section holds no binary");
  }
  throw malformed(`an AMQP value body of type ${typeof body} cannot carry CloudEvents data`);
}

/** The same bytes as a plain `Uint8Array` (rhea hands out Node `Buffer`s), without copying. */
function plain(bytes: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(bytes) === Uint8Array.prototype
    ? bytes
    : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function applicationProperties(props: Record<string, unknown> | undefined): MessageProperties {
  const properties: Record<string, PropertyValue> = {};
  if (props === undefined) return properties;
  for (const key of Object.keys(props)) {
    const value = toPropertyValue(props[key]);
    if (value === undefined) continue;
    if (key === "__proto__") {
      Object.defineProperty(properties, key, { value, enumerable: true, writable: true });
    } else properties[key] = value;
  }
  return properties;
}

function toPropertyValue(value: unknown): PropertyValue | undefined {
  if (value === null) return null;
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
    case "bigint":
      return value;
    case "object":
      if (value instanceof Date) return value;
      if (isBytes(value)) return plain(value);
      return undefined;
    default:
      return undefined;
  }
}

function metadataOf(amqp: AmqpMessage): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, name] of METADATA_FIELDS) {
    const value = amqp[field];
    if (value !== undefined && value !== null) out[name] = value;
  }
  if (amqp.body !== undefined && amqp.body !== null && typeof amqp.body === "object") {
    const body = amqp.body as object;
    if (!isBytes(body) && !isSection(body)) out.amqpValue = body;
  } else if (typeof amqp.body === "number" || typeof amqp.body === "boolean") {
    out.amqpValue = amqp.body;
  }
  return out;
}
