import {
  asDeclaredType,
  asDecodeError,
  CloudEvent,
  type CloudEventLike,
  checkCountOption,
  DEFAULT_MAX_JSON_DEPTH,
  decodeData,
  extensions as defaultRegistry,
  type EventFormat,
  type ExtensionRegistry,
  effectiveContentType,
  encodeData,
  inputBytes,
  invalidEvent,
  isBytes,
  isContextAttribute,
  isInteger,
  malformed,
  parseTimestamp,
  quoted,
  reusedWriter,
} from "@posthorn/core";
import { AvroReader, AvroWriter } from "./avro-io.js";
import { fromMicros, toMicros } from "./timestamp-micros.js";

/** Media type of one event in the compact Avro format (avro-compact-format.md section 3). */
export const AVRO_COMPACT_CONTENT_TYPE = "application/cloudevents+avro-compact";

/** Options for {@link avroCompactFormat}. */
export interface AvroCompactFormatOptions {
  /**
   * Where the types of extensions are looked up: declared Timestamp extensions travel as
   * `timestamp-micros`, and on decoding a declared extension gets its declared type (a string is
   * read as it, a value of another type is an `InvalidEvent`). Defaults to core's `extensions`
   * registry. A binding given a `registry` option of its own decodes with this format adapted to
   * that one ({@link EventFormat.withRegistry}).
   */
  registry?: ExtensionRegistry;
  /**
   * Deepest nesting of JSON data accepted when decoding: a whole number, 0 or more, or `Infinity`; anything else is `NotSupported` when the format is made.
   * Default 128.
   */
  maxDepth?: number;
}

// Branches of the extension value union: boolean, int, timestamp-micros, string, bytes.
const EXT_BOOLEAN = 0;
const EXT_INT = 1;
const EXT_TIMESTAMP = 2;
const EXT_STRING = 3;
// Branches of the data union: bytes, null.
const DATA_BYTES = 0;
const DATA_NULL = 1;

// One writer kept from encode to encode; an encode nested in another (data's toJSON encoding an
// event in this format) gets its own.
const encodeWith = reusedWriter(() => new AvroWriter());

/**
 * The compact Avro format (`application/cloudevents+avro-compact`), a working draft of the
 * CloudEvents specification (working-drafts/avro-compact-format.md): `id`, `source`, `type` and
 * the optional context attributes as their own fields; `specversion` implied (always `1.0`);
 * `time` and declared Timestamp extensions as `timestamp-micros`; other extensions in a typed
 * map; `data` as bytes, written as binary-mode bindings write it (JSON data as JSON text, with
 * `datacontenttype: application/json` written when the event names none).
 *
 * A `time` finer than a microsecond cannot be carried and is refused with `InvalidEvent` rather
 * than rounded; a Timestamp extension that fine travels as a string instead. The draft defines
 * no batch. `withRegistry(other)` gives the same format with the same `maxDepth` using `other`
 * for the types of extensions (itself for the registry it already has).
 *
 * @param options - the extension registry and the JSON nesting limit for decoding (default 128)
 * @throws {@link PosthornError} `NotSupported` for a `maxDepth` that is not a whole number of 0 or
 *   more (or `Infinity`): `NaN` compared false and turned the limit off
 * @example
 * ```ts
 * const format = avroCompactFormat();
 * const back = format.decode(format.encode(event));
 * ```
 */
export function avroCompactFormat(options: AvroCompactFormatOptions = {}): EventFormat {
  checkCountOption("maxDepth", options.maxDepth, 0);
  const registry = options.registry ?? defaultRegistry;
  const limits = { maxDepth: options.maxDepth ?? DEFAULT_MAX_JSON_DEPTH };
  const format: EventFormat = {
    name: "avro-compact",
    contentType: AVRO_COMPACT_CONTENT_TYPE,
    text: false,
    encode(input: CloudEventLike): Uint8Array {
      const event = CloudEvent.from(input);
      return encodeWith((w) => writeEvent(w, event, registry));
    },
    decode(bytes: Uint8Array): CloudEvent {
      try {
        const r = new AvroReader(inputBytes(bytes, "avro-compact decode"));
        const init: Record<string, unknown> = {};
        init.specversion = "1.0";
        init.id = r.string();
        init.source = r.string();
        init.type = r.string();
        if (r.branch(2) === 1) init.datacontenttype = r.string();
        if (r.branch(2) === 1) init.dataschema = r.string();
        if (r.branch(2) === 1) init.subject = r.string();
        if (r.branch(2) === 1) init.time = fromMicros(r.exactLong());
        for (let n = r.blockCount(2); n > 0; n = r.blockCount(2)) {
          for (let i = 0; i < n; i++) {
            const name = r.key();
            if (
              isContextAttribute(name) ||
              name === "data" ||
              name === "data_base64" ||
              name === "__proto__"
            ) {
              throw invalidEvent(`${name} cannot be an extension`, name);
            }
            // As the other Avro format's attribute map: a repeated key is broken bytes, not an
            // event that breaks a rule.
            if (Object.hasOwn(init, name)) {
              throw malformed(`Avro compact extensions map repeats ${JSON.stringify(name)}`);
            }
            const value = readExtension(r);
            const declared = registry.get(name)?.type;
            init[name] =
              declared === undefined ? value : asDeclaredType(name, value, declared, "Avro");
          }
        }
        if (r.branch(2) === DATA_BYTES) {
          const data = decodeData(r.bytes(), init.datacontenttype as string | undefined, limits);
          if (data !== undefined) init.data = data;
        }
        r.expectEnd("Avro compact event");
        return new CloudEvent(init as never);
      } catch (err) {
        throw asDecodeError(err, "Avro compact event");
      }
    },
    withRegistry(other: ExtensionRegistry): EventFormat {
      return other === registry
        ? format
        : avroCompactFormat({ maxDepth: limits.maxDepth, registry: other });
    },
  };
  return format;
}

