import { isBytes, utf8Decode, utf8DecodeOrUndefined, utf8Encode } from "./bytes.js";
import { isJsonType, isTextType, parseContentType } from "./content-type.js";
import { invalidEvent, malformed, PosthornError, quoted } from "./errors.js";
import { isCloudEventsContentType } from "./format.js";

/** Limits applied when parsing JSON from the wire. */
export interface JsonLimits {
  /**
   * Deepest nesting of arrays and objects accepted. Default 128. A whole number, 0 or more, or
   * `Infinity`: the formats, subscribers, receivers and `from...` decoders that take it refuse
   * anything else with `NotSupported`.
   */
  maxDepth?: number;
}

/** Default nesting limit for JSON read from the wire. */
export const DEFAULT_MAX_JSON_DEPTH = 128;

/**
 * A binding's `json` limits with the depth it once took as an option of its own (deprecated)
 * filled in: `json.maxDepth` wins when both are given. Allocates only when the former option is.
 *
 * @param json - the binding's `json` option
 * @param formerMaxDepth - the binding's former depth option (AMQP `maxDepth`, NATS `maxJsonDepth`)
 */
export function withFormerMaxDepth(
  json: JsonLimits | undefined,
  formerMaxDepth: number | undefined,
): JsonLimits | undefined {
  if (formerMaxDepth === undefined) return json;
  return { maxDepth: json?.maxDepth ?? formerMaxDepth };
}

/**
 * Parses JSON read from the wire. Invalid JSON and nesting deeper than the limit are
 * `MalformedInput` errors. `JSON.parse` defines `__proto__` keys as plain own properties, so the
 * result cannot pollute prototypes; code that copies parsed members elsewhere must still validate
 * their names.
 *
 * @param text - the JSON text
 * @param what - what the text is, for the error message (default `"JSON"`)
 * @param limits - the nesting limit (default {@link DEFAULT_MAX_JSON_DEPTH})
 * @returns the parsed value
 * @throws {@link PosthornError} `MalformedInput` on invalid JSON, nesting past the limit, or a
 *   number past the range of a double (which `JSON.parse` reads as `Infinity`)
 */
export function parseJson(text: string, what = "JSON", limits: JsonLimits = {}): unknown {
  const maxDepth = limits.maxDepth ?? DEFAULT_MAX_JSON_DEPTH;
  // Nesting needs at least one opening bracket per level, so a text with no more than `maxDepth`
  // of them (counted natively by indexOf, strings included) cannot exceed the limit; only texts
  // with more get the exact scan.
  if (
    text.length > maxDepth &&
    openingBracketsExceed(text, maxDepth) &&
    jsonDepthExceeds(text, maxDepth)
  ) {
    throw malformed(`${what} is nested deeper than ${maxDepth} levels`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw malformed(`${what} is not valid JSON: ${(err as Error).message}`, err);
  }
  if (holdsNonFinite(value)) {
    throw malformed(
      `${what} holds a number past the range of a double (JSON.parse reads it as Infinity, which no JSON text can hold)`,
    );
  }
  return value;
}

/**
 * Whether a parsed JSON value holds a number JSON cannot write: `JSON.parse` reads a literal past
 * the double range (`1e400`, or 400 digits) as `Infinity`, and an event holding it could not be
 * encoded again as it came (`JSON.stringify` writes `null`). A walk with a stack of its own, not
 * recursion: `maxDepth` may be set past what the call stack holds.
 */
function holdsNonFinite(value: unknown): boolean {
  if (typeof value !== "object" || value === null) {
    return typeof value === "number" && !Number.isFinite(value);
  }
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const next = stack.pop();
    if (typeof next === "number") {
      if (!Number.isFinite(next)) return true;
    } else if (Array.isArray(next)) {
      for (const member of next) stack.push(member);
    } else if (typeof next === "object" && next !== null) {
      // for...in, not Object.values: no array per object (90 against 130 ns for a typical event).
      for (const name in next) stack.push((next as Record<string, unknown>)[name]);
    }
  }
  return false;
}

