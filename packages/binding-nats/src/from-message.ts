import {
  asDecodeError,
  CloudEvent,
  checkCountOption,
  decodeData,
  extensions as defaultRegistry,
  type EventFormat,
  type ExtensionRegistry,
  findFormat,
  formatsGiven,
  formatWithRegistry,
  invalidEvent,
  isAttributeName,
  isCloudEventsContentType,
  isContextAttribute,
  type JsonLimits,
  type Message,
  type MessageProperties,
  malformed,
  NameIndex,
  noFormatFor,
  overLimit,
  PosthornError,
  parseCanonical,
  quoted,
  ReceivedMessage,
  withFormerMaxDepth,
} from "@posthorn/core";
import { decodeNatsHeaderValue } from "./headers.js";
import type { NatsContentMode } from "./to-message.js";

/**
 * Headers as a NATS client delivers them: nats.js `MsgHdrs` (v2 and v3) and this binding's
 * `NatsHeaders` iterate as `[name, values]`; a plain record works too.
 */
export type NatsHeadersLike =
  | Iterable<readonly [string, string | readonly string[]]>
  | Readonly<Record<string, string | readonly string[]>>;

/** A received NATS message as the mapping layer reads it: any nats.js `Msg` or `JsMsg` is one. */
export interface NatsMessageLike {
  /** The subject it was published to; goes into `metadata`. */
  readonly subject?: string;
  /** The payload. */
  readonly data: Uint8Array;
  /** The headers, when the message has any. */
  readonly headers?: NatsHeadersLike | undefined;
}

/** Default cap on a received payload: 8 MiB (nats-server allows at most 64 MiB, 1 MiB by default). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024;
/** Default cap on the number of header values in a received message. */
export const DEFAULT_MAX_HEADERS = 256;

/** Options for {@link fromNatsMessage} and {@link detectNatsMode}. */
export interface NatsDecodeOptions {
  /**
   * The event formats structured mode may use, matched by `Content-Type`. Without any, structured
   * messages are `UnsupportedContentType` errors.
   */
  formats?: readonly EventFormat[];
  /**
   * Where declared extension types are looked up, in both content modes: binary mode reads
   * declared extensions' headers into their types, and structured mode decodes with the
   * matched format adapted to this registry ({@link EventFormat.withRegistry}; a format without
   * it decodes with its own). Defaults to core's `extensions` registry in binary mode and to the format's
   * own in structured mode.
   */
  registry?: ExtensionRegistry;
  /**
   * Larger payloads are `PayloadTooLarge`, for every message, CloudEvent or not (a subscriber
   * hands a plain message past it out as its `Message` with that error beside it). Default
   * {@link DEFAULT_MAX_PAYLOAD_BYTES}.
   */
  maxPayloadBytes?: number;
  /**
   * More header values than this (a repeated name once per value) are `PayloadTooLarge`, for
   * every message: binary, structured or no CloudEvent. Default {@link DEFAULT_MAX_HEADERS}.
   */
  maxHeaders?: number;
  /**
   * Limits for JSON data read in binary mode: `maxDepth`, the deepest nesting accepted (default
   * 128; deeper is `MalformedInput`). The same option as in every other binding.
   */
  json?: JsonLimits;
  /**
   * The former name of `json.maxDepth`, still read; when both are given, `json.maxDepth` wins.
   *
   * @deprecated use json: { maxDepth }
   */
  maxJsonDepth?: number;
  /**
   * Whether a message with neither a `Content-Type` nor a `ce-` header (other headers do not
   * count) whose payload is a JSON object holding a `"specversion"` member name in its first 64 KiB
   * is read as a structured JSON event (as producers of NATS binding 1.0.2, which had no headers,
   * send them). Needs a JSON format in `formats`. Default `true`.
   */
  detectHeaderlessJson?: boolean;
}

const SPECVERSION_MEMBER = new TextEncoder().encode('"specversion"');

/** One pass over the headers: what mode detection and decoding need. */
interface HeaderScan {
  /** The `Content-Type` header, when present. */
  contentType: string | undefined;
  /** Whether any `ce-` header is present. */
  binary: boolean;
}

