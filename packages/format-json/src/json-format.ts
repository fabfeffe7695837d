import {
  asDeclaredType,
  asDecodeError,
  type BatchEventFormat,
  base64DecodeBytes,
  base64Encode,
  batchOf,
  CloudEvent,
  type CloudEventLike,
  checkCountOption,
  extensions as defaultRegistry,
  type ExtensionRegistry,
  inputBytes,
  isBytes,
  isPosthornError,
  type JsonLimits,
  jsonMembers,
  jsonText,
  lastIndexOfAscii,
  malformed,
  parseJson,
  utf8Decode,
  utf8Encode,
  utf8EncodeSpliced,
} from "@posthorn/core";

/** The message of core's `parseJson` for nesting past its limit. */
const DEPTH_ERROR = /is nested deeper than \d+ levels$/;

/** Media type of one event in the JSON format (json-format.md section 4). */
export const JSON_CONTENT_TYPE = "application/cloudevents+json";
/** Media type of a batch in the JSON format (json-format.md section 4). */
export const JSON_BATCH_CONTENT_TYPE = "application/cloudevents-batch+json";

// The attributes of a CloudEvent always serialize; only `data` can fail (a BigInt, a cycle, a
// throwing toJSON), and that is an invalid event, as binary mode's encodeData says.
function stringify(value: unknown): string {
  return jsonText(value) as string;
}

// Binary data from this size on is written around the JSON of the other members, not through
// JSON.stringify: V8's (Node 20) scans every character of a string for escapes, about 2 ns each,
// which for the base64 of 64 KiB took 180 us against 8 us for the base64 encoding itself. Base64
// needs no escaping. Below it, one JSON.stringify is as fast.
const SPLICE_BASE64_FROM = 256;

function hasLargeBinaryData(event: CloudEvent): boolean {
  const data = event.data;
  return isBytes(data) && data.length >= SPLICE_BASE64_FROM;
}

/**
 * The JSON format's bytes of one event, `data_base64` spliced in after the JSON of the other
 * members when the data is large binary. `data` is always an event's last member (the
 * constructor adds it last), so the bytes are those `JSON.stringify` gives either way.
 */
function encodeEvent(event: CloudEvent): Uint8Array {
  if (!hasLargeBinaryData(event)) return utf8Encode(stringify(event));
  const head = stringify(jsonMembers(event, false));
  const base64 = base64Encode(event.data as Uint8Array);
  return utf8EncodeSpliced(`${head.slice(0, -1)},"data_base64":"`, base64, '"}');
}

function encodeEvents(events: readonly CloudEvent[]): Uint8Array {
  if (!events.some(hasLargeBinaryData)) return utf8Encode(stringify(events));
  const encoded = events.map(encodeEvent);
  let size = 1 + encoded.length;
  for (const bytes of encoded) size += bytes.length;
  const out = new Uint8Array(size);
  let at = 0;
  out[at++] = 0x5b; // [
  for (const [i, bytes] of encoded.entries()) {
    if (i > 0) out[at++] = 0x2c; // ,
    out.set(bytes, at);
    at += bytes.length;
  }
  out[at] = 0x5d; // ]
  return out;
}

// On decoding, an event whose text ends in a `data_base64` member of at least this many characters
// has it read straight from the bytes, and only the rest goes through UTF-8 decoding and
// JSON.parse, which would copy and scan the long string twice more: 62-107 us for 64 KiB of data
// against 15-25 us, 2.6-2.8 ms against 0.27-0.34 ms for 1 MiB (Node 20,
// bench/probes/json-binary.ts). At 1 KiB the two are within noise; below, nothing to gain.
const SPLIT_BASE64_FROM = 1024;
const SPLICED_MEMBER = ',"data_base64":"';
const JSON_SPACE = new Set([0x20, 0x0a, 0x0d, 0x09]);

/** Options for {@link jsonFormat}. */
export interface JsonFormatOptions extends JsonLimits {
  /**
   * Where extension types are declared. On decoding, a declared extension gets its declared type
   * (a string is read as it, a JSON value of another type is an `InvalidEvent`), as in the
   * bindings' binary modes. Defaults to core's `extensions` registry. A binding given a
   * `registry` option of its own decodes with this format adapted to that one
   * ({@link BatchEventFormat.withRegistry}).
   */
  registry?: ExtensionRegistry;
}

/**
 * The CloudEvents JSON event format, single events and batches.
 *
 * Encoding follows json-format.md 3.1: Boolean and Integer attributes as JSON booleans and
 * numbers, everything else as strings; binary data as `data_base64`, JSON data (a JSON or `+json`
 * content type, or none) as a JSON value, other text as a JSON string.
 *
 * Decoding (3.1.2) treats unknown members as extensions, keeps a JSON string under a JSON content
 * type as the string it is, and refuses non-string `data` under a non-JSON content type. Invalid
 * JSON, invalid UTF-8 and JSON data nested deeper than `maxDepth` (the event's object and a
 * batch's array not counted) are `MalformedInput`; members that break
 * the CloudEvents rules are `InvalidEvent`. Extensions declared in the registry get their declared
 * type: `"5"` for a declared Integer is read as 5, `"high"` is an `InvalidEvent`.
 * `withRegistry(other)` gives the same format with the same `maxDepth` reading declared types
 * from `other` (itself for the registry it already has).
 *
 * @param options - the extension registry and the nesting limit of JSON data for decoding
 *   (`maxDepth`, default 128)
 * @throws {@link PosthornError} `NotSupported` for a `maxDepth` that is not a whole number of 0 or
 *   more (or `Infinity`): `NaN` compared false and turned the limit off
 * @example
 * ```ts
 * const bytes = json.encode(event);
 * const back = json.decode(bytes);
 * ```
 */