// Whether `text` holds more than `limit` opening brackets (`{` and `[`), anywhere.
function openingBracketsExceed(text: string, limit: number): boolean {
  let count = 0;
  for (let i = text.indexOf("{"); i !== -1; i = text.indexOf("{", i + 1)) {
    if (++count > limit) return true;
  }
  for (let i = text.indexOf("["); i !== -1; i = text.indexOf("[", i + 1)) {
    if (++count > limit) return true;
  }
  return false;
}

/**
 * Whether JSON text nests arrays or objects deeper than `maxDepth`, skipping string contents.
 * Does not check that the text is valid JSON.
 *
 * @param text - the JSON text
 * @param maxDepth - deepest nesting allowed; one more level returns true
 */
export function jsonDepthExceeds(text: string, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92)
        i++; // backslash escapes the next character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > maxDepth) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
}

/**
 * `JSON.stringify(value)`, with a failure (a BigInt, a cycle, a `toJSON` that throws: only an
 * event's `data` can hold those) as an `InvalidEvent` error on `data`.
 *
 * @param value - an event, events, or an event's data
 * @returns the JSON text; `undefined` when the value has none (say, a function)
 * @throws {@link PosthornError} `InvalidEvent` (attribute `data`) when it cannot be serialized
 */
export function jsonText(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch (err) {
    throw invalidEvent(`data cannot be serialized as JSON: ${(err as Error).message}`, "data", err);
  }
}

/**
 * The bytes that carry `data` in binary mode (and in formats that hold data as bytes), following
 * the JSON format's rules so every path agrees: bytes as they are; under a JSON content type (or
 * no content type, which implies JSON) the JSON text of the value, as UTF-8 (RFC 8259 8.1: a
 * `charset` parameter has no meaning there); a string in the charset of its text content type.
 * A string is written as UTF-8 unless a text type's `charset` names US-ASCII or ISO-8859-1
 * (Latin-1, under any of its registered names), so the bytes match their label; a type that is
 * not text (see {@link isTextContentType}) takes it as UTF-8 too.
 *
 * @param data - the event's `data`
 * @param datacontenttype - the event's `datacontenttype`, if it has one
 * @returns the bytes, or `undefined` when the event has no data
 * @throws {@link PosthornError} `InvalidEvent` (attribute `data`) when the data cannot be
 *   represented: JSON that `JSON.stringify` refuses (a cycle, a bigint) or has no text for, a
 *   value that is neither bytes nor a string under a non-JSON content type, or a string with a
 *   character its US-ASCII or Latin-1 charset has not; `NotSupported` (attribute
 *   `datacontenttype`) for a string under a text type whose charset is none of UTF-8, US-ASCII
 *   and Latin-1 (give such data as bytes already in that charset)
 */
export function encodeData(
  data: unknown,
  datacontenttype: string | undefined,
): Uint8Array | undefined {
  if (data === undefined) return undefined;
  if (isBytes(data)) return data;
  let writing: Writing | undefined = WRITE_JSON;
  if (datacontenttype !== undefined) {
    writing = writings.get(datacontenttype);
    if (writing === undefined) {
      writing = writingOf(datacontenttype);
      if (writings.size >= CACHE_LIMIT) writings.clear();
      writings.set(datacontenttype, writing);
    }
  }
  if (writing === WRITE_JSON) {
    const text = jsonText(data);
    if (text === undefined) throw invalidEvent("data has no JSON representation", "data");
    return utf8Encode(text);
  }
  if (typeof data === "string") {
    return writing === WRITE_UTF8
      ? utf8Encode(data)
      : charsetBytes(data, writing, datacontenttype as string);
  }
  throw invalidEvent(`data must be bytes or a string under ${datacontenttype}`, "data");
}

