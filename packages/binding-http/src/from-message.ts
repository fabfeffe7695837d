import {
  asDecodeError,
  CloudEvent,
  type ContentMode,
  checkCountOption,
  decodeData,
  decodeHeaderValue,
  extensions as defaultRegistry,
  type EventFormat,
  type ExtensionRegistry,
  findFormat,
  formatWithRegistry,
  invalidEvent,
  isAttributeName,
  isCloudEventsContentType,
  isContextAttribute,
  type JsonLimits,
  malformed,
  NameIndex,
  noFormatFor,
  PosthornError,
  parseCanonical,
  quoted,
  utf8Encode,
} from "@posthorn/core";
import { isWritableContentType } from "./to-message.js";

/**
 * Headers as the many HTTP stacks hand them over: a Web `Headers` (or anything with `forEach`),
 * or a plain record (Node's `IncomingHttpHeaders`, Express, Fastify, the `cloudevents` package's
 * `Message.headers`). Names are matched case-insensitively.
 */
export type HttpHeadersInput =
  | {
      /** Calls `callback` once per header, as a Web `Headers` does (repeated values joined). */
      forEach(callback: (value: string, name: string) => void): void;
    }
  | Readonly<Record<string, string | readonly string[] | number | undefined>>;

/** A received HTTP message: headers and body (bytes, or text as some frameworks give it). */
export interface ReceivedHttpMessage {
  /** The request or response headers, in any of the shapes HTTP stacks use. */
  readonly headers: HttpHeadersInput;
  /** The body: bytes, text (read as UTF-8 bytes), or `undefined` for none. */
  readonly body: Uint8Array | string | undefined;
}

/** Options for {@link fromHttpMessage}. */
export interface FromHttpMessageOptions {
  /** Formats accepted in structured and batch mode. With none, only binary mode is read. */
  formats?: readonly EventFormat[];
  /**
   * Where the types of extensions are looked up, in every mode: binary mode reads declared
   * extensions' header strings into their types, and structured and batch mode decode with the
   * matched format adapted to this registry ({@link EventFormat.withRegistry}; a format without
   * it decodes with its own). Defaults to core's registry in binary mode and to each format's own
   * in structured and batch mode.
   */
  registry?: ExtensionRegistry;
  /**
   * Largest body accepted, in bytes; larger is `PayloadTooLarge`. Default
   * {@link DEFAULT_MAX_BODY_BYTES} (1 MiB). The same name as in every other binding.
   */
  maxPayloadBytes?: number;
  /**
   * The former name of {@link FromHttpMessageOptions.maxPayloadBytes}, still read; when both are
   * given, `maxPayloadBytes` wins.
   *
   * @deprecated use maxPayloadBytes
   */
  maxBodyBytes?: number;
  /** Limits for JSON data read in binary mode. */
  json?: JsonLimits;
}

/** The default body limit of the decoder and the receivers: 1 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/**
 * The most events one batch request carries by default: what the receivers take
 * (`maxBatchEvents`) and what the publisher sends in one request, splitting a longer array.
 */
export const DEFAULT_MAX_BATCH_EVENTS = 1000;

/** What {@link detectMode} found: the content mode and, for structured and batch, the format. */
export interface DetectedMode {
  /** `binary`, `structured` or `batch`. */
  readonly mode: ContentMode;
  /** The format that reads the body, for structured and batch; absent in binary mode. */
  readonly format?: EventFormat;
}

interface CollectedHeaders {
  contentType: string | undefined;
  /** `ce-` headers: lower-case attribute names, indexed (many headers stay linear)... */
  attributes: NameIndex;
  /** ...and their raw values, in parallel. */
  values: string[];
}

function headerText(value: string | readonly string[] | number | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "number") return String(value);
  return value.join(", ");
}

