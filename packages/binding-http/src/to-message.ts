import {
  binaryContentType,
  CloudEvent,
  type CloudEventLike,
  type ContentMode,
  canonicalString,
  type EventFormat,
  encodeData,
  encodeHeaderValue,
  invalidEvent,
  isAttributeName,
  isBytes,
  isInteger,
  PosthornError,
  prefixedName,
} from "@posthorn/core";

/**
 * An HTTP message reduced to what the mapping needs: header names (lower case when Posthorn
 * writes them) with string values, and the body.
 */
export interface HttpMessage {
  /** Header values by name; Posthorn writes `content-type` and `ce-*` names in lower case. */
  readonly headers: Record<string, string>;
  /** The body; empty for an event without data in binary mode. */
  readonly body: Uint8Array;
}

/** Options for {@link toHttpMessage}. */
export interface ToHttpMessageOptions {
  /** Content mode; `binary` unless told otherwise. */
  mode?: ContentMode;
  /** The event format for `structured` and `batch` mode. */
  format?: EventFormat;
}

/** The prefix of binary-mode attribute headers (HTTP binding 3.1.3.1). */
export const HEADER_PREFIX = "ce-";

const EMPTY = new Uint8Array(0);

const VISIBLE_ASCII = /^[\x20-\x7e]*$/;

/**
 * Whether a `Content-Type` can be written as it stands (a media type, not a percent-encoded
 * attribute): visible ASCII and space only, which keeps CR, LF and other controls out of the
 * header. The receiving side holds a binary-mode `Content-Type` to the same rule, so that what it
 * decodes can be sent on.
 *
 * @internal
 */
export function isWritableContentType(value: string): boolean {
  return VISIBLE_ASCII.test(value);
}

function safeContentType(value: string): string {
  if (!isWritableContentType(value)) {
    throw invalidEvent(
      "datacontenttype holds a character a header cannot carry",
      "datacontenttype",
    );
  }
  return value;
}

function attributeText(name: string, value: unknown): string {
  if (typeof value === "string" || typeof value === "boolean" || isBytes(value)) {
    return canonicalString(value);
  }
  if (typeof value === "number") {
    if (!isInteger(value)) throw invalidEvent(`${name} must be a 32-bit Integer`, name);
    return canonicalString(value);
  }
  throw invalidEvent(`${name} has no CloudEvents type (${typeof value})`, name);
}

/**
 * The binary-mode headers and body of one event (HTTP binding 3.1): every attribute but
 * `datacontenttype` as a `ce-` header holding its percent-encoded canonical string,
 * `datacontenttype` as `Content-Type`, and the data as the body.
 */
function toBinary(event: CloudEvent): HttpMessage {
  const headers: Record<string, string> = {};
  for (const name of Object.keys(event)) {
    if (name === "data" || name === "datacontenttype") continue;
    // An unchecked event could carry any property name; only attribute names may become headers.
    if (!isAttributeName(name)) {
      throw invalidEvent(
        `attribute name ${JSON.stringify(name)} must consist of lower-case letters and digits`,
        name,
      );
    }
    // 3.1.3.2: the canonical string, percent-encoded.
    headers[prefixedName(HEADER_PREFIX, name)] = encodeHeaderValue(
      attributeText(name, event[name]),
      name,
    );
  }
  const data = event.data;
  const dct = event.datacontenttype;
  // 3.1.1: datacontenttype is the Content-Type; JSON data without one is written as JSON.
  const contentType = binaryContentType(data, dct);
  if (contentType !== undefined) headers["content-type"] = safeContentType(contentType);
  // 3.1.2: the body is the data.
  return { headers, body: encodeData(data, dct) ?? EMPTY };
}

/**
 * Refuses a mode that is none of the three (a typo from JavaScript): it was written in
 * structured mode whenever a format was given.
 *
 * @internal
 */
export function checkMode(mode: unknown): void {
  if (mode === "binary" || mode === "structured" || mode === "batch") return;
  throw new PosthornError(
    "NotSupported",
    `mode must be "binary", "structured" or "batch", got ${typeof mode === "string" ? JSON.stringify(mode) : String(mode)}`,
    { attribute: "mode" },
  );
}

function requireFormat(options: ToHttpMessageOptions, mode: ContentMode): EventFormat {
  if (options.format === undefined) {
    throw new PosthornError("NotSupported", `${mode} mode needs an event format (options.format)`);
  }
  return options.format;
}

/**
 * The Content-Type of a structured or batch message in `format`, with `; charset=utf-8` for a
 * text format.
 *
 * @param format - the event format
 * @param batch - whether the message is a batch
 * @throws {@link PosthornError} `NotSupported` for a batch in a format that defines none
 */
export function formatContentType(format: EventFormat, batch: boolean): string {
  const mediaType = batch ? format.batchContentType : format.contentType;
  if (mediaType === undefined) {
    throw new PosthornError("NotSupported", `the ${format.name} format defines no batch`);
  }
  // 3.2.1: text formats announce their charset.
  return format.text ? `${mediaType}; charset=utf-8` : mediaType;
}

/**
 * Maps one event, or a batch, onto an HTTP request or response (HTTP protocol binding 3):
 *
 * - `binary` (default): attributes as percent-encoded `ce-` headers, `datacontenttype` as
 *   `Content-Type`, the data as the body;
 * - `structured`: `Content-Type` is the format's media type and the body the formatted event;
 * - `batch`: `Content-Type` is the format's batch media type and the body the formatted batch.
 *
 * Pure: no I/O. Header names are written in lower case.
 *
 * @param input - one event (binary, structured) or an array of events (batch)
 * @param options - mode and format
 * @returns the headers and body
 * @throws {@link PosthornError} `InvalidEvent` when an event cannot be represented,
 *   `NotSupported` when the mode needs a format (or a batch type) that was not given, or is
 *   none of `binary`, `structured` and `batch`
 *
 * @example
 * ```ts
 * const { headers, body } = toHttpMessage(event, { mode: "structured", format: json });
 * await fetch(url, { method: "POST", headers, body });
 * ```
 */
export function toHttpMessage(
  input: CloudEventLike | readonly CloudEventLike[],
  options: ToHttpMessageOptions = {},
): HttpMessage {
  const mode = options.mode ?? "binary";
  if (mode !== "binary" && mode !== "structured") checkMode(mode);
  if (mode === "batch") {
    const format = requireFormat(options, mode);
    const contentType = formatContentType(format, true);
    const events = Array.isArray(input) ? input : [input as CloudEventLike];
    const encodeBatch = format.encodeBatch;
    if (!encodeBatch)
      throw new PosthornError("NotSupported", `${format.name} cannot encode a batch`);
    // 3.3.2: the formatted batch is the body.
    return { headers: { "content-type": contentType }, body: encodeBatch.call(format, events) };
  }
  if (Array.isArray(input)) {
    throw new PosthornError(
      "NotSupported",
      `${mode} mode carries one event per message; use batch mode for an array`,
    );
  }
  const event = CloudEvent.from(input as CloudEventLike);
  if (mode === "binary") return toBinary(event);
  const format = requireFormat(options, mode);
  // 3.2.1-3.2.2: the format's media type and the formatted event.
  return {
    headers: { "content-type": formatContentType(format, false) },
    body: format.encode(event),
  };
}
