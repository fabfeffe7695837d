import {
  asDeclaredType,
  asDecodeError,
  type BatchEventFormat,
  batchOf,
  CloudEvent,
  type CloudEventLike,
  checkCountOption,
  DEFAULT_MAX_JSON_DEPTH,
  decodeData,
  extensions as defaultRegistry,
  type ExtensionRegistry,
  inputBytes,
  invalidEvent,
  isBytes,
  isInteger,
  isJsonContentType,
  type JsonLimits,
  jsonText,
  parseContentType,
  parseJson,
  reusedWriter,
} from "@posthorn/core";
import { fromProtoTimestamp, toProtoTimestamp } from "./timestamp.js";
import { expectWireType, LEN, ProtoReader, ProtoWriter, readTag, VARINT } from "./wire.js";

/** Media type of one event in the Protobuf format (protobuf-format.md section 4). */
export const PROTOBUF_CONTENT_TYPE = "application/cloudevents+protobuf";
/** Media type of a batch in the Protobuf format (protobuf-format.md section 5.2). */
export const PROTOBUF_BATCH_CONTENT_TYPE = "application/cloudevents-batch+protobuf";
/** Content type of protobuf message data (protobuf-format.md section 1.2). */
export const PROTOBUF_DATA_CONTENT_TYPE = "application/protobuf";

/** Options for {@link protobufFormat}. */
export interface ProtobufFormatOptions {
  /**
   * Where attribute types are looked up: declared URI, URI-reference and Timestamp extensions
   * travel as `ce_uri`, `ce_uri_ref` and `ce_timestamp`, and on decoding a declared extension
   * gets its declared type (a string is read as it, a value of another type is an
   * `InvalidEvent`). Defaults to core's `extensions` registry. A binding given a `registry`
   * option of its own decodes with this format adapted to that one
   * ({@link BatchEventFormat.withRegistry}).
   */
  registry?: ExtensionRegistry;
  /**
   * Deepest nesting of JSON data accepted when decoding: a whole number, 0 or more, or `Infinity`; anything else is `NotSupported` when the format is made.
   * Default 128.
   */
  maxDepth?: number;
}

// Field numbers of io.cloudevents.v1.CloudEvent.
const F_ID = 1;
const F_SOURCE = 2;
const F_SPEC_VERSION = 3;
const F_TYPE = 4;
const F_ATTRIBUTES = 5;
const F_BINARY_DATA = 6;
const F_TEXT_DATA = 7;
const F_PROTO_DATA = 8;
// Field numbers of CloudEventAttributeValue (the attr oneof).
const A_BOOLEAN = 1;
const A_INTEGER = 2;
const A_STRING = 3;
const A_BYTES = 4;
const A_URI = 5;
const A_URI_REF = 6;
const A_TIMESTAMP = 7;

// Attributes with their own fields (protobuf-format.md 2.3), never in the attributes map.
const OWN_FIELDS = new Set(["id", "source", "specversion", "type"]);
const PROTOBUF_MEDIA_TYPES = new Set(["application/protobuf", "application/x-protobuf"]);

// One writer kept from encode to encode; an encode nested in another (data's toJSON encoding an
// event in this format) gets its own.
const encodeWith = reusedWriter(() => new ProtoWriter());

/**
 * The CloudEvents Protobuf event format (`application/cloudevents+protobuf`) and its batch
 * (`application/cloudevents-batch+protobuf`), with the field numbers of the specification's
 * `cloudevents.proto`.
 *
 * - `id`, `source`, `specversion` and `type` in their own fields (section 2.3); every other
 *   attribute in the `attributes` map (section 2.4): Boolean as `ce_boolean`, Integer as
 *   `ce_integer`, Binary as `ce_bytes`, and strings as `ce_uri`, `ce_uri_ref` or `ce_timestamp`
 *   when the attribute is declared with that type (`dataschema` is a URI, `time` a Timestamp, the
 *   registry knows the rest), otherwise `ce_string`.
 * - Data (section 3): bytes as `binary_data`, except bytes under `application/protobuf` with a
 *   `dataschema`, which go as `proto_data` (a `google.protobuf.Any` whose type URL is the
 *   `dataschema`); strings and JSON values as `text_data` (JSON data as its JSON text, with
 *   `datacontenttype: application/json` written when the event names none).
 *
 * Decoding is the reverse: `text_data` under a JSON content type is parsed, `binary_data` is read
 * as binary-mode bindings read a payload, and `proto_data` yields the packed message's bytes. A
 * `ce_timestamp` comes back as an RFC 3339 string in UTC (the offset an event was written with is
 * not carried). A declared extension gets its declared type, as in the bindings' binary modes.
 * Truncated or corrupted bytes are `MalformedInput`. `withRegistry(other)` gives the same format
 * with the same `maxDepth` using `other` for the types of attributes (itself for the registry it
 * already has).
 *
 * @param options - the extension registry and the JSON nesting limit for decoding (default 128)
 * @throws {@link PosthornError} `NotSupported` for a `maxDepth` that is not a whole number of 0 or
 *   more (or `Infinity`): `NaN` compared false and turned the limit off
 * @example
 * ```ts
 * const bytes = protobuf.encode(event);
 * const batch = protobuf.decodeBatch(protobuf.encodeBatch(events));
 * ```
 */