// How encodeData writes data under a content type, cached by the content type's text (the same
// few values recur): as JSON text, a string as UTF-8, or a string in the charset named.
type Writing = typeof WRITE_JSON | typeof WRITE_UTF8 | string;
const WRITE_JSON = 0;
const WRITE_UTF8 = 1;
const writings = new Map<string, Writing>();
const CACHE_LIMIT = 256;

function writingOf(datacontenttype: string): Writing {
  const ct = parseContentType(datacontenttype);
  if (ct === undefined) return WRITE_UTF8;
  if (isJsonType(ct)) return WRITE_JSON;
  const charset = ct.parameters.charset;
  if (charset === undefined || !isTextType(ct)) return WRITE_UTF8;
  return WRITABLE_CHARSETS.get(charset.toLowerCase()) === -1 ? WRITE_UTF8 : charset;
}

// Charsets a string can be written in without a dependency (TextEncoder is UTF-8 only), by
// lower-cased name (the IANA names and aliases): the highest code unit each holds, one byte per
// character; UTF-8 as -1.
const WRITABLE_CHARSETS = new Map<string, number>([
  ["utf-8", -1],
  ["utf8", -1],
  ["us-ascii", 0x7f],
  ["iso-8859-1", 0xff],
  ["iso_8859-1", 0xff],
  ["iso_8859-1:1987", 0xff],
  ["iso-ir-100", 0xff],
  ["latin1", 0xff],
  ["l1", 0xff],
  ["ibm819", 0xff],
  ["cp819", 0xff],
  ["csisolatin1", 0xff],
]);

/**
 * A string's bytes in `charset` (internal: equivalence compares text data as these bytes).
 *
 * @param text - the string
 * @param charset - the `charset` parameter of a text content type
 * @param contentType - the whole content type, for the error messages
 * @throws {@link PosthornError} `NotSupported` for a charset not written here, `InvalidEvent`
 *   for a character the charset has not
 */
export function charsetBytes(text: string, charset: string, contentType: string): Uint8Array {
  const highest = WRITABLE_CHARSETS.get(charset) ?? WRITABLE_CHARSETS.get(charset.toLowerCase());
  if (highest === -1) return utf8Encode(text);
  if (highest === undefined) {
    throw new PosthornError(
      "NotSupported",
      `string data cannot be written as ${quoted(charset)} (datacontenttype ${quoted(contentType)}): Posthorn writes text as UTF-8, US-ASCII or ISO-8859-1 only; give the data as bytes already in that charset`,
      { attribute: "datacontenttype" },
    );
  }
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > highest) {
      const point = text.codePointAt(i) as number;
      throw invalidEvent(
        `data holds U+${point.toString(16).toUpperCase().padStart(4, "0")} at index ${i}, which the charset ${quoted(charset)} of its datacontenttype ${quoted(contentType)} cannot carry`,
        "data",
      );
    }
    out[i] = c;
  }
  return out;
}

/**
 * The content type binary mode writes for an event: its own, or JSON when it has non-binary data.
 *
 * @param data - the event's `data`
 * @param datacontenttype - the event's `datacontenttype`, if it has one
 * @returns the content type, or `undefined` for an event without one whose data is absent or
 *   bytes
 */
export function effectiveContentType(
  data: unknown,
  datacontenttype: string | undefined,
): string | undefined {
  if (datacontenttype !== undefined) return datacontenttype;
  if (data === undefined || isBytes(data)) return undefined;
  return "application/json";
}

// A cheap first look for binaryContentType: every content type that names a CloudEvents format
// starts so (after optional white space); only those are parsed.
const CLOUDEVENTS_PREFIX = /^[\t ]*application\/cloudevents/i;

