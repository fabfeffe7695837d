import { base64Decode, base64Encode, isBytes } from "./bytes.js";
import { isJsonContentType, isMediaType } from "./content-type.js";
import { invalidEvent, quoted } from "./errors.js";
import { extensions, isAttributeName } from "./extensions.js";
import {
  type AttributeValue,
  asDeclaredType,
  checkValue,
  dateToTimestamp,
  isAbsoluteUri,
  isInteger,
  isTimestamp,
  isUriReference,
  isValidString,
} from "./types.js";

/** The CloudEvents 1.0 context attributes (spec.md, "Context Attributes"). */
export interface CloudEventAttributes {
  /** The CloudEvents version the event follows; always `"1.0"`. */
  readonly specversion: "1.0";
  /** Identifies the event; with `source`, unique per distinct event. */
  readonly id: string;
  /** URI-reference naming the context in which the event happened. */
  readonly source: string;
  /** The kind of event, e.g. `com.example.order.created`. */
  readonly type: string;
  /** RFC 2046 media type of `data`. */
  readonly datacontenttype?: string;
  /** Absolute URI of the schema `data` adheres to. */
  readonly dataschema?: string;
  /** The subject of the event in the context of `source`. */
  readonly subject?: string;
  /** RFC 3339 timestamp of when the occurrence happened, kept exactly as given. */
  readonly time?: string;
}

/**
 * What an event can be made from: a Posthorn event, an instance of the `cloudevents` package's
 * `CloudEvent` class, or any object of its `CloudEventV1` shape (attributes and extensions as
 * top-level properties, `data` or `data_base64`). `time` may be a `Date`.
 */
export interface CloudEventInit<T = unknown> {
  /**
   * Must be `"1.0"`. Optional in the type for {@link CloudEvent.create}, which fills it; the
   * constructor rejects an init without it.
   */
  specversion?: string;
  /** Identifies the event; a non-empty String. */
  id: string;
  /** A non-empty URI-reference naming the context in which the event happened. */
  source: string;
  /** The kind of event; a non-empty String. */
  type: string;
  /** RFC 2046 media type of `data`. */
  datacontenttype?: string | undefined;
  /** Absolute URI of the schema `data` adheres to. */
  dataschema?: string | undefined;
  /** The subject of the event in the context of `source`; a non-empty String when present. */
  subject?: string | undefined;
  /** When the occurrence happened: an RFC 3339 timestamp, or a `Date` (converted to one). */
  time?: string | Date | undefined;
  /**
   * The payload: bytes (`Uint8Array`), a string, or a JSON value when the content type is JSON
   * or absent. `null` is kept as data; `undefined` means none. A function, a symbol or a bigint
   * is refused (`InvalidEvent`): no format can carry one.
   */
  data?: T;
  /** Binary data in base64, decoded to bytes. Not together with `data` (unless they agree). */
  data_base64?: string | undefined;
  /**
   * Extension attributes: names of lower-case letters and digits; values Boolean, Integer,
   * String, `Uint8Array` (Binary), `URL` (URI) or `Date` (Timestamp). `undefined` and `null`
   * leave an attribute out.
   */
  [extension: string]: unknown;
}

/** Anything accepted where an event is: an instance or the plain `CloudEventV1` shape. */
export type CloudEventLike<T = unknown> = CloudEvent<T> | CloudEventInit<T>;

/** What {@link CloudEvent.create} takes: `id`, `specversion` and `time` may be left out. */
export type CloudEventCreateInit<T = unknown> = Omit<CloudEventInit<T>, "id"> & {
  /** The event's id; a random UUID when left out. */
  id?: string;
};

/** Options for {@link CloudEvent.create}. */
export interface CreateEventOptions {
  /** Fill `time` with the current time when absent. Defaults to `true`. */
  fillTime?: boolean;
}

const BRAND = Symbol.for("posthorn.CloudEvent");

