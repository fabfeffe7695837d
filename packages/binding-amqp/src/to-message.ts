import {
  binaryContentType,
  CloudEvent,
  type CloudEventLike,
  type ContentMode,
  extensions as defaultRegistry,
  type EventFormat,
  type ExtensionRegistry,
  encodeData,
  formatWithRegistry,
  invalidEvent,
  isBytes,
  isCloudEvent,
  isInteger,
  PosthornError,
  parseTimestamp,
} from "@posthorn/core";
import {
  AMQP_PREFIX,
  type AmqpCodec,
  type AmqpIntegerType,
  type AmqpMessage,
  type AmqpPrefix,
} from "./amqp-message.js";
import { checkBinaryOptions, unknownMode } from "./options.js";

/** Options for {@link toAmqpMessage}. */
export interface ToAmqpMessageOptions {
  /** rhea itself (`import rhea from "rhea"`): writes AMQP `long`/`int` values and data sections. */
  codec: AmqpCodec;
  /** `binary` (default) or `structured`. AMQP has no batch mode. */
  mode?: ContentMode;
  /** The event format of structured mode. Required there. */
  format?: EventFormat;
  /** Application-property prefix: `cloudEvents:` (default, the spec's) or `cloudEvents_` (JMS selectors). */
  prefix?: AmqpPrefix;
  /** AMQP type of Integer attributes: `long` (default, the spec's table) or `int`. */
  integerType?: AmqpIntegerType;
  /**
   * Where declared extensions are looked up: Timestamp extensions become AMQP timestamps in binary
   * mode, and in structured mode the format encodes with this registry (`withRegistry`). Defaults
   * to core's `extensions` (and to the format's own registry in structured mode).
   */
  registry?: ExtensionRegistry;
}

/**
 * Maps a CloudEvent onto an AMQP 1.0 message (amqp-protocol-binding.md section 3), ready for a
 * rhea sender.
 *
 * Binary mode (3.1): every attribute but `datacontenttype` becomes an application property named
 * `cloudEvents:<name>` with its AMQP type: Boolean as `boolean`, Integer as `long` (or `int`),
 * Binary as `binary`, Timestamps as `timestamp` when millisecond precision holds them exactly (a
 * finer fraction travels as the canonical string, which the spec allows), everything else as
 * `string`. `datacontenttype` is the `content-type` property, and the data is one data section.
 * An event without data carries no data section.
 *
 * Structured mode (3.2): the formatted event in one data section, `content-type` the format's
 * media type.
 *
 * @param input - the event; one that is not a Posthorn `CloudEvent` is validated first
 * @param options - rhea as the codec, the mode (`binary` by default), the format of structured
 *   mode, the prefix, the Integer type and the extension registry
 * @throws {@link PosthornError} `InvalidEvent` when an attribute or the data cannot be
 *   represented; `NotSupported` for batch mode or structured mode without a format
 * @example
 * ```ts
 * import rhea from "rhea";
 * sender.send(toAmqpMessage(event, { codec: rhea }));
 * ```
 */
export function toAmqpMessage(input: CloudEventLike, options: ToAmqpMessageOptions): AmqpMessage {
  const event = isCloudEvent(input) ? input : CloudEvent.from(input);
  const mode = options.mode ?? "binary";
  const codec = options.codec;
  if (mode === "structured") {
    const format = options.format;
    if (format === undefined) {
      throw new PosthornError("NotSupported", "structured mode needs an event format");
    }
    // 3.2.1 and 3.2.2: the format's media type, the formatted event as application data.
    return {
      content_type: format.contentType,
      body: codec.message.data_section(formatWithRegistry(format, options.registry).encode(event)),
    };
  }
  if (mode !== "binary") throw unknownMode(mode);
  checkBinaryOptions(options);
  const prefix = options.prefix ?? AMQP_PREFIX;
  const wrapInteger =
    options.integerType === "int"
      ? (n: number) => codec.types.wrap_int(n)
      : (n: number) => codec.types.wrap_long(n);
  const registry = options.registry ?? defaultRegistry;
  const properties: Record<string, unknown> = {};
  const record = event as unknown as Record<string, unknown>;
  for (const name of Object.keys(record)) {
    if (name === "data" || name === "datacontenttype") continue;
    const value = record[name];
    if (value === undefined || value === null) continue;
    // 3.1.3.1 names, 3.1.3.2 values in their AMQP types.
    properties[prefix + name] = toPropertyValue(name, value, registry, wrapInteger);
  }
  const data = record.data;
  const datacontenttype = record.datacontenttype as string | undefined;
  const message: AmqpMessage = { application_properties: properties };
  // 3.1.1: datacontenttype is the AMQP content-type property.
  const contentType = binaryContentType(data, datacontenttype);
  if (contentType !== undefined) message.content_type = contentType;
  // 3.1.2: the data as bytes in the application-data (data) section, never an AMQP value.
  const bytes = encodeData(data, datacontenttype);
  if (bytes !== undefined) message.body = codec.message.data_section(bytes);
  return message;
}

function toPropertyValue(
  name: string,
  value: unknown,
  registry: ExtensionRegistry,
  wrapInteger: (n: number) => unknown,
): unknown {
  switch (typeof value) {
    case "string":
      if (registry.typeOf(name) === "Timestamp") return timestampValue(value);
      return value;
    case "boolean":
      return value;
    case "number":
      if (!isInteger(value)) {
        throw invalidEvent(`${name} must be an Integer in the signed 32-bit range`, name);
      }
      return wrapInteger(value);
    default:
      if (isBytes(value)) return value;
      throw invalidEvent(
        `${name} has a value of type ${typeof value}, which no AMQP property type carries`,
        name,
      );
  }
}

/**
 * An AMQP timestamp (a `Date`, which rhea writes as `timestamp`) when milliseconds hold the
 * instant exactly; otherwise the canonical string, so no precision is lost.
 */
function timestampValue(text: string): Date | string {
  const ms = timestampMillis(text);
  return ms === undefined ? text : new Date(ms);
}

/**
 * The milliseconds since the epoch of an RFC 3339 timestamp, when they name it exactly (a
 * fraction of at most three digits, a representable date); `undefined` otherwise.
 */
export function timestampMillis(text: string): number | undefined {
  const instant = parseTimestamp(text);
  if (instant === undefined || instant.fraction.length > 3) return undefined;
  const ms = instant.epochSeconds * 1000 + Number(instant.fraction.padEnd(3, "0"));
  // Read back as RFC 3339 in UTC, which has four-digit years: `9999-12-31T16:00:00-08:00` is in
  // year 10000 in UTC and stays a string.
  return ms >= MIN_RFC3339_MS && ms <= MAX_RFC3339_MS ? ms : undefined;
}

/** 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z. */
const MIN_RFC3339_MS = -62167219200000;
const MAX_RFC3339_MS = 253402300799999;
