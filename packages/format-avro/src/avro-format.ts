import {
  asDeclaredType,
  asDecodeError,
  CloudEvent,
  type CloudEventLike,
  checkCountOption,
  DEFAULT_MAX_JSON_DEPTH,
  extensions as defaultRegistry,
  type EventFormat,
  type ExtensionRegistry,
  inputBytes,
  invalidEvent,
  isBytes,
  isInteger,
  isJsonContentType,
  isPosthornError,
  malformed,
  parseJson,
  reusedWriter,
  utf8Decode,
  utf8Encode,
} from "@posthorn/core";
import { AvroReader, AvroWriter } from "./avro-io.js";

/** Media type of one event in the Avro format (avro-format.md section 4). */
export const AVRO_CONTENT_TYPE = "application/cloudevents+avro";

/** Options for {@link avroFormat}. */
export interface AvroFormatOptions {
  /**
   * Deepest nesting of JSON data accepted when decoding: a whole number, 0 or more, or `Infinity`; anything else is `NotSupported` when the format is made.
   * Default 128.
   */
  maxDepth?: number;
  /**
   * Where extension types are declared, for decoding: a declared extension gets its declared
   * type. Defaults to core's `extensions` registry. A binding given a `registry` option of its
   * own decodes with this format adapted to that one ({@link EventFormat.withRegistry}).
   */
  registry?: ExtensionRegistry;
}

// Branches of the attribute value union: null, boolean, int, string, bytes.
const ATTR_NULL = 0;
const ATTR_BOOLEAN = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_BYTES = 4;
// Branches of the data union: bytes, null, boolean, map, array, double, string.
const DATA_BYTES = 0;
const DATA_NULL = 1;
const DATA_BOOLEAN = 2;
const DATA_MAP = 3;
const DATA_ARRAY = 4;
const DATA_DOUBLE = 5;
const DATA_STRING = 6;
// Branches of the top-level map's member union: null, boolean, record, double, string.
const MEMBER_NULL = 0;
const MEMBER_BOOLEAN = 1;
const MEMBER_RECORD = 2;
const MEMBER_DOUBLE = 3;
const MEMBER_STRING = 4;
// Branches of the record's value map union: null, boolean, map, array, double, string.
const INNER_NULL = 0;
const INNER_BOOLEAN = 1;
const INNER_MAP = 2;
const INNER_ARRAY = 3;
const INNER_DOUBLE = 4;
const INNER_STRING = 5;

const JSON_NULL_BYTES = utf8Encode("null");
// One writer kept from encode to encode; an encode nested in another (data's toJSON encoding an
// event in this format) gets its own.
const encodeWith = reusedWriter(() => new AvroWriter());

/**
 * The CloudEvents Avro event format (`application/cloudevents+avro`, avro-format.md).
 *
 * Every attribute, required ones included, goes into the `attribute` map (section 2.4): Boolean
 * as `boolean`, Integer as `int`, Binary as `bytes`, and String, URI, URI-reference and Timestamp
 * as `string` (section 2.1). Data (section 3): bytes as `bytes`; a string (text, or a JSON string)
 * as `string`; JSON data as the JSON-value structure of the schema (objects as maps, arrays,
 * numbers as doubles, booleans), with a JSON `null` written as the bytes `null` so that it stays
 * distinct from an event without data (the `null` branch). The format defines no batch.
 *
 * Decoding reads the `bytes` branch under a JSON content type as JSON (as binary-mode bindings
 * do), refuses unknown union branches, lengths and counts beyond the input, trailing bytes and
 * JSON nested deeper than `maxDepth` with `MalformedInput`, and validates the event. Extensions
 * declared in the registry get their declared type (a `string` is read as it, a value of another
 * type is an `InvalidEvent`), as in the bindings' binary modes. `withRegistry(other)` gives the
 * same format with the same `maxDepth` reading declared types from `other` (itself for the
 * registry it already has).
 *
 * @param options - the extension registry and the JSON nesting limit for decoding (default 128)
 * @throws {@link PosthornError} `NotSupported` for a `maxDepth` that is not a whole number of 0 or
 *   more (or `Infinity`): `NaN` compared false and turned the limit off
 * @example
 * ```ts
 * const bytes = avro.encode(event);
 * const back = avro.decode(bytes);
 * ```
 */
