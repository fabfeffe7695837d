/**
 * The AMQP 1.0 message as rhea hands it over and takes it: the bare-message sections this binding
 * reads and writes, by rhea's field names. A structural type of our own, so that rhea's types do
 * not leak into Posthorn's public API; a rhea `Message` is assignable to it.
 */
export interface AmqpMessage {
  /** Properties section: `content-type` (a symbol). */
  content_type?: string | undefined;
  /** Application-properties section: simple values by name. */
  application_properties?: Record<string, unknown> | undefined;
  /**
   * The body: a data section (rhea's `Section` with typecode 0x75), an AMQP value (any value),
   * or a sequence section.
   */
  body?: unknown;
  /** Header section: how many earlier delivery attempts failed. */
  delivery_count?: number | undefined;
  /** Header section: `false` when the message may have been acquired before (a redelivery). */
  first_acquirer?: boolean | undefined;
  /** Any other section field rhea exposes (`message_id`, `subject`, `to`, ...). */
  [field: string]: unknown;
}

/**
 * The few rhea helpers the mapping needs at run time to write typed values: the AMQP `long` and
 * `int` wrappers and the data-section body. Pass rhea itself (`import rhea from "rhea"`); the
 * mapping imports no client library, so it stays usable (and testable) without a connection.
 */
export interface AmqpCodec {
  /** Typed-value wrappers (rhea's `types`). */
  readonly types: {
    /** Wraps a number to be written as an AMQP `long` (64-bit signed). */
    wrap_long(value: number): unknown;
    /** Wraps a number to be written as an AMQP `int` (32-bit signed). */
    wrap_int(value: number): unknown;
  };
  /** Message helpers (rhea's `message`). */
  readonly message: {
    /** Makes a body that is one data section holding `data`. */
    data_section(data: Uint8Array): unknown;
  };
}

/** The application-property prefixes of the binding (amqp-protocol-binding.md 3.1.3.1). */
export type AmqpPrefix = "cloudEvents:" | "cloudEvents_";

/** The prefix the spec names, written by default. */
export const AMQP_PREFIX: AmqpPrefix = "cloudEvents:";

/**
 * The AMQP type an Integer attribute is written as. The binding spec's table (1.0.2, 3.1.3.2)
 * names `long`; `int` matches the 32-bit range of CloudEvents Integer and is what some receivers
 * expect. Receivers accept both.
 */
export type AmqpIntegerType = "long" | "int";

/** Typecode of an AMQP data section, the body the binding puts application data in. */
export const DATA_SECTION_TYPECODE = 0x75;
/** Typecode of an AMQP sequence section. */
export const SEQUENCE_SECTION_TYPECODE = 0x76;