function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/**
 * A CloudEvents 1.0 event: context attributes and extensions as top-level properties, and
 * `data`. Instances are validated on construction and frozen; methods return changed copies.
 * Methods have upper-case letters in their names, so they never collide with an attribute.
 *
 * Binary data is a `Uint8Array`. `data_base64` is accepted on input and turned into bytes.
 *
 * @example
 * ```ts
 * const event = CloudEvent.create<Order>({
 *   type: "com.example.order.created",
 *   source: "/orders",
 *   datacontenttype: "application/json",
 *   data: { orderId: 42 },
 * });
 * ```
 */
export class CloudEvent<T = unknown> implements CloudEventAttributes {
  /** The CloudEvents version the event follows; always `"1.0"`. */
  declare readonly specversion: "1.0";
  /** Identifies the event; with `source`, unique per distinct event. */
  declare readonly id: string;
  /** URI-reference naming the context in which the event happened. */
  declare readonly source: string;
  /** The kind of event, e.g. `com.example.order.created`. */
  declare readonly type: string;
  /** RFC 2046 media type of `data`. */
  declare readonly datacontenttype?: string;
  /** Absolute URI of the schema `data` adheres to. */
  declare readonly dataschema?: string;
  /** The subject of the event in the context of `source`. */
  declare readonly subject?: string;
  /** RFC 3339 timestamp of when the occurrence happened; a `Date` given is converted to one. */
  declare readonly time?: string;
  /** The event payload. Absent when the event has no data. */
  declare readonly data?: T;
  /** Extension attributes, as top-level properties. */
  readonly [extension: string]: unknown;

  /**
   * Builds and validates an event. Every required attribute must be present.
   *
   * @param init - the attributes, extensions and data; `specversion` must be `"1.0"`
   * @throws {@link PosthornError} `InvalidEvent` naming the first attribute that breaks a rule
   */
  constructor(init: CloudEventInit<T>) {
    buildInto(this as unknown as Record<string, unknown>, init);
    Object.freeze(this);
  }

  /**
   * Makes a new event, filling `id` (a random UUID), `specversion` and, unless told not to,
   * `time` (now) when they are absent.
   *
   * @param init - the attributes, extensions and data
   * @param options - whether to fill `time`
   * @throws {@link PosthornError} `InvalidEvent` naming the first attribute that breaks a rule
   *   (or without an attribute, when `init` is not an object)
   */
  static create<T>(init: CloudEventCreateInit<T>, options: CreateEventOptions = {}): CloudEvent<T> {
    if (typeof init !== "object" || init === null) throw invalidEvent("an event must be an object");
    const full = ownMembers(init as unknown as Record<string, unknown>) as CloudEventInit<T>;
    if (full.id === undefined) full.id = randomId();
    if (full.specversion === undefined) full.specversion = "1.0";
    if (full.time === undefined && options.fillTime !== false) full.time = new Date();
    return new CloudEvent(full);
  }

  /**
   * The event as a Posthorn `CloudEvent`: returned as is when it already is one, otherwise
   * validated and converted (for example an instance of the `cloudevents` package's class).
   *
   * @param input - the event or its plain shape
   * @throws {@link PosthornError} `InvalidEvent` when `input` is not a valid event
   */
  static from<T>(input: CloudEventLike<T>): CloudEvent<T> {
    return isCloudEvent<T>(input) ? input : new CloudEvent(input as CloudEventInit<T>);
  }

  /**
   * A copy with some attributes changed. An attribute set to `undefined` is removed.
   *
   * @param patch - the attributes (or `data`, `data_base64`) to set; `data_base64` without
   *   `data` replaces the data
   * @throws {@link PosthornError} `InvalidEvent` when the result breaks a rule, or `patch` is not
   *   an object
   */
  cloneWith<U = T>(patch: Partial<CloudEventInit<U>>): CloudEvent<U> {
    if (typeof patch !== "object" || patch === null) {
      throw invalidEvent("cloneWith takes an object of the attributes to change");
    }
    const skipData = "data_base64" in patch && !("data" in patch);
    const next = ownMembers(
      this as unknown as Record<string, unknown>,
      skipData ? "data" : undefined,
    );
    for (const key of Object.keys(patch))
      setOwn(next, key, (patch as Record<string, unknown>)[key]);
    return new CloudEvent(next as CloudEventInit<U>);
  }