export function protobufFormat(options: ProtobufFormatOptions = {}): BatchEventFormat {
  checkCountOption("maxDepth", options.maxDepth, 0);
  const registry = options.registry ?? defaultRegistry;
  const maxDepth = options.maxDepth ?? DEFAULT_MAX_JSON_DEPTH;
  const limits: JsonLimits = { maxDepth };
  const format: BatchEventFormat = {
    name: "protobuf",
    contentType: PROTOBUF_CONTENT_TYPE,
    batchContentType: PROTOBUF_BATCH_CONTENT_TYPE,
    text: false,
    encode(input: CloudEventLike): Uint8Array {
      const event = CloudEvent.from(input);
      return encodeWith((w) => writeEvent(w, event, registry));
    },
    decode(input: Uint8Array): CloudEvent {
      try {
        const bytes = inputBytes(input, "protobuf.decode");
        return new CloudEvent(readEvent(new ProtoReader(bytes), limits, registry) as never);
      } catch (err) {
        throw asDecodeError(err, "protobuf event");
      }
    },
    encodeBatch(events: readonly CloudEventLike[]): Uint8Array {
      const list = batchOf(events, "protobuf.encodeBatch").map((e) => CloudEvent.from(e));
      return encodeWith((w) => {
        // protobuf-format.md 5.1: CloudEventBatch { repeated CloudEvent events = 1; }
        for (const event of list) {
          w.tag(1, LEN);
          const at = w.fork();
          writeEvent(w, event, registry);
          w.join(at);
        }
      });
    },
    decodeBatch(input: Uint8Array): CloudEvent[] {
      try {
        const bytes = inputBytes(input, "protobuf.decodeBatch");
        const r = new ProtoReader(bytes);
        const out: CloudEvent[] = [];
        while (r.pos < r.end) {
          const tag = readTag(r);
          if (tag >>> 3 !== 1) {
            r.skip(tag & 7);
            continue;
          }
          expectWireType(tag, LEN, "events");
          const len = r.length();
          const sub = new ProtoReader(bytes, r.pos, r.pos + len);
          out.push(new CloudEvent(readEvent(sub, limits, registry) as never));
          r.pos += len;
        }
        return out;
      } catch (err) {
        throw asDecodeError(err, "protobuf batch");
      }
    },
    withRegistry(other: ExtensionRegistry): BatchEventFormat {
      return other === registry ? format : protobufFormat({ maxDepth, registry: other });
    },
  };
  return format;
}

/** The Protobuf event format with default options. */
export const protobuf: BatchEventFormat = protobufFormat();

// ---- encoding

function ownField(w: ProtoWriter, field: number, value: unknown, name: string): void {
  if (value === undefined || value === "") return; // proto3: an empty string is not written
  if (typeof value !== "string") throw invalidEvent(`${name} must be a string`, name);
  w.tag(field, LEN);
  w.string(value);
}

function isProtobufMediaType(contentType: unknown): boolean {
  if (typeof contentType !== "string") return false;
  const mediaType = parseContentType(contentType)?.mediaType;
  return mediaType !== undefined && PROTOBUF_MEDIA_TYPES.has(mediaType);
}