function take(out: CollectedHeaders, rawName: string, value: string | undefined): void {
  if (value === undefined) return;
  const c0 = rawName.charCodeAt(0);
  // Only content-type and ce-* matter: skip everything else before lower-casing.
  if (c0 !== 99 && c0 !== 67) return;
  const name = rawName.toLowerCase();
  if (name === "content-type") out.contentType = value;
  else if (name.startsWith("ce-")) {
    const attr = name.slice(3);
    const at = out.attributes.indexOf(attr);
    if (at === -1) {
      out.attributes.add(attr);
      out.values.push(value);
    } else {
      // Header names are case-insensitive (3.1.3.1): two spellings are one field, listed the way
      // Node and fetch join repeated fields (RFC 9110 5.3).
      out.values[at] = `${out.values[at]}, ${value}`;
    }
  }
}

function collect(headers: HttpHeadersInput): CollectedHeaders {
  const out: CollectedHeaders = {
    contentType: undefined,
    attributes: new NameIndex(),
    values: [],
  };
  if (typeof (headers as { forEach?: unknown }).forEach === "function") {
    (headers as { forEach(cb: (v: string, n: string) => void): void }).forEach((v, n) => {
      take(out, n, v);
    });
  } else {
    const record = headers as Readonly<Record<string, string | readonly string[] | number>>;
    for (const name in record) {
      if (Object.hasOwn(record, name)) take(out, name, headerText(record[name]));
    }
  }
  return out;
}

/**
 * Tells the content mode of a received message from its headers (HTTP binding 3): a
 * `Content-Type` of the form `application/cloudevents...` is structured or batch in the format that
 * names that media type; otherwise a `ce-specversion` header makes it binary.
 *
 * @param headers - the message's headers; only `Content-Type` and `ce-*` are read
 * @param formats - the formats accepted in structured and batch mode (default none)
 * @returns the mode and format
 * @throws {@link PosthornError} `UnsupportedContentType` (protocol code 415) when no registered
 *   format names the CloudEvents media type, or the message is not a CloudEvent at all
 */
export function detectMode(
  headers: HttpHeadersInput,
  formats: readonly EventFormat[] = [],
): DetectedMode {
  return detect(collect(headers), formats);
}

/**
 * The `Content-Type` of a binary-mode message as `datacontenttype`: without the whitespace around
 * it (RFC 9110 5.5, which headers handed over as a plain record may keep), and refused when it
 * holds anything but visible ASCII and spaces inside (a tab, or a Latin-1 byte in a quoted
 * parameter, which HTTP allows): the binding could not send such an event on over HTTP, as a
 * bridge would.
 */
function sendableContentType(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(value.length - 1);
  const trimmed =
    first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09
      ? value.replace(/^[ \t]+|[ \t]+$/g, "")
      : value;
  if (!isWritableContentType(trimmed)) {
    throw malformed(
      `Content-Type ${quoted(trimmed)} holds a character outside visible ASCII, which an HTTP header of this binding cannot carry on`,
      undefined,
      "datacontenttype",
    );
  }
  return trimmed;
}

function detect(collected: CollectedHeaders, formats: readonly EventFormat[]): DetectedMode {
  const contentType = collected.contentType;
  if (isCloudEventsContentType(contentType)) {
    const match = findFormat(formats, contentType);
    // Says what `formats` holds and where the missing format goes, as the other bindings do.
    if (match === undefined)
      throw noFormatFor(contentType as string, formats, { protocolCode: 415 });
    return { mode: match.batch ? "batch" : "structured", format: match.format };
  }
  if (collected.attributes.indexOf("specversion") !== -1) return { mode: "binary" };
  throw new PosthornError(
    "UnsupportedContentType",
    `not a CloudEvent: no ce-specversion header and Content-Type ${contentType ?? "(none)"} names no event format`,
    { protocolCode: 415 },
  );
}