export function avroFormat(options: AvroFormatOptions = {}): EventFormat {
  checkCountOption("maxDepth", options.maxDepth, 0);
  const maxDepth = options.maxDepth ?? DEFAULT_MAX_JSON_DEPTH;
  const registry = options.registry ?? defaultRegistry;
  const format: EventFormat = {
    name: "avro",
    contentType: AVRO_CONTENT_TYPE,
    text: false,
    encode(input: CloudEventLike): Uint8Array {
      const event = CloudEvent.from(input);
      try {
        return encodeWith((w) => writeEvent(w, event));
      } catch (err) {
        if (isPosthornError(err)) throw err;
        // A cycle overflows the stack (RangeError); a toJSON of the data may throw anything.
        throw invalidEvent(
          `data cannot be written as Avro: ${(err as Error)?.message ?? String(err)}`,
          "data",
          err,
        );
      }
    },
    decode(bytes: Uint8Array): CloudEvent {
      try {
        const reader = new AvroReader(inputBytes(bytes, "avro.decode"));
        const init = readEvent(reader, maxDepth, registry);
        reader.expectEnd("Avro event");
        return new CloudEvent(init as never);
      } catch (err) {
        throw asDecodeError(err, "Avro event");
      }
    },
    withRegistry(other: ExtensionRegistry): EventFormat {
      return other === registry ? format : avroFormat({ maxDepth, registry: other });
    },
  };
  return format;
}

/** The Avro event format with default limits. */
export const avro: EventFormat = avroFormat();

function writeEvent(w: AvroWriter, event: CloudEvent): void {
  const keys = Object.keys(event);
  const hasData = Object.hasOwn(event, "data");
  const data = event.data;
  // JSON data as the data union holds it (toJSON called once, before anything is written).
  const json = hasData && !isBytes(data) && typeof data !== "string" ? jsonView(data, "") : data;
  // A JSON null goes as the bytes `null`, which read as JSON only under a JSON content type; an
  // event that names none (JSON by json-format.md 3.1.2) says so, as the other formats do.
  const namesJson = hasData && json === null && event.datacontenttype === undefined;
  const count = (hasData ? keys.length - 1 : keys.length) + (namesJson ? 1 : 0);
  // avro-format.md 2.4: the attribute map.
  if (count > 0) {
    w.long(count);
    for (const name of keys) {
      if (name === "data") continue;
      w.string(name);
      writeAttribute(w, name, event[name]);
    }
    if (namesJson) {
      w.string("datacontenttype");
      writeAttribute(w, "datacontenttype", "application/json");
    }
  }
  w.long(0);
  // avro-format.md 3: the data union.
  if (!hasData) {
    w.long(DATA_NULL);
    return;
  }
  if (isBytes(data)) {
    w.long(DATA_BYTES);
    w.bytes(data);
  } else if (typeof data === "string") {
    w.long(DATA_STRING);
    w.string(data);
  } else {
    writeJsonValue(w, json, true);
  }
}

function writeAttribute(w: AvroWriter, name: string, value: unknown): void {
  // avro-format.md 2.1: URI, URI-reference and Timestamp are strings like String.
  if (typeof value === "string") {
    w.long(ATTR_STRING);
    w.string(value);
  } else if (typeof value === "boolean") {
    w.long(ATTR_BOOLEAN);
    w.byte(value ? 1 : 0);
  } else if (typeof value === "number") {
    if (!isInteger(value)) {
      throw invalidEvent(`${name} must be an Integer in the signed 32-bit range`, name);
    }
    w.long(ATTR_INT);
    w.long(value);
  } else if (isBytes(value)) {
    w.long(ATTR_BYTES);
    w.bytes(value);
  } else {
    throw invalidEvent(
      `${name} has a value of type ${typeof value}, which Avro cannot carry`,
      name,
    );
  }
}

/**
 * What JSON.stringify makes of a value (SerializeJSONProperty): toJSON applied, a Number, String
 * or Boolean object as its primitive, functions and symbols as undefined. So the Avro formats
 * carry the same data as the JSON format: `new Number(5)` is 5, not an empty map.
 */
function jsonView(value: unknown, key: string): unknown {
  if ((typeof value === "object" && value !== null) || typeof value === "bigint") {
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function") value = toJSON.call(value, key);
  }
  if (typeof value === "object" && value !== null) {
    if (value instanceof Number) return Number(value);
    if (value instanceof String) return String(value);
    if (value instanceof Boolean) return value.valueOf();
    return value;
  }
  if (typeof value === "function" || typeof value === "symbol") return undefined;
  if (typeof value === "bigint")
    throw invalidEvent("data holds a bigint, which JSON cannot carry", "data");
  return value;
}

function checkNumber(n: number): number {
  if (!Number.isFinite(n)) throw invalidEvent("data holds a non-finite number", "data");
  return n;
}

/**
 * A JSON value as a branch of the data union (`top`) or of a record's value union. The two
 * unions differ only in that the data union has `bytes` first (so a JSON null, whose `null`
 * branch there means "no data", goes as its JSON text) and maps whose values are member unions.
 */