function writeEvent(w: ProtoWriter, event: CloudEvent, registry: ExtensionRegistry): void {
  ownField(w, F_ID, event.id, "id");
  ownField(w, F_SOURCE, event.source, "source");
  ownField(w, F_SPEC_VERSION, event.specversion, "specversion");
  ownField(w, F_TYPE, event.type, "type");
  const hasData = Object.hasOwn(event, "data");
  const data = event.data;
  for (const name of Object.keys(event)) {
    if (name === "data" || OWN_FIELDS.has(name)) continue;
    writeAttribute(w, name, event[name], registry);
  }
  const contentType = event.datacontenttype;
  // JSON format 3.1.2: non-binary data without a content type is JSON, and says so when written
  // elsewhere; otherwise a receiver could not tell JSON text from plain text in text_data.
  if (hasData && contentType === undefined && !isBytes(data)) {
    writeAttribute(w, "datacontenttype", "application/json", registry);
  }
  if (!hasData) return;
  if (isBytes(data)) {
    const typeUrl = event.dataschema;
    if (typeof typeUrl === "string" && typeUrl !== "" && isProtobufMediaType(contentType)) {
      // protobuf-format.md 3: a protobuf message goes in proto_data, its type URL in dataschema.
      w.tag(F_PROTO_DATA, LEN);
      const at = w.fork();
      w.tag(1, LEN);
      w.string(typeUrl);
      if (data.length > 0) {
        w.tag(2, LEN);
        w.bytes(data);
      }
      w.join(at);
    } else {
      w.tag(F_BINARY_DATA, LEN);
      w.bytes(data);
    }
    return;
  }
  let text: string | undefined;
  if (typeof data === "string" && contentType !== undefined && !isJsonContentType(contentType)) {
    text = data;
  } else {
    text = jsonText(data);
    if (text === undefined) throw invalidEvent("data has no JSON representation", "data");
  }
  w.tag(F_TEXT_DATA, LEN);
  w.string(text);
}

function writeAttribute(
  w: ProtoWriter,
  name: string,
  value: unknown,
  registry: ExtensionRegistry,
): void {
  // protobuf-format.md 2.4: map<string, CloudEventAttributeValue> attributes = 5, each entry a
  // message { string key = 1; CloudEventAttributeValue value = 2; }.
  w.tag(F_ATTRIBUTES, LEN);
  const entry = w.fork();
  w.tag(1, LEN);
  w.string(name);
  w.tag(2, LEN);
  const at = w.fork();
  if (typeof value === "string") {
    const declared = registry.typeOf(name);
    const ts = declared === "Timestamp" ? toProtoTimestamp(value) : undefined;
    if (ts !== undefined) {
      w.tag(A_TIMESTAMP, LEN);
      const inner = w.fork();
      if (ts.seconds !== 0) {
        w.tag(1, VARINT);
        w.int(ts.seconds);
      }
      if (ts.nanos !== 0) {
        w.tag(2, VARINT);
        w.varint(ts.nanos);
      }
      w.join(inner);
    } else {
      w.tag(declared === "URI" ? A_URI : declared === "URI-reference" ? A_URI_REF : A_STRING, LEN);
      w.string(value);
    }
  } else if (typeof value === "boolean") {
    w.tag(A_BOOLEAN, VARINT);
    w.bool(value);
  } else if (typeof value === "number") {
    if (!isInteger(value)) {
      throw invalidEvent(`${name} must be an Integer in the signed 32-bit range`, name);
    }
    w.tag(A_INTEGER, VARINT);
    w.int(value);
  } else if (isBytes(value)) {
    w.tag(A_BYTES, LEN);
    w.bytes(value);
  } else {
    throw invalidEvent(
      `${name} has a value of type ${typeof value}, which protobuf cannot carry`,
      name,
    );
  }
  w.join(at);
  w.join(entry);
}

// ---- decoding

function readEvent(
  r: ProtoReader,
  limits: JsonLimits,
  registry: ExtensionRegistry,
): Record<string, unknown> {
  // A plain object (faster than a null-prototype one); readEntry refuses `__proto__`, so no key
  // can reach the prototype.
  const init: Record<string, unknown> = {};
  let dataField = 0;
  let binary: Uint8Array | undefined;
  let text: string | undefined;
  while (r.pos < r.end) {
    const tag = readTag(r);
    switch (tag >>> 3) {
      case F_ID:
        expectWireType(tag, LEN, "id");
        init.id = r.string();
        break;
      case F_SOURCE:
        expectWireType(tag, LEN, "source");
        init.source = r.string();
        break;
      case F_SPEC_VERSION:
        expectWireType(tag, LEN, "spec_version");
        init.specversion = r.string();
        break;
      case F_TYPE:
        expectWireType(tag, LEN, "type");
        init.type = r.string();
        break;
      case F_ATTRIBUTES:
        expectWireType(tag, LEN, "attributes");
        readEntry(r, init, registry);
        break;
      case F_BINARY_DATA:
        expectWireType(tag, LEN, "binary_data");
        dataField = F_BINARY_DATA;
        binary = r.bytes();
        break;
      case F_TEXT_DATA:
        expectWireType(tag, LEN, "text_data");
        dataField = F_TEXT_DATA;
        text = r.string();
        break;
      case F_PROTO_DATA:
        expectWireType(tag, LEN, "proto_data");
        dataField = F_PROTO_DATA;
        binary = readAnyValue(r);
        break;
      default:
        r.skip(tag & 7);
    }
  }
  const contentType = init.datacontenttype;
  if (contentType !== undefined && typeof contentType !== "string") {
    throw invalidEvent("datacontenttype must be a string", "datacontenttype");
  }
  if (dataField === F_TEXT_DATA) {
    const t = text as string;
    if (contentType !== undefined && isJsonContentType(contentType)) {
      if (t !== "") init.data = parseJson(t, "JSON data", limits);
    } else {
      init.data = t;
    }
  } else if (dataField === F_BINARY_DATA) {
    const data = decodeData(binary as Uint8Array, contentType, limits);
    if (data !== undefined) init.data = data;
  } else if (dataField === F_PROTO_DATA) {
    init.data = binary;
  }
  return init;
}