function entries(
  headers: NatsHeadersLike,
): Iterable<readonly [string, string | readonly string[]]> {
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === "function") {
    return headers as Iterable<readonly [string, string | readonly string[]]>;
  }
  const record = headers as Readonly<Record<string, string | readonly string[]>>;
  return Object.keys(record).map((k) => [k, record[k] as string | readonly string[]] as const);
}

function firstValue(value: string | readonly string[]): string | undefined {
  return typeof value === "string" ? value : value[0];
}

/**
 * Headers as two parallel lists, names and values (a single value as a plain string): the
 * receive path makes two arrays per message rather than an entry array per header. Names read
 * from a header block are found again through the index (a repeated name groups its values).
 */
class HeaderList extends NameIndex {
  readonly values: Array<string | readonly string[]> = [];
  /**
   * Whether the header block held bytes that are not UTF-8, which reading it as text (as nats.js
   * does) turned into U+FFFD: an attribute must not take such a value as if it had been sent.
   */
  notUtf8 = false;
}

/** Any headers as a {@link HeaderList}, in their order. */
function headerList(headers: NatsHeadersLike | undefined): HeaderList {
  if (headers instanceof HeaderList) return headers;
  const list = new HeaderList();
  if (headers) {
    for (const [name, value] of entries(headers)) {
      // What nats.js hands out is text; anything else (from another client) is refused here,
      // before mode detection reads it.
      if (
        typeof name !== "string" ||
        !(typeof value === "string" || (Array.isArray(value) && value.every(isString)))
      ) {
        throw malformed(`NATS header ${quoted(String(name))} does not hold text`);
      }
      list.add(name);
      list.values.push(value);
    }
  }
  return list;
}

/**
 * The private fields of a nats.js (v2 and v3) `MsgImpl` that hold the undecoded header block,
 * and of a `JsMsgImpl`, which wraps a `MsgImpl` as `msg`.
 */
interface RawNatsMsg {
  readonly _headers?: unknown;
  readonly _msg?: { readonly hdr?: unknown };
  readonly _rdata?: unknown;
  readonly msg?: unknown;
}

const headerText = new TextDecoder();
const strictHeaderText = new TextDecoder("utf-8", { fatal: true });

/** Whether `bytes`, read as text that holds U+FFFD, held bytes that are not UTF-8. */
function notUtf8(bytes: Uint8Array): boolean {
  try {
    strictHeaderText.decode(bytes);
    return false;
  } catch {
    return true;
  }
}

/**
 * The headers of a received message, as `[name, values]` entries in the order nats.js gives
 * them, read straight from the header block of a nats.js `MsgImpl` (v2 and v3 keep it in `_rdata`
 * up to `_msg.hdr`; a JetStream `JsMsgImpl` holds such a message as `msg`), in linear time.
 * nats.js's own `msg.headers` builds a validated, canonicalised map through several copies per
 * header, most of the receive path's cost, and matches names in quadratic time (a 64 KiB block of
 * 5,400 names took 207 ms; a core NATS message can carry 1 MiB). A message that is not a
 * `MsgImpl`, or whose headers nats.js already decoded, is read through `message.headers`.
 *
 * @throws {@link PosthornError} `MalformedInput` for a block nats.js refuses: a name with a
 *   character outside printable ASCII, a CR or LF inside a value
 */
function readHeaders(message: NatsMessageLike): HeaderList {
  const read = readHeaderBlock(message);
  if (read !== undefined) return read;
  const list = clientHeaders(message);
  // nats.js read the block as text (bytes that are not UTF-8 became U+FFFD): where the block is
  // still on the message, its bytes say whether a replacement character was sent as such.
  if (list.values.some(hasReplacement)) {
    const block = rawHeaderBlock(message);
    if (block !== undefined) list.notUtf8 = notUtf8(block);
  }
  return list;
}

/**
 * The undecoded header block of a nats.js `MsgImpl` (or of the one a `JsMsgImpl` wraps), or
 * `undefined` when the message has none.
 *
 * @param evenIfRead - also when nats.js already decoded it into `msg.headers`
 */