function writeJsonValue(w: AvroWriter, value: unknown, top: boolean, members?: Members): void {
  if (value === null) {
    if (top) {
      w.long(DATA_BYTES);
      w.bytes(JSON_NULL_BYTES);
    } else w.long(INNER_NULL);
  } else if (typeof value === "boolean") {
    w.long(top ? DATA_BOOLEAN : INNER_BOOLEAN);
    w.byte(value ? 1 : 0);
  } else if (typeof value === "number") {
    w.long(top ? DATA_DOUBLE : INNER_DOUBLE);
    w.double(checkNumber(value));
  } else if (typeof value === "string") {
    w.long(top ? DATA_STRING : INNER_STRING);
    w.string(value);
  } else if (Array.isArray(value)) {
    w.long(top ? DATA_ARRAY : INNER_ARRAY);
    writeBoxArray(w, value);
  } else if (typeof value === "object") {
    w.long(top ? DATA_MAP : INNER_MAP);
    const { keys, values } = members ?? presentMembers(value as Record<string, unknown>);
    if (keys.length > 0) {
      w.long(keys.length);
      for (let i = 0; i < keys.length; i++) {
        w.string(keys[i] as string);
        if (top) writeMember(w, values[i]);
        else writeBox(w, values[i]);
      }
    }
    w.long(0);
  } else {
    throw invalidEvent("data has no JSON representation", "data");
  }
}

/** An object's members as JSON.stringify writes them: names, and values as {@link jsonView} sees them. */
interface Members {
  readonly keys: string[];
  readonly values: unknown[];
}

/**
 * The members JSON.stringify writes, each value viewed once (a toJSON called once): those that
 * come out undefined (undefined, functions, symbols, a toJSON that returns undefined) are left
 * out, as JSON leaves them out.
 */
function presentMembers(obj: Record<string, unknown>): Members {
  const keys: string[] = [];
  const values: unknown[] = [];
  for (const key of Object.keys(obj)) {
    const value = jsonView(obj[key], key);
    if (value !== undefined) {
      keys.push(key);
      values.push(value);
    }
  }
  return { keys, values };
}

function writeMember(w: AvroWriter, value: unknown): void {
  if (value === null) w.long(MEMBER_NULL);
  else if (typeof value === "boolean") {
    w.long(MEMBER_BOOLEAN);
    w.byte(value ? 1 : 0);
  } else if (typeof value === "number") {
    w.long(MEMBER_DOUBLE);
    w.double(checkNumber(value));
  } else if (typeof value === "string") {
    w.long(MEMBER_STRING);
    w.string(value);
  } else if (typeof value === "object") {
    w.long(MEMBER_RECORD);
    writeBox(w, value);
  } else {
    throw invalidEvent("data has no JSON representation", "data");
  }
}

/**
 * A JSON value as the AvroCloudEventData record. An object (other than one whose only member is
 * named `value`) is written as its members; anything else as a single member named `value`.
 */
function writeBox(w: AvroWriter, value: unknown): void {
  let members: Members | undefined;
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    members = presentMembers(value as Record<string, unknown>);
    const { keys, values } = members;
    if (!(keys.length === 1 && keys[0] === "value")) {
      if (keys.length > 0) {
        w.long(keys.length);
        for (let i = 0; i < keys.length; i++) {
          w.string(keys[i] as string);
          writeJsonValue(w, values[i], false);
        }
      }
      w.long(0);
      return;
    }
  }
  w.long(1);
  w.string("value");
  writeJsonValue(w, value, false, members);
  w.long(0);
}

function writeBoxArray(w: AvroWriter, items: readonly unknown[]): void {
  if (items.length > 0) {
    w.long(items.length);
    for (let i = 0; i < items.length; i++) {
      // JSON writes undefined, functions and symbols in arrays as null.
      const item = jsonView(items[i], String(i));
      writeBox(w, item === undefined ? null : item);
    }
  }
  w.long(0);
}

// ---- decoding

