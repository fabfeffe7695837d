import {
  CloudEvent,
  type CloudEventLike,
  canonicalString,
  type EventFormat,
  effectiveContentType,
  encodeData,
  encodeHeaderValue,
  invalidEvent,
  isAttributeName,
  isBytes,
  isInteger,
  PosthornError,
} from "@posthorn/core";
import { NatsHeaders } from "./headers.js";

/** The content modes the NATS binding defines (NATS binding 1.3: no batch mode). */
export type NatsContentMode = "binary" | "structured";

/** Prefix of every attribute header in binary mode (NATS binding 3.1.3.1). */
export const CE_HEADER_PREFIX = "ce-";
/** The header naming the format in structured mode (NATS binding 3). */
export const CONTENT_TYPE_HEADER = "Content-Type";

/** A NATS message as the mapping layer builds it: payload and headers, no client types. */
export interface NatsMessage {
  /** The payload. */
  readonly data: Uint8Array;
  /**
   * The headers. Pass them as the `headers` option of nats.js `publish()` (v2 or v3): they have
   * the shape of its `MsgHdrs`.
   */
  readonly headers: NatsHeaders;
}

/** Options for {@link toNatsMessage}. */
export interface NatsEncodeOptions {
  /** `binary` (the default: attributes as `ce-` headers, data as payload) or `structured`. */
  mode?: NatsContentMode;
  /** The event format for structured mode (required there), e.g. `json` from `@posthorn/format-json`. */
  format?: EventFormat;
}

/**
 * Maps a CloudEvent onto a NATS message.
 *
 * Binary mode (NATS binding 3.1): every attribute, `datacontenttype` included, becomes a header
 * `ce-<name>` holding its canonical string, percent-encoded (3.1.3.2); the data's bytes are the
 * payload (3.1.1). Structured mode (3.2): the formatted event is the payload and `Content-Type`
 * names the format, which is how a receiver tells the modes apart (3).
 *
 * @param event - the event (a Posthorn `CloudEvent` or any `CloudEventV1`-shaped object)
 * @param options - content mode and, for structured mode, the format
 * @returns the payload and headers to publish
 * @throws {@link PosthornError} `InvalidEvent` when the event cannot be represented;
 *   `NotSupported` for structured mode without a format, and for a mode NATS does not have
 * @example
 * ```ts
 * const { data, headers } = toNatsMessage(event);
 * nc.publish("orders", data, { headers });
 * ```
 */
export function toNatsMessage(event: CloudEventLike, options: NatsEncodeOptions = {}): NatsMessage {
  const ce = CloudEvent.from(event);
  const mode = options.mode ?? "binary";
  if (mode === "structured") {
    const format = options.format;
    if (!format) {
      throw new PosthornError(
        "NotSupported",
        "structured mode needs an event format (options.format)",
      );
    }
    return { data: format.encode(ce), headers: structuredHeaders(format) };
  }
  if (mode !== "binary") {
    throw new PosthornError(
      "NotSupported",
      `the NATS binding has no ${String(mode)} mode (NATS binding 1.3)`,
    );
  }
  return toBinary(ce);
}

function toBinary(event: CloudEvent): NatsMessage {
  const record = event as unknown as Record<string, unknown>;
  // Names are checked against the attribute-name rule and values percent-encoded, so both are
  // header-safe by construction: the header block is written here in one pass.
  const flat: string[] = [];
  let text = "NATS/1.0\r\n";
  for (const name of Object.keys(record)) {
    if (name === "data" || name === "datacontenttype") continue;
    const header = CE_HEADER_PREFIX + checkName(name);
    const value = headerText(record[name], name);
    flat.push(header, value);
    text += `${header}: ${value}\r\n`;
  }
  const data = event.data;
  const contentType = effectiveContentType(data, event.datacontenttype);
  if (contentType !== undefined) {
    // NATS binding 3.1.3.1: datacontenttype travels as ce-datacontenttype like any attribute.
    const value = headerText(contentType, "datacontenttype");
    flat.push("ce-datacontenttype", value);
    text += `ce-datacontenttype: ${value}\r\n`;
  }
  const bytes = encodeData(data, event.datacontenttype) ?? EMPTY;
  return { data: bytes, headers: NatsHeaders.trusted(flat, `${text}\r\n`) };
}

const EMPTY = new Uint8Array(0);

// The structured-mode header block of each format, checked and encoded once: every message gets
// its own NatsHeaders (JetStream adds Nats-Msg-Id to it) sharing the encoded bytes.
const structuredBlocks = new WeakMap<EventFormat, { text: string; bytes: Uint8Array }>();

function structuredHeaders(format: EventFormat): NatsHeaders {
  let block = structuredBlocks.get(format);
  if (block === undefined) {
    const headers = new NatsHeaders();
    headers.set(CONTENT_TYPE_HEADER, format.contentType);
    block = { text: headers.toString(), bytes: headers.encode() };
    structuredBlocks.set(format, block);
  }
  return NatsHeaders.trusted([CONTENT_TYPE_HEADER, format.contentType], block.text, block.bytes);
}

function checkName(name: string): string {
  if (!isAttributeName(name)) {
    throw invalidEvent(
      `attribute name ${JSON.stringify(name)} must be lower-case letters and digits`,
      name,
    );
  }
  return name;
}

// NATS binding 3.1.3.2: the canonical string, percent-encoded.
function headerText(value: unknown, name: string): string {
  if (typeof value === "string") return encodeHeaderValue(value, name);
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!isInteger(value)) throw invalidEvent(`${name} must be a 32-bit Integer`, name);
    return String(value);
  }
  if (isBytes(value)) return canonicalString(value);
  throw invalidEvent(`${name} has a value no CloudEvents type can hold`, name);
}
