import { parseContentType } from "./content-type.js";
import { invalidEvent, PosthornError, type PosthornErrorOptions } from "./errors.js";
import type { CloudEvent, CloudEventLike } from "./event.js";
import type { ExtensionRegistry } from "./extensions.js";

/**
 * An event format (JSON, Avro, Protobuf): how one event, and where the format defines it a batch,
 * become bytes and back. Formats are plain objects; bindings take any of them for structured mode.
 */
export interface EventFormat {
  /** Short name used in URLs and options: `json`, `avro`, `protobuf`. */
  readonly name: string;
  /** Media type of one event, e.g. `application/cloudevents+json`. */
  readonly contentType: string;
  /** Media type of a batch, when the format defines one. */
  readonly batchContentType?: string;
  /** Whether encoded events are UTF-8 text (WebSocket text frames, MQTT 3.1.1 payloads). */
  readonly text: boolean;
  /**
   * Encodes one event.
   *
   * @throws {@link PosthornError} `InvalidEvent` when the event cannot be represented
   */
  encode(event: CloudEventLike): Uint8Array;
  /**
   * Decodes one event.
   *
   * @throws {@link PosthornError} `MalformedInput` or `InvalidEvent`, never anything else
   */
  decode(bytes: Uint8Array): CloudEvent;
  /** Encodes a batch; present when {@link batchContentType} is. */
  encodeBatch?(events: readonly CloudEventLike[]): Uint8Array;
  /** Decodes a batch; present when {@link batchContentType} is. */
  decodeBatch?(bytes: Uint8Array): CloudEvent[];
  /**
   * The same format (same name, content types, limits and other options) reading the types of
   * extensions from `registry` instead of the one it was made with. A binding given a `registry`
   * option decodes structured and batch messages with the format this returns, so that a declared
   * extension gets the same type in every content mode. Every built-in format has it, and returns
   * itself for the registry it already uses. A format without it (a third-party one written before
   * it existed) keeps working: bindings then decode with the format as given, and its own registry.
   *
   * @param registry - where declared extension types are looked up
   * @returns a format that differs from this one only in its registry
   * @example
   * ```ts
   * const typed = json.withRegistry?.(registry) ?? json;
   * ```
   */
  withRegistry?(registry: ExtensionRegistry): EventFormat;
}

/**
 * An {@link EventFormat} that defines a batch: `batchContentType`, `encodeBatch` and `decodeBatch`
 * are all there, so batch calls need no check. It is an `EventFormat` wherever one is asked for.
 *
 * @example
 * ```ts
 * const format: BatchEventFormat = json;
 * const back = format.decodeBatch(format.encodeBatch(events));
 * ```
 */
export interface BatchEventFormat extends EventFormat {
  /** Media type of a batch, e.g. `application/cloudevents-batch+json`. */
  readonly batchContentType: string;
  /**
   * Encodes a batch.
   *
   * @throws {@link PosthornError} `InvalidEvent` when an event cannot be represented
   */
  encodeBatch(events: readonly CloudEventLike[]): Uint8Array;
  /**
   * Decodes a batch.
   *
   * @throws {@link PosthornError} `MalformedInput` or `InvalidEvent`, never anything else
   */
  decodeBatch(bytes: Uint8Array): CloudEvent[];
  /**
   * The same format reading the types of extensions from `registry`, still a batch format (see
   * {@link EventFormat.withRegistry}).
   *
   * @param registry - where declared extension types are looked up
   * @returns a format that differs from this one only in its registry
   */
  withRegistry?(registry: ExtensionRegistry): BatchEventFormat;
}

/**
 * A codec for typed `data` in binary mode (an Avro record, a Protobuf message): turns the value
 * into the bytes of the payload and back, identified by its content type and `dataschema`.
 */
export interface DataCodec<T = unknown> {
  /** The content type the encoded payload carries, e.g. `application/avro`. */
  readonly contentType: string;
  /** The `dataschema` URI naming the schema, when the codec has one. */
  readonly dataschema?: string;
  /**
   * Encodes a value.
   *
   * @throws {@link PosthornError} `InvalidEvent` (attribute `data`) when the value does not fit
   *   the schema or message type
   */
  encode(value: T): Uint8Array;
  /**
   * Decodes bytes into a value.
   *
   * @throws {@link PosthornError} `MalformedInput`, also when given anything but bytes
   */
  decode(bytes: Uint8Array): T;
}