  /**
   * A copy with other data (and, when given, another `datacontenttype`).
   *
   * @param data - the new data; `undefined` removes it
   * @param datacontenttype - the new content type; when left out the current one is kept
   * @throws {@link PosthornError} `InvalidEvent` when the data does not fit the content type
   */
  withData<U>(data: U, datacontenttype?: string): CloudEvent<U> {
    const patch: Partial<CloudEventInit<U>> = { data };
    if (datacontenttype !== undefined) patch.datacontenttype = datacontenttype;
    return this.cloneWith(patch);
  }

  /** A copy without data. */
  withoutData(): CloudEvent<never> {
    return new CloudEvent(
      ownMembers(this as unknown as Record<string, unknown>, "data") as CloudEventInit<never>,
    );
  }

  /** Whether the event carries data (a `data` member, even if it is `null`). */
  hasData(): boolean {
    return Object.hasOwn(this, "data");
  }

  /** Every context attribute and extension (not `data`), as a new plain object. */
  getAttributes(): Record<string, AttributeValue> {
    const out: Record<string, AttributeValue> = {};
    for (const key of Object.keys(this)) {
      if (key !== "data") out[key] = this[key] as AttributeValue;
    }
    return out;
  }

  /** The extension attributes only, as a new plain object. */
  getExtensions(): Record<string, AttributeValue> {
    const out: Record<string, AttributeValue> = {};
    for (const key of Object.keys(this)) {
      if (!KNOWN.has(key)) out[key] = this[key] as AttributeValue;
    }
    return out;
  }

  /**
   * The event in the shape of the JSON event format and of the `cloudevents` package's
   * `CloudEventV1`: binary data becomes `data_base64`. `JSON.stringify(event)` uses it.
   */
  toJSON(): Record<string, unknown> {
    return jsonMembers(this);
  }
}

/**
 * The members of an event as the JSON event format writes them, in the event's order: Binary
 * values as base64, binary `data` as `data_base64`. What `toJSON()` returns; without `data`, for
 * a writer that puts the data in itself (the JSON format splices a large `data_base64` in after
 * the rest, rather than have `JSON.stringify` scan it).
 *
 * @param event - the event
 * @param withData - whether to include `data` (default `true`)
 */
export function jsonMembers(event: CloudEvent, withData = true): Record<string, unknown> {
  const record = event as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(record)) {
    const value = record[key];
    if (key !== "data") out[key] = isBytes(value) ? base64Encode(value) : value;
    else if (!withData) continue;
    else if (isBytes(value)) out.data_base64 = base64Encode(value);
    else out.data = value;
  }
  return out;
}

Object.defineProperty(CloudEvent.prototype, BRAND, { value: true });

/**
 * A copy of a valid event with other data, the data not checked against `datacontenttype`: what
 * `EventRouter` hands a route's handler when a schema's output replaces the data (bytes
 * decoded into an object under `application/avro`, text split into a list). The attributes are
 * the event's own, already valid.
 *
 * @param event - a valid event
 * @param data - the new data; `undefined` for none
 * @internal
 */
export function withDataAsIs<U>(event: CloudEvent, data: U): CloudEvent<U> {
  const record = event as unknown as Record<string, unknown>;
  const copy = Object.create(CloudEvent.prototype) as Record<string, unknown>;
  for (const key of Object.keys(record)) if (key !== "data") copy[key] = record[key];
  if (data !== undefined) copy.data = data;
  return Object.freeze(copy) as unknown as CloudEvent<U>;
}

const KNOWN = new Set([
  "specversion",
  "id",
  "source",
  "type",
  "datacontenttype",
  "dataschema",
  "subject",
  "time",
  "data",
]);

/**
 * Whether `value` is a Posthorn `CloudEvent` instance (from any copy of core).
 *
 * @param value - anything
 */