function rawHeaderBlock(message: NatsMessageLike, evenIfRead = true): Uint8Array | undefined {
  let raw = message as RawNatsMsg;
  if (raw._msg === undefined && typeof raw.msg === "object" && raw.msg !== null) {
    raw = raw.msg as RawNatsMsg;
  }
  const hdr = raw._msg?.hdr;
  const bytes = raw._rdata;
  if (
    (!evenIfRead && raw._headers !== undefined) ||
    typeof hdr !== "number" ||
    hdr <= 0 ||
    !(bytes instanceof Uint8Array) ||
    hdr > bytes.length
  ) {
    return undefined;
  }
  return bytes.subarray(0, hdr);
}

/**
 * `message.headers` as a {@link HeaderList}. nats.js builds its map on first read and throws its
 * own error for a block it refuses (a name with a space, a CR or LF inside a value): that is
 * `MalformedInput` here.
 */
function clientHeaders(message: NatsMessageLike): HeaderList {
  try {
    return headerList(message.headers);
  } catch (err) {
    throw asDecodeError(err, "the NATS header block cannot be read");
  }
}

/** {@link readHeaders}'s own reading; `undefined` where it leaves the block to nats.js. */
function readHeaderBlock(message: NatsMessageLike): HeaderList | undefined {
  const block = rawHeaderBlock(message, false);
  if (block === undefined) return undefined;
  const text = headerText.decode(block);
  const list = new HeaderList();
  // Checked only when the text shows a replacement character: one sent as such is valid UTF-8.
  if (text.includes("\uFFFD")) list.notUtf8 = notUtf8(block);
  const values = list.values;
  // The first line is the status line (`NATS/1.0`, maybe with a code); nats.js reads the
  // headers from the lines after it, whatever it says.
  const firstLine = text.indexOf("\r\n");
  if (firstLine === -1) return list;
  let start = firstLine + 2;
  // The first colon at or after `start`, found again only once a line start passes it: a search
  // per line would run on to the next colon, quadratic in a block of colon-less lines.
  let colon = -1;
  while (start < text.length) {
    let end = text.indexOf("\r\n", start);
    if (end === -1) end = text.length;
    if (end > start) {
      if (colon !== -2 && colon < start) {
        colon = text.indexOf(":", start);
        if (colon === -1) colon = -2;
      }
      if (colon >= 0 && colon < end) {
        const name = text.slice(start, colon);
        const value = trimmedValue(text, colon + 1, end);
        // What nats.js refuses (its own error, from `msg.headers`): MalformedInput.
        if (value === undefined) {
          throw malformed(`NATS header ${quoted(name)} has a CR or LF inside its value`);
        }
        if (!clientHeaderName(name)) {
          throw malformed(
            `NATS header name ${quoted(name)} has a character outside printable ASCII`,
          );
        }
        // A hostile block can hold hundreds of thousands of names within max_payload: the index
        // keeps matching them linear.
        const at = list.indexOf(name);
        if (at === -1) {
          list.add(name);
          values.push(value);
        } else {
          const seen = values[at] as string | string[];
          if (typeof seen === "string") values[at] = [seen, value];
          else seen.push(value);
        }
      }
    }
    start = end + 2;
  }
  return list;
}

/** The value between `from` and `to`, trimmed as nats.js trims it; `undefined` when it holds a lone CR or LF. */
function trimmedValue(text: string, from: number, to: number): string | undefined {
  const value = text.slice(from, to).trim();
  return value.includes("\r") || value.includes("\n") ? undefined : value;
}

function isString(value: unknown): value is string {
  return typeof value === "string";
}

// What nats.js accepts as a header name: printable ASCII, no colon; empty too.
function clientHeaderName(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x3a) return false;
  }
  return true;
}

// ASCII case-insensitive test for the "ce-" prefix without allocating. A header named just `ce-`
// counts: it names no attribute, and attributeNameOf refuses it.
function isCeHeader(name: string): boolean {
  return (
    name.length >= 3 &&
    (name.charCodeAt(0) | 0x20) === 0x63 &&
    (name.charCodeAt(1) | 0x20) === 0x65 &&
    name.charCodeAt(2) === 0x2d
  );
}