/**
 * The events an `encodeBatch` was handed, checked to be an array: a single event, a `Set` or
 * `undefined` failed with a TypeError from `.map`, which named no event and no fix.
 *
 * @param events - what was passed to `encodeBatch`
 * @param what - the encoder, for the message, e.g. `"json.encodeBatch"`
 * @returns the same array
 * @throws {@link PosthornError} `InvalidEvent` when `events` is not an array
 */
export function batchOf<T>(events: readonly T[], what: string): readonly T[] {
  if (Array.isArray(events)) return events;
  const given =
    events === null
      ? "null"
      : typeof events === "object"
        ? "an object that is not an array"
        : typeof events;
  throw invalidEvent(
    `${what} takes an array of events, not ${given}: pass [event] for one event, Array.from(...) for another collection`,
  );
}

/** What a format matched for a content type: the format, and whether it names its batch type. */
export interface FormatMatch {
  /** The registered format whose content type matched. */
  readonly format: EventFormat;
  /** Whether the content type was the format's batch type rather than its single-event type. */
  readonly batch: boolean;
}

/**
 * Finds the format a content type names, among the formats a caller registered. Matching ignores
 * case and parameters.
 *
 * @param formats - the formats to look in, in order; the first that matches wins
 * @param contentType - a `Content-Type` value; `undefined` or an unparseable value matches none
 * @returns the format and whether it is the batch type, or `undefined`
 */
export function findFormat(
  formats: readonly EventFormat[],
  contentType: string | undefined,
): FormatMatch | undefined {
  if (contentType === undefined) return undefined;
  const mediaType = parseContentType(contentType)?.mediaType;
  if (mediaType === undefined) return undefined;
  for (const format of formats) {
    if (format.contentType === mediaType) return { format, batch: false };
    if (format.batchContentType === mediaType) return { format, batch: true };
  }
  return undefined;
}

/**
 * What a decoder's `formats` option holds, for an error that says it lacks a format: without
 * `formats`, every structured message of a subscriber arrives as such an error, and the reader
 * has to know which option to set.
 *
 * @param formats - the formats the caller registered
 * @returns `options.formats is empty`, or the content types it reads
 */
export function formatsGiven(formats: readonly EventFormat[]): string {
  return formats.length === 0
    ? "options.formats is empty"
    : `options.formats reads ${formats.map((f) => f.contentType).join(", ")}`;
}

/**
 * The `UnsupportedContentType` error of a structured message whose content type no registered
 * format reads: it says what `options.formats` holds and where the missing format goes.
 *
 * @param contentType - the message's content type
 * @param formats - the formats the caller registered
 * @param options - the error's `attribute` or `protocolCode`
 * @returns the error, to throw
 */
export function noFormatFor(
  contentType: string,
  formats: readonly EventFormat[],
  options: PosthornErrorOptions = {},
): PosthornError {
  return new PosthornError(
    "UnsupportedContentType",
    `no registered event format reads ${contentType} (${formatsGiven(formats)}): add the format for it to options.formats, e.g. formats: [json] from @posthorn/format-json`,
    options,
  );
}

// Formats adapted to a registry, made once per format and registry: bindings look them up for
// every structured message they decode with a `registry` option.
const adapted = new WeakMap<EventFormat, WeakMap<ExtensionRegistry, EventFormat>>();

/**
 * The format to decode with when a binding was given an extension registry: `format` adapted to
 * `registry` by its {@link EventFormat.withRegistry}, made on first use and cached (weakly, by
 * format and registry), so decoding one message after another adapts nothing anew. `format`
 * itself when `registry` is `undefined` or the format has no `withRegistry`.
 *
 * @param format - the format a binding matched for a structured or batch message
 * @param registry - the binding's `registry` option, if any
 * @returns the format that reads declared extensions from `registry`
 * @example
 * ```ts
 * const event = formatWithRegistry(json, registry).decode(bytes);
 * ```
 */
export function formatWithRegistry(
  format: EventFormat,
  registry: ExtensionRegistry | undefined,
): EventFormat {
  if (registry === undefined || typeof format.withRegistry !== "function") return format;
  let byRegistry = adapted.get(format);
  if (byRegistry === undefined) {
    byRegistry = new WeakMap();
    adapted.set(format, byRegistry);
  }
  let result = byRegistry.get(registry);
  if (result === undefined) {
    result = format.withRegistry(registry);
    byRegistry.set(registry, result);
  }
  return result;
}

/**
 * Whether a content type announces a structured or batch CloudEvent (`application/cloudevents...`).
 *
 * @param contentType - a `Content-Type` value; `undefined` or an unparseable value is not one
 */
export function isCloudEventsContentType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  return parseContentType(contentType)?.mediaType.startsWith("application/cloudevents") === true;
}