function readEvent(
  r: AvroReader,
  maxDepth: number,
  registry: ExtensionRegistry,
): Record<string, unknown> {
  // A plain object (faster than a null-prototype one); `__proto__` is refused below, so no key
  // can reach the prototype.
  const init: Record<string, unknown> = {};
  // Each map entry takes at least a key length byte and a branch byte.
  for (let n = r.blockCount(2); n > 0; n = r.blockCount(2)) {
    for (let i = 0; i < n; i++) {
      const name = r.key();
      if (Object.hasOwn(init, name)) {
        throw malformed(`Avro attribute map repeats ${JSON.stringify(name)}`);
      }
      if (name === "data" || name === "data_base64" || name === "__proto__") {
        throw invalidEvent(`${name} is not an attribute name`, name);
      }
      const value = readAttribute(r);
      if (value === undefined) continue;
      const declared = registry.get(name)?.type;
      init[name] = declared === undefined ? value : asDeclaredType(name, value, declared, "Avro");
    }
  }
  const branch = r.branch(7);
  const contentType = init.datacontenttype;
  const json = typeof contentType !== "string" || isJsonContentType(contentType);
  switch (branch) {
    case DATA_BYTES: {
      const bytes = r.bytes();
      if (typeof contentType === "string" && json) {
        // Under a JSON content type the bytes are JSON text (a JSON null, or another producer
        // that writes all data as bytes).
        if (bytes.length > 0) {
          init.data = parseJson(utf8Decode(bytes, "JSON data"), "JSON data", { maxDepth });
        }
      } else {
        init.data = bytes;
      }
      break;
    }
    case DATA_NULL:
      break;
    case DATA_BOOLEAN:
      init.data = r.boolean();
      break;
    case DATA_MAP:
      init.data = readMembers(r, maxDepth, 1);
      break;
    case DATA_ARRAY:
      init.data = readBoxArray(r, maxDepth, 1);
      break;
    case DATA_DOUBLE:
      init.data = jsonNumber(r);
      break;
    default:
      init.data = r.string();
      break;
  }
  return init;
}

function readAttribute(r: AvroReader): unknown {
  switch (r.branch(5)) {
    case ATTR_NULL:
      return undefined;
    case ATTR_BOOLEAN:
      return r.boolean();
    case ATTR_INT:
      return r.int();
    case ATTR_STRING:
      return r.string();
    default:
      return r.bytes();
  }
}

function setMember(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(obj, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else {
    obj[key] = value;
  }
}

function tooDeep(maxDepth: number): Error {
  return malformed(`Avro JSON data is nested deeper than ${maxDepth} levels`);
}

function readMembers(r: AvroReader, maxDepth: number, depth: number): Record<string, unknown> {
  if (depth > maxDepth) throw tooDeep(maxDepth);
  const obj: Record<string, unknown> = {};
  for (let n = r.blockCount(2); n > 0; n = r.blockCount(2)) {
    for (let i = 0; i < n; i++) {
      const key = r.key();
      let value: unknown;
      switch (r.branch(5)) {
        case MEMBER_NULL:
          value = null;
          break;
        case MEMBER_BOOLEAN:
          value = r.boolean();
          break;
        case MEMBER_RECORD:
          value = readBox(r, maxDepth, depth + 1);
          break;
        case MEMBER_DOUBLE:
          value = jsonNumber(r);
          break;
        default:
          value = r.string();
          break;
      }
      setMember(obj, key, value);
    }
  }
  return obj;
}

function readBox(r: AvroReader, maxDepth: number, depth: number): unknown {
  if (depth > maxDepth) throw tooDeep(maxDepth);
  const obj: Record<string, unknown> = {};
  let count = 0;
  let only: unknown;
  for (let n = r.blockCount(2); n > 0; n = r.blockCount(2)) {
    for (let i = 0; i < n; i++) {
      const key = r.key();
      const value = readInner(r, maxDepth, depth);
      setMember(obj, key, value);
      if (count++ === 0 && key === "value") only = value;
    }
  }
  // A record holding one member named `value` is that value; any other record is an object.
  return count === 1 && Object.hasOwn(obj, "value") ? only : obj;
}

function readInner(r: AvroReader, maxDepth: number, depth: number): unknown {
  switch (r.branch(6)) {
    case INNER_NULL:
      return null;
    case INNER_BOOLEAN:
      return r.boolean();
    case INNER_MAP: {
      if (depth + 1 > maxDepth) throw tooDeep(maxDepth);
      const obj: Record<string, unknown> = {};
      for (let n = r.blockCount(2); n > 0; n = r.blockCount(2)) {
        for (let i = 0; i < n; i++) {
          const key = r.key();
          setMember(obj, key, readBox(r, maxDepth, depth + 1));
        }
      }
      return obj;
    }
    case INNER_ARRAY:
      return readBoxArray(r, maxDepth, depth + 1);
    case INNER_DOUBLE:
      return jsonNumber(r);
    default:
      return r.string();
  }
}

function readBoxArray(r: AvroReader, maxDepth: number, depth: number): unknown[] {
  if (depth > maxDepth) throw tooDeep(maxDepth);
  const items: unknown[] = [];
  // Each item is a record, at least one byte (an empty map).
  for (let n = r.blockCount(1); n > 0; n = r.blockCount(1)) {
    for (let i = 0; i < n; i++) items.push(readBox(r, maxDepth, depth));
  }
  return items;
}

/**
 * A double of the data union, which holds a JSON number: NaN and the infinities are none (an
 * event holding one could not be encoded again in any format).
 */
function jsonNumber(r: AvroReader): number {
  const value = r.double();
  if (!Number.isFinite(value)) {
    throw malformed(`Avro data holds ${value}, which is no JSON number`);
  }
  return value;
}