// Header name -> attribute name, for header names seen before: the same few arrive on every
// message, and a look-up is cheaper than slicing, lower-casing and checking each time.
const attributeNames = new Map<string, string>();
const ATTRIBUTE_NAMES_LIMIT = 512;

/**
 * The attribute a `ce-` header carries (NATS binding 3.1.3.1: header names are case-insensitive;
 * attribute names are lower case).
 *
 * @throws {@link PosthornError} `InvalidEvent` when the rest of the name is no attribute name
 */
function attributeNameOf(header: string): string {
  const known = attributeNames.get(header);
  if (known !== undefined) return known;
  const name = header.slice(3).toLowerCase();
  if (!isAttributeName(name)) {
    throw invalidEvent(`header ${header} does not name a valid attribute`, name);
  }
  // `data` is the event's data, which binary mode carries in the payload, never an attribute.
  if (name === "data")
    throw invalidEvent(`header ${header} names no attribute: data is the payload`, name);
  if (attributeNames.size >= ATTRIBUTE_NAMES_LIMIT) attributeNames.clear();
  attributeNames.set(header, name);
  return name;
}

function scan(headers: HeaderList): HeaderScan {
  const result: HeaderScan = { contentType: undefined, binary: false };
  const { names, values } = headers;
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    if (isCeHeader(name)) result.binary = true;
    else if (name.length === 12 && name.toLowerCase() === "content-type") {
      result.contentType ??= firstValue(values[i] as string | readonly string[]);
    }
  }
  return result;
}

/**
 * Tells how a NATS message carries a CloudEvent (NATS binding 3): `structured` when its
 * `Content-Type` is `application/cloudevents...` (matched case-insensitively), `binary` when it
 * has `ce-` headers, and `undefined` when it is not a CloudEvent at all. With
 * `detectHeaderlessJson` (the default), a header-less JSON object with a `specversion` member is
 * `structured` too.
 *
 * @param message - the received message
 * @param options - `detectHeaderlessJson`; the other decode options are not read here
 * @throws {@link PosthornError} `MalformedInput` when nats.js cannot read the header block
 */
export function detectNatsMode(
  message: NatsMessageLike,
  options: NatsDecodeOptions = {},
): NatsContentMode | undefined {
  return modeOf(scan(readHeaders(message)), message, options);
}

function modeOf(
  s: HeaderScan,
  message: NatsMessageLike,
  options: NatsDecodeOptions,
): NatsContentMode | undefined {
  if (isCloudEventsContentType(s.contentType)) return "structured";
  if (s.binary) return "binary";
  if (
    s.contentType === undefined &&
    options.detectHeaderlessJson !== false &&
    looksLikeStructuredJson(message.data)
  ) {
    return "structured";
  }
  return undefined;
}

function looksLikeStructuredJson(data: Uint8Array): boolean {
  if (!(data instanceof Uint8Array)) return false;
  let i = 0;
  while (
    i < data.length &&
    (data[i] === 0x20 || data[i] === 0x0a || data[i] === 0x0d || data[i] === 0x09)
  )
    i++;
  if (data[i] !== 0x7b) return false;
  // A bounded search for the member name; a match still has to decode as an event.
  const limit = Math.min(data.length, 64 * 1024) - SPECVERSION_MEMBER.length;
  outer: for (let p = i; p <= limit; p++) {
    for (let k = 0; k < SPECVERSION_MEMBER.length; k++) {
      if (data[p + k] !== SPECVERSION_MEMBER[k]) continue outer;
    }
    return true;
  }
  return false;
}