export function jsonFormat(options: JsonFormatOptions = {}): BatchEventFormat {
  checkCountOption("maxDepth", options.maxDepth, 0);
  const maxDepth = options.maxDepth ?? 128;
  // `maxDepth` limits the nesting of JSON data, as in the other formats and binary mode: the
  // event's own object (data's member is one level down) and a batch's array are not counted.
  // Counting them refused data of 128 levels that every other path reads, and a batch of an
  // event whose data was 127 levels that reads alone.
  const limits: JsonLimits = { maxDepth: maxDepth + 1 };
  const batchLimits: JsonLimits = { maxDepth: maxDepth + 2 };
  const registry = options.registry ?? defaultRegistry;

  const decodeValue = (value: unknown): CloudEvent => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw malformed("a JSON-format event must be a JSON object");
    }
    const init = value as Record<string, unknown>;
    for (const name in init) {
      const declared = registry.get(name)?.type;
      if (declared !== undefined) init[name] = asDeclaredType(name, init[name], declared, "JSON");
    }
    // The CloudEvent constructor checks every member: names, types, data against datacontenttype.
    return new CloudEvent(init as never);
  };

  const parse = (bytes: Uint8Array, what: string, within: JsonLimits): unknown => {
    const text = utf8Decode(bytes, what);
    try {
      return parseJson(text, what, within);
    } catch (err) {
      // parseJson counts the envelope's levels too: the message names the data's limit.
      if (isPosthornError(err, "MalformedInput") && DEPTH_ERROR.test(err.message)) {
        throw malformed(`${what}: JSON data nested deeper than ${maxDepth} levels (maxDepth)`, err);
      }
      throw err;
    }
  };

  // A text that ends in a long `data_base64` member written the compact way (as Posthorn and most
  // SDKs write it): the members before it parsed, and the data decoded from the member's bytes as
  // they are. Whether it is a member of the outer object is settled by parsing the rest:
  // `text[0, at) + "}"` parses to an object only when `at` is outside every string and nested
  // value. Its value is all base64 (no escapes, nothing outside ASCII) when strict base64
  // decoding accepts it; so when this returns an event, JSON.parse of the whole text gives the
  // same members and the same data. `undefined` when the text is not so, when the rest names
  // `data` or `data_base64` too (the whole text says what that means), or anything fails: the
  // whole text is then decoded as usual, which also gives the usual error.
  const decodeSpliced = (bytes: Uint8Array): CloudEvent | undefined => {
    let end = bytes.length;
    while (end > 0 && JSON_SPACE.has(bytes[end - 1] as number)) end--;
    if (bytes[end - 1] !== 0x7d || bytes[end - 2] !== 0x22) return undefined; // "}
    const latest = end - 2 - SPLIT_BASE64_FROM;
    if (latest <= 0) return undefined;
    const at = lastIndexOfAscii(bytes, SPLICED_MEMBER, latest);
    if (at <= 0) return undefined;
    try {
      const text = utf8Decode(bytes.subarray(0, at));
      const rest = parseJson(`${text}}`, "JSON event", limits);
      if (typeof rest !== "object" || rest === null || Array.isArray(rest)) return undefined;
      if (Object.hasOwn(rest, "data") || Object.hasOwn(rest, "data_base64")) return undefined;
      // Decoded from the bytes: one character per byte, so none can pass for another.
      (rest as Record<string, unknown>).data = base64DecodeBytes(
        bytes.subarray(at + SPLICED_MEMBER.length, end - 2),
      );
      return decodeValue(rest);
    } catch {
      return undefined;
    }
  };

  const format: BatchEventFormat = {
    name: "json",
    contentType: JSON_CONTENT_TYPE,
    batchContentType: JSON_BATCH_CONTENT_TYPE,
    text: true,
    encode(event: CloudEventLike): Uint8Array {
      return encodeEvent(CloudEvent.from(event));
    },
    decode(input: Uint8Array): CloudEvent {
      try {
        const bytes = inputBytes(input, "json.decode");
        const spliced = bytes.length > SPLIT_BASE64_FROM ? decodeSpliced(bytes) : undefined;
        return spliced ?? decodeValue(parse(bytes, "JSON event", limits));
      } catch (err) {
        throw asDecodeError(err, "JSON event");
      }
    },
    encodeBatch(events: readonly CloudEventLike[]): Uint8Array {
      return encodeEvents(batchOf(events, "json.encodeBatch").map((e) => CloudEvent.from(e)));
    },
    decodeBatch(input: Uint8Array): CloudEvent[] {
      try {
        const value = parse(inputBytes(input, "json.decodeBatch"), "JSON batch", batchLimits);
        if (!Array.isArray(value)) throw malformed("a JSON batch must be a JSON array");
        return value.map(decodeValue);
      } catch (err) {
        throw asDecodeError(err, "JSON batch");
      }
    },
    withRegistry(other: ExtensionRegistry): BatchEventFormat {
      return other === registry ? format : jsonFormat({ maxDepth, registry: other });
    },
  };
  return format;
}

/** The JSON event format with default limits. */
export const json: BatchEventFormat = jsonFormat();