function optionalString(w: AvroWriter, value: unknown, name: string): void {
  if (value === undefined) {
    w.long(0);
    return;
  }
  if (typeof value !== "string") throw invalidEvent(`${name} must be a string`, name);
  w.long(1);
  w.string(value);
}

function requiredString(w: AvroWriter, value: unknown, name: string): void {
  if (value === undefined) value = "";
  if (typeof value !== "string") throw invalidEvent(`${name} must be a string`, name);
  w.string(value);
}

function writeEvent(w: AvroWriter, event: CloudEvent, registry: ExtensionRegistry): void {
  // avro-compact-format.md 1: the schema fixes specversion 1.0.
  if (event.specversion !== "1.0") {
    throw invalidEvent("the compact Avro format carries only specversion 1.0", "specversion");
  }
  requiredString(w, event.id, "id");
  requiredString(w, event.source, "source");
  requiredString(w, event.type, "type");
  const hasData = Object.hasOwn(event, "data");
  const contentType = hasData
    ? effectiveContentType(event.data, event.datacontenttype)
    : event.datacontenttype;
  optionalString(w, contentType, "datacontenttype");
  optionalString(w, event.dataschema, "dataschema");
  optionalString(w, event.subject, "subject");
  if (event.time === undefined) w.long(0);
  else {
    const micros = typeof event.time === "string" ? toMicros(event.time) : undefined;
    if (micros === undefined) {
      // Say which: the message told a 9999-12-31T23:00:00-05:00 it was too fine.
      const fine = (parseTimestamp(String(event.time))?.fraction.length ?? 0) > 6;
      throw invalidEvent(
        fine
          ? `time ${quoted(String(event.time))} is finer than a microsecond, which the compact Avro format's timestamp-micros cannot carry (it is refused, not rounded)`
          : `time ${quoted(String(event.time))} falls outside the years 0000 to 9999 in UTC, which the compact Avro format's timestamp-micros cannot carry`,
        "time",
      );
    }
    w.long(1);
    writeMicros(w, micros);
  }
  const names = Object.keys(event).filter((k) => !isContextAttribute(k) && k !== "data");
  if (names.length > 0) {
    w.long(names.length);
    for (const name of names) {
      w.string(name);
      writeExtension(w, name, event[name], registry);
    }
  }
  w.long(0);
  const bytes = hasData ? encodeData(event.data, contentType) : undefined;
  if (bytes === undefined) w.long(DATA_NULL);
  else {
    w.long(DATA_BYTES);
    w.bytes(bytes);
  }
}

function writeExtension(
  w: AvroWriter,
  name: string,
  value: unknown,
  registry: ExtensionRegistry,
): void {
  if (typeof value === "string") {
    const micros = registry.typeOf(name) === "Timestamp" ? toMicros(value) : undefined;
    if (micros !== undefined) {
      w.long(EXT_TIMESTAMP);
      writeMicros(w, micros);
    } else {
      w.long(EXT_STRING);
      w.string(value);
    }
  } else if (typeof value === "boolean") {
    w.long(EXT_BOOLEAN);
    w.byte(value ? 1 : 0);
  } else if (typeof value === "number") {
    if (!isInteger(value)) {
      throw invalidEvent(`${name} must be an Integer in the signed 32-bit range`, name);
    }
    w.long(EXT_INT);
    w.long(value);
  } else if (isBytes(value)) {
    w.long(4);
    w.bytes(value);
  } else {
    throw invalidEvent(
      `${name} has a value of type ${typeof value}, which Avro cannot carry`,
      name,
    );
  }
}

function writeMicros(w: AvroWriter, micros: number | bigint): void {
  if (typeof micros === "number") w.long(micros);
  else w.bigLong(micros);
}

function readExtension(r: AvroReader): unknown {
  switch (r.branch(5)) {
    case EXT_BOOLEAN:
      return r.boolean();
    case EXT_INT:
      return r.int();
    case EXT_TIMESTAMP:
      return fromMicros(r.exactLong());
    case EXT_STRING:
      return r.string();
    default:
      return r.bytes();
  }
}