/**
 * Reads a CloudEvent from a NATS message, in whichever mode it was sent (NATS binding 3).
 *
 * Binary mode: each `ce-<name>` header (names case-insensitive) is percent-decoded (3.1.3.2) into
 * attribute `<name>`; attributes whose type is declared in the extension registry get that type
 * back (Integer, Boolean, Binary, ...), the rest stay Strings. `ce-datacontenttype` (or, from
 * producers that use it instead, `Content-Type`) says how the payload becomes `data`.
 * Structured mode: the payload is decoded by the format `Content-Type` names.
 *
 * @param message - a nats.js `Msg`/`JsMsg` or anything with `data` and `headers`
 * @param options - formats for structured mode, the extension registry, limits
 * @returns the event
 * @throws {@link PosthornError} `MalformedInput`, `InvalidEvent`, `UnsupportedContentType` or
 *   `PayloadTooLarge` for the message; `NotSupported`, before anything is read, for a
 *   `maxPayloadBytes`, `maxHeaders`, `json.maxDepth` or `maxJsonDepth` that is not a whole number
 *   of 0 or more (or `Infinity`); never anything else
 * @example
 * ```ts
 * for await (const m of nc.subscribe("orders")) {
 *   const event = fromNatsMessage(m, { formats: [json] });
 * }
 * ```
 */
export function fromNatsMessage(
  message: NatsMessageLike,
  options: NatsDecodeOptions = {},
): CloudEvent {
  // Checked on every call, as the subscribers check theirs once: NaN compared false and turned a
  // limit off, a negative one refused every message.
  checkCountOption("maxPayloadBytes", options.maxPayloadBytes, 0);
  checkCountOption("maxHeaders", options.maxHeaders, 0);
  checkCountOption("json.maxDepth", options.json?.maxDepth, 0);
  checkCountOption("maxJsonDepth", options.maxJsonDepth, 0);
  try {
    const data = checkedPayload(message, options);
    const headers = readHeaders(message);
    checkHeaderCount(headers, options);
    const s = scan(headers);
    const mode = modeOf(s, message, options);
    if (mode === "structured") return fromStructured(data, s.contentType, options);
    if (mode === "binary") return fromBinary(headers, data, s.contentType, options);
    throw malformed(
      "the NATS message is not a CloudEvent: no ce- headers and no CloudEvents Content-Type",
    );
  } catch (err) {
    throw asDecodeError(err, "NATS message");
  }
}

/** The payload, when it is bytes within `maxPayloadBytes`. */
function checkedPayload(message: NatsMessageLike, options: NatsDecodeOptions): Uint8Array {
  const maxPayload = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  const data = message.data;
  if (!(data instanceof Uint8Array)) throw malformed("a NATS message payload must be bytes");
  if (data.length > maxPayload) {
    throw overLimit(
      `NATS payload of ${data.length} bytes exceeds the limit of ${maxPayload}`,
      "maxPayloadBytes",
      options.maxPayloadBytes === undefined,
    );
  }
  return data;
}

/**
 * `PayloadTooLarge` for more header values than `maxHeaders` (a repeated name once per value),
 * whatever the message carries: a structured event's headers and a plain message's are the
 * receiver's to hold as much as a binary event's.
 */
function checkHeaderCount(headers: HeaderList, options: NatsDecodeOptions): void {
  const maxHeaders = options.maxHeaders ?? DEFAULT_MAX_HEADERS;
  const { values } = headers;
  if (values.length <= maxHeaders && !values.some(isRepeated)) return;
  let count = 0;
  for (const value of values) {
    count += typeof value === "string" ? 1 : value.length;
    if (count > maxHeaders) {
      throw overLimit(
        `the NATS message has more than ${maxHeaders} header values`,
        "maxHeaders",
        options.maxHeaders === undefined,
      );
    }
  }
}

function isRepeated(value: string | readonly string[]): boolean {
  return typeof value !== "string";
}

/** What a subscriber makes of one received message. @internal */
export interface Received<T> {
  readonly event: CloudEvent<T> | undefined;
  readonly error: PosthornError | undefined;
  readonly message: Message;
}

/**
 * A subscriber's whole receive path in one pass over the headers: mode detection, decoding (as
 * {@link fromNatsMessage}, its error caught), and the envelope (as {@link toMessageEnvelope}).
 * A message that is no CloudEvent has no `event`, and no `error` unless it is past
 * `maxPayloadBytes` or `maxHeaders` (`PayloadTooLarge`): the limits hold for every message.
 *
 * @internal
 */