export function isCloudEvent<T = unknown>(value: unknown): value is CloudEvent<T> {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as Record<symbol, unknown>)[BRAND] === true
  );
}

/**
 * Makes an event WITHOUT validation, for tests that must hand an invalid event to an encoder to
 * prove the decoder on the other side rejects it. Never use it for real traffic.
 *
 * @param attributes - the members to set as they are; `undefined` ones are left out
 * @internal
 */
export function createUncheckedEvent(attributes: Record<string, unknown>): CloudEvent {
  const event = Object.create(CloudEvent.prototype) as Record<string, unknown>;
  for (const key of Object.keys(attributes)) {
    if (attributes[key] !== undefined) {
      Object.defineProperty(event, key, { value: attributes[key], enumerable: true });
    }
  }
  return Object.freeze(event) as unknown as CloudEvent;
}

/**
 * A plain object with the own enumerable members of `source` (but `skip`), written as own data
 * members, `__proto__` included. Used where a spread would be followed by new members: V8 builds
 * that through a slow path (about 0.5 us per added member on Node 20).
 */
function ownMembers(source: Record<string, unknown>, skip?: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(source)) {
    if (key !== skip) setOwn(out, key, source[key]);
  }
  return out;
}

/** `target[key] = value` as an own data member, even for `__proto__`. */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(target, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else target[key] = value;
}

function buildInto(target: Record<string, unknown>, init: CloudEventInit): void {
  if (typeof init !== "object" || init === null) throw invalidEvent("an event must be an object");
  const specversion = init.specversion;
  if (specversion !== "1.0") {
    throw invalidEvent(
      specversion === undefined
        ? "specversion is required"
        : `specversion must be "1.0", got ${quoted(String(specversion))}`,
      "specversion",
    );
  }
  target.specversion = "1.0";
  const id = init.id;
  if (typeof id !== "string" || id.length === 0 || !isValidString(id)) {
    throw invalidEvent(badString("id", id, true), "id");
  }
  target.id = id;
  const source = init.source;
  if (typeof source !== "string" || source.length === 0 || !isUriReference(source)) {
    throw invalidEvent("source is required and must be a non-empty URI-reference", "source");
  }
  target.source = source;
  const type = init.type;
  if (typeof type !== "string" || type.length === 0 || !isValidString(type)) {
    throw invalidEvent(badString("type", type, true), "type");
  }
  target.type = type;

  const hasData = Object.hasOwn(init, "data") && init.data !== undefined;
  const base64 = init.data_base64;
  for (const key of Object.keys(init)) {
    let value = init[key];
    if (value === undefined || value === null) continue;
    // A switch, not Set/Map look-ups: property names are internalized strings, so each case is a
    // pointer comparison, and this loop runs for every member of every event built or decoded.
    switch (key) {
      case "specversion":
      case "id":
      case "source":
      case "type":
      case "data":
      case "data_base64":
        continue;
      case "datacontenttype":
        if (!(typeof value === "string" && isMediaType(value))) {
          throw invalidEvent("datacontenttype must be an RFC 2046 media type", key);
        }
        target.datacontenttype = value;
        continue;
      case "dataschema":
        if (!(typeof value === "string" && value.length > 0 && isAbsoluteUri(value))) {
          throw invalidEvent("dataschema must be a non-empty absolute URI", key);
        }
        target.dataschema = value;
        continue;
      case "subject":
        if (!(typeof value === "string" && value.length > 0 && isValidString(value))) {
          throw invalidEvent(badString("subject", value, false), key);
        }
        target.subject = value;
        continue;
      case "time":
        if (value instanceof Date) {
          if (Number.isNaN(value.getTime())) throw invalidEvent("time is an invalid Date", "time");
          value = dateToTimestamp(value);
        }
        if (!(typeof value === "string" && isTimestamp(value))) {
          throw invalidEvent("time must be an RFC 3339 timestamp", key);
        }
        target.time = value;
        continue;
      default:
        if (!isAttributeName(key)) {
          throw invalidEvent(
            `attribute name ${quoted(key)} must consist of lower-case letters and digits`,
            key,
          );
        }
        target[key] = checkExtension(key, value);
        checkDeclared(key, target[key] as AttributeValue);
    }
  }
  // An instance of the `cloudevents` package's class carries binary data twice, as `data` bytes
  // and as `data_base64`: that is one payload, accepted when the two agree.
  const sameBytes =
    hasData &&
    isBytes(init.data) &&
    typeof base64 === "string" &&
    base64Encode(init.data) === base64;
  if (base64 !== undefined && base64 !== null && !sameBytes) {
    if (hasData)
      throw invalidEvent("an event cannot have both data and data_base64", "data_base64");
    if (typeof base64 !== "string")
      throw invalidEvent("data_base64 must be a string", "data_base64");
    try {
      target.data = base64Decode(base64, "data_base64");
    } catch (err) {
      throw invalidEvent("data_base64 is not valid base64", "data_base64", err);
    }
  } else if (Object.hasOwn(init, "data") && init.data !== undefined) {
    target.data = init.data;
  }
  if (target.data !== undefined && !isBytes(target.data)) {
    checkData(target.data, target.datacontenttype as string | undefined);
  }
}