/**
 * Reads one map entry into `init` (a later entry for the same key replaces an earlier one); a
 * declared extension gets its declared type.
 */
function readEntry(
  r: ProtoReader,
  init: Record<string, unknown>,
  registry: ExtensionRegistry,
): void {
  const len = r.length();
  const end = r.pos + len;
  const outer = r.end;
  r.end = end;
  let key = "";
  let value: unknown;
  while (r.pos < end) {
    const tag = readTag(r);
    const field = tag >>> 3;
    if (field === 1) {
      expectWireType(tag, LEN, "attributes key");
      key = r.key();
    } else if (field === 2) {
      expectWireType(tag, LEN, "attributes value");
      value = readAttributeValue(r);
    } else {
      r.skip(tag & 7);
    }
  }
  r.end = outer;
  if (OWN_FIELDS.has(key)) {
    throw invalidEvent(`${key} has its own field and must not be in the attributes map`, key);
  }
  if (key === "data" || key === "data_base64" || key === "__proto__") {
    throw invalidEvent(`${key} is not an attribute name`, key);
  }
  if (value === undefined) {
    delete init[key];
    return;
  }
  const declared = registry.get(key)?.type;
  init[key] = declared === undefined ? value : asDeclaredType(key, value, declared, "Protobuf");
}

function readAttributeValue(r: ProtoReader): unknown {
  const len = r.length();
  const end = r.pos + len;
  const outer = r.end;
  r.end = end;
  let value: unknown;
  while (r.pos < end) {
    const tag = readTag(r);
    switch (tag >>> 3) {
      case A_BOOLEAN:
        expectWireType(tag, VARINT, "ce_boolean");
        value = r.bool();
        break;
      case A_INTEGER:
        expectWireType(tag, VARINT, "ce_integer");
        value = r.int32();
        break;
      case A_STRING:
      case A_URI:
      case A_URI_REF:
        expectWireType(tag, LEN, "ce_string");
        value = r.string();
        break;
      case A_BYTES:
        expectWireType(tag, LEN, "ce_bytes");
        value = r.bytes();
        break;
      case A_TIMESTAMP:
        expectWireType(tag, LEN, "ce_timestamp");
        value = readTimestamp(r);
        break;
      default:
        r.skip(tag & 7);
    }
  }
  r.end = outer;
  return value;
}

function readTimestamp(r: ProtoReader): string {
  const len = r.length();
  const end = r.pos + len;
  const outer = r.end;
  r.end = end;
  let seconds = 0;
  let nanos = 0;
  while (r.pos < end) {
    const tag = readTag(r);
    const field = tag >>> 3;
    if (field === 1) {
      expectWireType(tag, VARINT, "Timestamp.seconds");
      seconds = r.int64();
    } else if (field === 2) {
      expectWireType(tag, VARINT, "Timestamp.nanos");
      nanos = r.int32();
    } else {
      r.skip(tag & 7);
    }
  }
  r.end = outer;
  return fromProtoTimestamp(seconds, nanos);
}

/** The `value` of a google.protobuf.Any (its `type_url` names the message type). */
function readAnyValue(r: ProtoReader): Uint8Array {
  const len = r.length();
  const end = r.pos + len;
  const outer = r.end;
  r.end = end;
  let value: Uint8Array = new Uint8Array(0);
  while (r.pos < end) {
    const tag = readTag(r);
    const field = tag >>> 3;
    if (field === 1) {
      expectWireType(tag, LEN, "Any.type_url");
      r.string();
    } else if (field === 2) {
      expectWireType(tag, LEN, "Any.value");
      value = r.bytes();
    } else {
      r.skip(tag & 7);
    }
  }
  r.end = outer;
  return value;
}
