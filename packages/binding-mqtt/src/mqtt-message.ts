import type { ContentMode, EventFormat, ExtensionRegistry, JsonLimits } from "@posthorn/core";

/**
 * The MQTT protocol level a message travels at: `5` (MQTT 5.0) or `4` (MQTT 3.1.1, which mqtt.js
 * calls protocol version 4). `3` (MQTT 3.1) is read like 3.1.1.
 */
export type MqttProtocolVersion = 3 | 4 | 5;

/**
 * An MQTT PUBLISH reduced to what the CloudEvents MQTT binding reads and writes, without the
 * client library's types: the payload, and (MQTT 5 only) the Content Type and User Properties.
 * User property values are a string, or an array when a name was repeated (as mqtt.js delivers
 * them).
 */
export interface MqttMessage {
  /** The application message. */
  readonly payload: Uint8Array;
  /** MQTT 5 Content Type property. */
  readonly contentType?: string;
  /** MQTT 5 User Properties by name. */
  readonly userProperties?: Readonly<Record<string, string | readonly string[]>>;
}

/** Options for {@link toMqttMessage}. */
export interface ToMqttMessageOptions {
  /** `binary` (MQTT 5 only) or `structured`. Defaults to `binary` at MQTT 5, `structured` at 3.1.1. */
  mode?: Exclude<ContentMode, "batch">;
  /** The event format for structured mode. Required for structured mode. */
  format?: EventFormat;
  /** The protocol version the message is for. Defaults to 5. */
  protocolVersion?: MqttProtocolVersion;
}

/** Limits a receiver applies before decoding. */
export interface MqttLimits {
  /** Largest payload accepted, in bytes. Default {@link DEFAULT_MAX_PAYLOAD_BYTES}. */
  maxPayloadBytes?: number;
  /** Most user properties accepted on one message. Default {@link DEFAULT_MAX_USER_PROPERTIES}. */
  maxUserProperties?: number;
  /**
   * Limits for JSON data read in binary mode: `maxDepth`, the deepest nesting accepted (default
   * 128; deeper is `MalformedInput`). The same option as in every other binding.
   */
  json?: JsonLimits;
}

/** Options for {@link fromMqttMessage} and {@link classifyMqttMessage}. */
export interface FromMqttMessageOptions extends MqttLimits {
  /**
   * The formats structured messages may use, matched by content type. A 3.1.1 message (no
   * content type) is read with the format named `json` among these.
   */
  formats: readonly EventFormat[];
  /** The protocol version the message arrived at. Defaults to 5. */
  protocolVersion?: MqttProtocolVersion;
  /**
   * Where declared extension types are looked up, in both content modes: binary mode reads
   * declared extensions' user properties into their types, and structured mode decodes with the
   * matched format adapted to this registry ({@link EventFormat.withRegistry}; a format without
   * it decodes with its own). Defaults to core's registry in binary mode and to the format's own
   * in structured mode.
   */
  registry?: ExtensionRegistry;
}

/** Default {@link MqttLimits.maxPayloadBytes}: 8 MiB. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024;
/** Default {@link MqttLimits.maxUserProperties}: 256. */
export const DEFAULT_MAX_USER_PROPERTIES = 256;