function fromBinary(
  collected: CollectedHeaders,
  body: Uint8Array,
  options: FromHttpMessageOptions,
): CloudEvent {
  const registry = options.registry ?? defaultRegistry;
  // Names are checked to be lower-case letters and digits before use, so no name can reach
  // Object.prototype (`__proto__` cannot pass), and a plain object stays fast.
  const init: Record<string, unknown> = {};
  const { values } = collected;
  const names = collected.attributes.names;
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    const raw = values[i] as string;
    if (!isAttributeName(name) || name === "data") {
      throw invalidEvent(`header ce-${name} names no valid attribute`, name);
    }
    // 3.1.3.2: undo quoting, then one round of percent-decoding.
    const text = decodeHeaderValue(raw, name);
    // Context attributes are all carried as strings; only extensions can have other types.
    const type = isContextAttribute(name) ? undefined : registry.typeOf(name);
    // Headers carry only strings; restore (and check) the declared type of known extensions, as
    // the other bindings do.
    init[name] = type === undefined || type === "String" ? text : parseCanonical(text, type, name);
  }
  // 3.1.1: Content-Type is datacontenttype (it wins over a stray ce-datacontenttype header).
  const contentType = sendableContentType(collected.contentType);
  if (contentType !== undefined) init.datacontenttype = contentType;
  else delete init.datacontenttype;
  // 3.1.2: the body is the data; an empty body is no data.
  if (body.length > 0) init.data = decodeData(body, contentType, options.json);
  return new CloudEvent(init as never);
}

/**
 * Reads a CloudEvent (or, in batch mode, an array of them) from an HTTP request or response,
 * detecting the mode from the headers (see {@link detectMode}).
 *
 * Binary mode reads `ce-` headers case-insensitively, percent-decodes their values (after
 * undoing RFC 7230 quoting), restores the declared types of known extensions, and takes
 * `Content-Type` as `datacontenttype`. A message that is not a CloudEvent is an
 * `UnsupportedContentType` error; receivers answer it with 415.
 *
 * @param message - headers and body
 * @param options - formats, registry and limits
 * @returns one event, or an array in batch mode
 * @throws {@link PosthornError} `UnsupportedContentType` (not a CloudEvent, unknown format),
 *   `PayloadTooLarge`, `MalformedInput` (unparseable body or header), `InvalidEvent`;
 *   `NotSupported`, before anything is read, for a `maxPayloadBytes`, `maxBodyBytes` or
 *   `json.maxDepth` that is not a whole number of 0 or more (or `Infinity`)
 */
export function fromHttpMessage(
  message: ReceivedHttpMessage,
  options: FromHttpMessageOptions = {},
): CloudEvent | CloudEvent[] {
  // Checked on every call, as the receivers check theirs once: NaN compared false and turned a
  // limit off, a negative one refused every body.
  checkCountOption("maxPayloadBytes", options.maxPayloadBytes, 0);
  checkCountOption("maxBodyBytes", options.maxBodyBytes, 0);
  checkCountOption("json.maxDepth", options.json?.maxDepth, 0);
  const collected = collect(message.headers);
  const detected = detect(collected, options.formats ?? []);
  const raw = message.body;
  const body =
    raw === undefined ? new Uint8Array(0) : typeof raw === "string" ? utf8Encode(raw) : raw;
  const max = options.maxPayloadBytes ?? options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (body.length > max) {
    throw new PosthornError("PayloadTooLarge", `body of ${body.length} bytes exceeds ${max}`, {
      protocolCode: 413,
    });
  }
  try {
    if (detected.mode === "binary") return fromBinary(collected, body, options);
    const format = formatWithRegistry(detected.format as EventFormat, options.registry);
    if (detected.mode === "batch") {
      if (!format.decodeBatch) {
        throw new PosthornError("UnsupportedContentType", `${format.name} cannot decode a batch`);
      }
      return format.decodeBatch(body);
    }
    return format.decode(body);
  } catch (err) {
    throw asDecodeError(err, "HTTP message");
  }
}
