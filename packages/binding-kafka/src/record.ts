import type { CloudEvent, EventFormat, ExtensionRegistry, JsonLimits } from "@posthorn/core";

/**
 * One header value as Kafka clients hand it over: kafkajs gives `Buffer`s (and an array when a
 * header name repeats); records built by hand often hold strings; `null`/`undefined` stand for a
 * header without a value.
 */
export type KafkaHeaderValue = Uint8Array | string | null | undefined;

/** Record headers by name, in the shape of kafkajs' `IHeaders`. */
export type KafkaHeaders = Readonly<
  Record<string, KafkaHeaderValue | readonly (Uint8Array | string)[]>
>;

/**
 * A Kafka record reduced to what the mapping layer reads and writes. It is structural, so a
 * kafkajs `KafkaMessage`, a `@confluentinc/kafka-javascript` message, or a plain object fits.
 */
export interface KafkaRecord {
  /** The record key; `null` when the record has none. */
  readonly key: Uint8Array | string | null | undefined;
  /** The record value; `null` is a tombstone. */
  readonly value: Uint8Array | string | null | undefined;
  /** The record headers. */
  readonly headers: KafkaHeaders | undefined;
  /** Milliseconds since the epoch, as a decimal string (kafkajs' representation). */
  readonly timestamp?: string | undefined;
}

/** What {@link toKafkaRecord} produces: string headers, byte value. */
export interface OutgoingKafkaRecord {
  /** The record key: the key mapper's, else the one given, else `null`. */
  readonly key: Uint8Array | string | null;
  /** The value bytes, or `null` for an event without data in binary mode (a tombstone). */
  readonly value: Uint8Array | null;
  /** `ce_` attribute headers and `content-type` (binary mode), or `content-type` alone. */
  readonly headers: Record<string, string>;
}

/**
 * Computes the record key from an event. Returning `undefined` keeps the key the caller gave
 * (or none). A key mapper must not change the event (Kafka binding 3.1).
 */
export type KeyMapper = (event: CloudEvent) => Uint8Array | string | null | undefined;

/** Content modes of the Kafka binding: it has no batch mode (Kafka binding 1.3). */
export type KafkaContentMode = "binary" | "structured";

/** Options for {@link toKafkaRecord}. */
export interface KafkaEncodeOptions {
  /** `binary` (default) or `structured`. */
  mode?: KafkaContentMode;
  /** The event format for structured mode. Required when `mode` is `structured`. */
  format?: EventFormat;
  /** The record key the caller provides (Kafka binding 3.1: the default mapping). */
  key?: Uint8Array | string | null;
  /**
   * Computes the key from the event instead; `undefined` from it falls back to `key`. What it
   * throws is `InvalidEvent` (`attribute` `key`, the original as `cause`), a `PosthornError`
   * excepted, which is thrown as it is.
   */
  keyMapper?: KeyMapper;
}

/** Options for the decoding functions. */
export interface KafkaDecodeOptions {
  /** Formats structured records may use. Without any, structured records are `UnsupportedContentType`. */
  formats?: readonly EventFormat[];
  /**
   * Where declared extension types are looked up, in both content modes: binary mode reads
   * declared extensions' header strings into their types, and structured mode decodes with the
   * matched format adapted to this registry ({@link EventFormat.withRegistry}; a format without
   * it decodes with its own). Defaults to core's `extensions` in binary mode and to the format's
   * own in structured mode.
   */
  registry?: ExtensionRegistry;
  /**
   * Largest record value accepted, in bytes; more is `PayloadTooLarge`, whatever the record
   * holds (binary, structured, or no CloudEvent). Default {@link DEFAULT_MAX_VALUE_BYTES}
   * (8 MiB). The same name as in every other binding.
   */
  maxPayloadBytes?: number;
  /**
   * The former name of {@link KafkaDecodeOptions.maxPayloadBytes}, still read; when both are
   * given, `maxPayloadBytes` wins.
   *
   * @deprecated use maxPayloadBytes
   */
  maxValueBytes?: number;
  /**
   * Most header entries accepted (repeated names count once per value); more is
   * `PayloadTooLarge`, whatever the record holds (binary, structured, or no CloudEvent).
   * Default 256.
   */
  maxHeaders?: number;
  /** Limits for JSON data and JSON-format values. */
  json?: JsonLimits;
}

/** The header carrying `datacontenttype` in binary mode and the format in structured mode. */
export const CONTENT_TYPE_HEADER = "content-type";

/** The prefix of attribute headers in binary mode (Kafka binding 3.2.3.1). */
export const ATTRIBUTE_PREFIX = "ce_";

/**
 * The header in which Posthorn carries how many times a record was delivered before it was
 * written where it now is (dead-letter and retry topics). Kafka has no delivery counter of its own.
 */
export const DELIVERY_COUNT_HEADER = "posthorn-delivery-count";

/** Default of {@link KafkaDecodeOptions.maxPayloadBytes}: 8 MiB. */
export const DEFAULT_MAX_VALUE_BYTES = 8 * 1024 * 1024;

/** Default of {@link KafkaDecodeOptions.maxHeaders}. */
export const DEFAULT_MAX_HEADERS = 256;