/**
 * The content type binary mode writes as the protocol's own content type (HTTP `Content-Type`,
 * the AMQP `content-type` property, Kafka's `content-type` header, MQTT 5's Content Type), as
 * {@link effectiveContentType} gives it, refusing one that names a CloudEvents format. Receivers
 * take a content type of the form `application/cloudevents...` for structured or batch mode
 * (every binding's mode detection), so an event whose own `datacontenttype` is one, its data an
 * encoded event say, would come back as a different event or not at all: it can travel in
 * structured mode only.
 *
 * @param data - the event's `data`
 * @param datacontenttype - the event's `datacontenttype`, if it has one
 * @returns the content type, or `undefined` for an event without one whose data is absent or
 *   bytes
 * @throws {@link PosthornError} `NotSupported` (attribute `datacontenttype`) for a CloudEvents
 *   media type
 */
export function binaryContentType(
  data: unknown,
  datacontenttype: string | undefined,
): string | undefined {
  if (
    datacontenttype !== undefined &&
    CLOUDEVENTS_PREFIX.test(datacontenttype) &&
    isCloudEventsContentType(datacontenttype)
  ) {
    throw new PosthornError(
      "NotSupported",
      `binary mode cannot carry an event whose datacontenttype is ${JSON.stringify(datacontenttype)}: receivers read a content type of the form application/cloudevents... as structured or batch mode; send this event in structured mode`,
      { attribute: "datacontenttype" },
    );
  }
  return effectiveContentType(data, datacontenttype);
}

// Charsets whose text reads as UTF-8: UTF-8 itself, and US-ASCII, a subset of it.
const UTF8_READABLE = new Set(["utf-8", "utf8", "us-ascii"]);

/**
 * Reads `data` back from the bytes of a binary-mode message (and of formats that hold data as
 * bytes): under a JSON content type the parsed JSON value; under a text type (see
 * {@link isTextContentType}) the string when the bytes are UTF-8 text; otherwise the bytes. Text
 * that is not UTF-8 stays the bytes it is, so an event whose data is such bytes comes back as it
 * was sent: under a `charset` other than UTF-8 and US-ASCII (Latin-1 under
 * `text/plain; charset=iso-8859-1`, even where its bytes happen to be valid UTF-8), and where the
 * bytes do not decode as UTF-8.
 *
 * @param bytes - the message body
 * @param datacontenttype - the content type the message carried; without one the bytes are
 *   returned as they are
 * @param limits - the nesting limit for JSON (default {@link DEFAULT_MAX_JSON_DEPTH})
 * @returns the data; `undefined` for an empty body under a JSON content type
 * @throws {@link PosthornError} `MalformedInput` under a JSON content type, on invalid JSON,
 *   invalid UTF-8 or nesting past the limit
 */
export function decodeData(
  bytes: Uint8Array,
  datacontenttype: string | undefined,
  limits?: JsonLimits,
): unknown {
  if (datacontenttype === undefined) return bytes;
  let reading = readings.get(datacontenttype);
  if (reading === undefined) {
    reading = readingOf(datacontenttype);
    if (readings.size >= CACHE_LIMIT) readings.clear();
    readings.set(datacontenttype, reading);
  }
  if (reading === READ_BYTES) return bytes;
  if (reading === READ_JSON) {
    if (bytes.length === 0) return undefined;
    return parseJson(utf8Decode(bytes, "JSON data"), "JSON data", limits);
  }
  return utf8DecodeOrUndefined(bytes) ?? bytes;
}

// How decodeData reads data under a content type, cached by the content type's text (one lookup
// per message; the same few values recur): as bytes, as JSON, or as UTF-8 text where it decodes.
const READ_BYTES = 0;
const READ_JSON = 1;
const READ_UTF8_TEXT = 2;
const readings = new Map<string, number>();

function readingOf(datacontenttype: string): number {
  const ct = parseContentType(datacontenttype);
  if (ct === undefined) return READ_BYTES;
  if (isJsonType(ct)) return READ_JSON;
  if (!isTextType(ct)) return READ_BYTES;
  const charset = ct.parameters.charset;
  return charset === undefined || UTF8_READABLE.has(charset.toLowerCase())
    ? READ_UTF8_TEXT
    : READ_BYTES;
}