/**
 * Why `value` is no non-empty String for `name`: missing, of another type, empty, or holding a
 * character a String may not (a tab or a line break read from a file is the usual one).
 */
function badString(name: string, value: unknown, required: boolean): string {
  const rule = `${name}${required ? " is required and" : ""} must be a non-empty String`;
  if (value === undefined || value === null) return rule;
  if (typeof value !== "string") return `${rule}, got a ${typeof value}`;
  if (value.length === 0) return `${rule}, got an empty one`;
  return `${rule} without control characters, noncharacters or lone surrogates (a tab or a line break is one), got ${quoted(value)}`;
}

/**
 * An extension declared in the default registry (the spec's, such as `severitynumber` Integer,
 * and the application's `declareExtension`) must be readable as its type: every decoder that
 * knows the declaration refuses the event otherwise (`ce-severitynumber: high`), so a sender
 * would publish what no such receiver takes. A string that parses as the type passes, as it does
 * on receipt.
 */
function checkDeclared(name: string, value: AttributeValue): void {
  const declared = extensions.get(name)?.type;
  if (declared === undefined || declared === "String") return;
  asDeclaredType(name, value, declared, "the event");
}

function checkExtension(name: string, value: unknown): AttributeValue {
  if (typeof value === "string") {
    if (!isValidString(value)) {
      throw invalidEvent(`${name} holds a control character, noncharacter or lone surrogate`, name);
    }
    return value;
  }
  if (typeof value === "boolean" || isBytes(value)) return value;
  if (typeof value === "number") {
    if (!isInteger(value))
      throw invalidEvent(`${name} must be an Integer in the signed 32-bit range`, name);
    return value;
  }
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw invalidEvent(`${name} is an invalid Date`, name);
    return dateToTimestamp(value);
  }
  if (value instanceof URL) {
    const text = value.href;
    checkValue(text, "URI", name);
    return text;
  }
  throw invalidEvent(
    `${name} has a value of type ${typeof value}; extensions take Boolean, Integer, String, Binary, URI or Timestamp values`,
    name,
  );
}

function checkData(data: unknown, datacontenttype: string | undefined): void {
  // Only strings and JSON values can be carried without bytes; a non-string under a content type
  // that is not JSON has no encoding any format could write (JSON format 3.1.1).
  if (typeof data === "string") return;
  // Nor has a function, a symbol or a bigint: the JSON format left such data out (an event with
  // data arrived without), where binary mode and the other formats refused it.
  if (typeof data === "function" || typeof data === "symbol" || typeof data === "bigint") {
    throw invalidEvent(`data of type ${typeof data} has no JSON representation`, "data");
  }
  if (datacontenttype === undefined || isJsonContentType(datacontenttype)) return;
  throw invalidEvent(
    `data of type ${data === null ? "null" : typeof data} needs a JSON datacontenttype or must be a string or Uint8Array, not ${datacontenttype}`,
    "data",
  );
}