export function receiveNatsMessage<T>(
  message: NatsMessageLike,
  metadata: Readonly<Record<string, unknown>> | undefined,
  options: NatsDecodeOptions,
): Received<T> {
  let headers: HeaderList;
  try {
    headers = readHeaders(message);
  } catch (err) {
    // Nothing can be told from a block nats.js refuses: the delivery says why, with no headers.
    const error = asDecodeError(err, "NATS message");
    return {
      event: undefined,
      error,
      message: envelope(message, new HeaderList(), undefined, metadata),
    };
  }
  const s = scan(headers);
  const mode = modeOf(s, message, options);
  let event: CloudEvent<T> | undefined;
  let error: PosthornError | undefined;
  try {
    // The limits protect the receiver whatever the message holds: one that is no CloudEvent was
    // handed out with no error whatever its size and header count (1,500 bytes past
    // maxPayloadBytes 1,000, 20 headers past maxHeaders 10), and a structured event's headers
    // went uncounted. Such a message keeps its envelope, with the error beside it.
    const data = checkedPayload(message, options);
    checkHeaderCount(headers, options);
    if (mode !== undefined) {
      event = (
        mode === "structured"
          ? fromStructured(data, s.contentType, options)
          : fromBinary(headers, data, s.contentType, options)
      ) as CloudEvent<T>;
    }
  } catch (err) {
    error = asDecodeError(err, "NATS message");
  }
  return { event, error, message: envelope(message, headers, s.contentType, metadata) };
}

function fromStructured(
  data: Uint8Array,
  contentType: string | undefined,
  options: NatsDecodeOptions,
): CloudEvent {
  const formats = options.formats ?? [];
  if (contentType === undefined) {
    // Header-less structured JSON (NATS binding 1.0.2 producers).
    const jsonFormat = formats.find((f) => f.contentType === "application/cloudevents+json");
    if (!jsonFormat) {
      throw new PosthornError(
        "UnsupportedContentType",
        `a header-less structured event needs the JSON format (${formatsGiven(formats)}): add formats: [json] from @posthorn/format-json, or detectHeaderlessJson: false to take such messages as plain ones`,
      );
    }
    return formatWithRegistry(jsonFormat, options.registry).decode(data);
  }
  const match = findFormat(formats, contentType);
  if (!match) throw noFormatFor(contentType, formats, { protocolCode: contentType });
  if (match.batch) {
    throw new PosthornError(
      "UnsupportedContentType",
      `the NATS binding has no batch mode (NATS binding 1.3), got ${contentType}`,
      { protocolCode: contentType },
    );
  }
  return formatWithRegistry(match.format, options.registry).decode(data);
}

function fromBinary(
  headers: HeaderList,
  data: Uint8Array,
  contentTypeHeader: string | undefined,
  options: NatsDecodeOptions,
): CloudEvent {
  const registry = options.registry ?? defaultRegistry;
  // Plain objects, which V8 keeps in fast mode (the event constructor reads them about twice as
  // fast as prototype-less dictionaries): only checked attribute names (lower-case letters and
  // digits, never `__proto__`) are ever written to them.
  const attributes: Record<string, unknown> = {};
  const { names, values } = headers;
  for (let i = 0; i < names.length; i++) {
    const header = names[i] as string;
    const raw = values[i] as string | readonly string[];
    if (!isCeHeader(header)) continue;
    const name = attributeNameOf(header);
    if (headers.notUtf8 && hasReplacement(raw)) {
      throw malformed(
        `header ${header} holds bytes that are not UTF-8 (NATS binding 3.1.3.2: percent-encode them as UTF-8)`,
        undefined,
        name,
      );
    }
    let text: string | undefined;
    if (typeof raw === "string") text = decodeNatsHeaderValue(raw, header);
    else {
      for (const value of raw) {
        const decoded = decodeNatsHeaderValue(value, header);
        if (text !== undefined && decoded !== text) {
          throw malformed(`header ${header} is repeated with different values`, undefined, name);
        }
        text = decoded;
      }
    }
    if (text === undefined) continue;
    if (Object.hasOwn(attributes, name)) {
      // Two header names that differ only in case carry one attribute (rare: compare texts).
      if (earlierText(headers, i, name) !== text) {
        throw malformed(
          `attribute ${name} appears in headers that differ only in case, with different values`,
          undefined,
          name,
        );
      }
      continue;
    }
    // Context attributes are checked by the event constructor; declared extensions get their
    // declared type back here.
    const type = isContextAttribute(name) ? undefined : registry.typeOf(name);
    attributes[name] =
      type === undefined || type === "String" ? text : parseCanonical(text, type, name);
  }
  let contentType = attributes.datacontenttype as string | undefined;
  if (contentType === undefined && contentTypeHeader !== undefined) {
    // Not what NATS binding 3.1.3.1 says, but what producers modelled on HTTP send.
    contentType = contentTypeHeader;
    attributes.datacontenttype = contentType;
  }
  if (data.length > 0 || contentType !== undefined) {
    const value = decodeData(
      data,
      contentType,
      withFormerMaxDepth(options.json, options.maxJsonDepth),
    );
    if (value !== undefined) attributes.data = value;
  }
  return new CloudEvent(attributes as never);
}

