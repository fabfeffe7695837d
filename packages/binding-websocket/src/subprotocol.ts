import {
  asDecodeError,
  type CloudEvent,
  type CloudEventLike,
  type EventFormat,
  PosthornError,
  toUint8Array,
  utf8Decode,
  utf8Encode,
} from "@posthorn/core";

/**
 * The subprotocol of each event format (WebSockets binding 1.2): by format name, `json`,
 * `avro` and `protobuf`.
 */
export const SUBPROTOCOLS: Readonly<Record<string, string>> = Object.freeze({
  json: "cloudevents.json",
  avro: "cloudevents.avro",
  protobuf: "cloudevents.proto",
});

/**
 * The subprotocol that carries `format`, from its name.
 *
 * @param format - the event format; its `name` is looked up in {@link SUBPROTOCOLS}
 * @throws {@link PosthornError} `NotSupported` for a format the WebSockets binding does not name
 */
export function subprotocolOf(format: EventFormat): string {
  const protocol = SUBPROTOCOLS[format.name];
  if (protocol === undefined || !Object.hasOwn(SUBPROTOCOLS, format.name)) {
    throw new PosthornError(
      "NotSupported",
      `the WebSockets binding defines no subprotocol for the ${format.name} format`,
    );
  }
  return protocol;
}

/**
 * Checks the `formats` option: a non-empty list. With none, a client would offer no subprotocol
 * and a server would refuse every client, failing later with an error that names no cause.
 *
 * @param formats - the option as given
 * @throws {@link PosthornError} `NotSupported` (`attribute` `formats`) when it is not a list, or
 *   an empty one
 */
export function checkFormats(formats: unknown): asserts formats is readonly EventFormat[] {
  if (Array.isArray(formats) && formats.length > 0) return;
  throw new PosthornError(
    "NotSupported",
    `formats must be a non-empty list of event formats (e.g. formats: [json] from @posthorn/format-json), got ${Array.isArray(formats) ? "an empty list" : typeof formats}`,
    { attribute: "formats" },
  );
}

/**
 * The subprotocols a client offers for `formats`, in the caller's order of preference, each once
 * (two formats of one name, such as `json` and `json.withRegistry(r)`, share a subprotocol, and a
 * WebSocket client refuses a list that names one twice).
 *
 * @param formats - the formats to offer, most preferred first
 * @throws {@link PosthornError} `NotSupported` for a format the WebSockets binding does not name,
 *   or when `formats` is empty or not a list
 */
export function offeredSubprotocols(formats: readonly EventFormat[]): string[] {
  checkFormats(formats);
  return [...new Set(formats.map(subprotocolOf))];
}

/**
 * The format among `formats` that a negotiated subprotocol names, if any.
 *
 * @param formats - the formats this side accepts
 * @param protocol - the negotiated subprotocol; `undefined` or `""` (none) matches no format
 */
export function formatOfSubprotocol(
  formats: readonly EventFormat[],
  protocol: string | undefined,
): EventFormat | undefined {
  if (!protocol) return undefined;
  for (const format of formats) {
    if (SUBPROTOCOLS[format.name] === protocol && Object.hasOwn(SUBPROTOCOLS, format.name)) {
      return format;
    }
  }
  return undefined;
}

/** One WebSocket message: the encoded event, and whether it goes in a text frame. */
export interface WebSocketFrame {
  /** The encoded event: the whole message. */
  readonly data: Uint8Array;
  /** Text frame for text formats (JSON), binary frame otherwise (WebSockets binding 1.2). */
  readonly text: boolean;
}

/**
 * Encodes one event as one WebSocket message in the negotiated format (WebSockets binding 1.2:
 * every message is one structured event).
 *
 * @param event - the event
 * @param format - the negotiated format
 * @throws {@link PosthornError} `InvalidEvent` when the format cannot represent the event
 */
export function toWebSocketFrame(event: CloudEventLike, format: EventFormat): WebSocketFrame {
  return { data: format.encode(event), text: format.text };
}

/**
 * Decodes one WebSocket message in the negotiated format. Text frames (as strings) and binary
 * frames (as `Uint8Array`, `ArrayBuffer` or a `Buffer` list) are both accepted, whatever the
 * format, since the frame type carries no information the format does not.
 *
 * @param data - the message as the WebSocket implementation delivered it
 * @param format - the negotiated format
 * @throws {@link PosthornError} `MalformedInput` or `InvalidEvent`
 */
export function fromWebSocketFrame(
  data: string | Uint8Array | ArrayBuffer | readonly Uint8Array[],
  format: EventFormat,
): CloudEvent {
  try {
    return format.decode(frameBytes(data));
  } catch (err) {
    throw asDecodeError(err, "WebSocket message");
  }
}

/**
 * The bytes of a received message, whatever shape the WebSocket implementation gave it.
 *
 * @param data - a string (UTF-8 encoded), bytes, an `ArrayBuffer` (viewed, not copied), or the
 *   fragments `ws` hands over as a list (joined into one copy)
 */
export function frameBytes(
  data: string | Uint8Array | ArrayBuffer | readonly Uint8Array[],
): Uint8Array {
  if (typeof data === "string") return utf8Encode(data);
  if (Array.isArray(data)) {
    const parts = data as readonly Uint8Array[];
    let total = 0;
    for (const p of parts) total += p.length;
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
  return toUint8Array(data as ArrayBuffer | Uint8Array);
}

/**
 * The text of a frame for a text format, for WebSocket APIs that send text only as strings.
 *
 * @param frame - an encoded frame
 * @throws {@link PosthornError} `MalformedInput` when its bytes are not valid UTF-8
 */
export function frameText(frame: WebSocketFrame): string {
  return utf8Decode(frame.data, "text frame");
}