function hasReplacement(raw: string | readonly string[]): boolean {
  return typeof raw === "string" ? raw.includes("\uFFFD") : raw.some((v) => v.includes("\uFFFD"));
}

/** The decoded text of the first header before index `before` that carries attribute `name`. */
function earlierText(headers: HeaderList, before: number, name: string): string | undefined {
  for (let i = 0; i < before; i++) {
    const header = headers.names[i] as string;
    if (!isCeHeader(header) || attributeNameOf(header) !== name) continue;
    const raw = headers.values[i] as string | readonly string[];
    const first = typeof raw === "string" ? raw : raw[0];
    if (first !== undefined) return decodeNatsHeaderValue(first, header);
  }
  return undefined;
}

/**
 * The transport-neutral envelope of a NATS message: payload, `Content-Type`, every header
 * (repeated headers as arrays), and the subject in `metadata`. Non-CloudEvents traffic arrives
 * this way.
 *
 * @param message - a nats.js `Msg`/`JsMsg` or anything with `data` and `headers`
 * @param metadata - extra transport metadata (stream sequence, ...)
 * @throws {@link PosthornError} `MalformedInput` when nats.js cannot read the header block
 */
export function toMessageEnvelope(
  message: NatsMessageLike,
  metadata?: Readonly<Record<string, unknown>>,
): Message {
  let contentType: string | undefined;
  const headers = readHeaders(message);
  const { names, values } = headers;
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    if (name.length === 12 && name.toLowerCase() === "content-type") {
      contentType = firstValue(values[i] as string | readonly string[]);
      break;
    }
  }
  return envelope(message, headers, contentType, metadata);
}

// The envelope, given the headers as read and the first Content-Type header's value; the
// properties are built from the headers only when `properties` is read: a subscriber that reads
// the event never needs them, and building them for every message was a tenth of the receive
// path.
function envelope(
  message: NatsMessageLike,
  headers: HeaderList,
  contentType: string | undefined,
  metadata: Readonly<Record<string, unknown>> | undefined,
): Message {
  const meta = { subject: message.subject, ...metadata };
  return new ReceivedMessage(message.data, contentType, meta, headers, headerProperties);
}

// The headers as the receive path already read them: nats.js's own `msg.headers` map takes time
// quadratic in the number of names (19 s for 40,000 in one message).
function headerProperties(headers: HeaderList): MessageProperties {
  // A null prototype: header names are untrusted, and `__proto__` must stay an ordinary name.
  const out: Record<string, string | readonly string[]> = Object.create(null);
  const { names, values } = headers;
  for (let i = 0; i < names.length; i++) {
    const value = values[i] as string | readonly string[];
    out[names[i] as string] =
      typeof value === "string" ? value : value.length === 1 ? (value[0] as string) : [...value];
  }
  return out;
}
