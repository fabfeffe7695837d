/**
 * Every failure Posthorn reports is a {@link PosthornError} with one of these codes. Callers branch
 * on `err.code` (or `err.name === "PosthornError"`), never on `instanceof` across packages, since
 * two copies of core can be installed side by side.
 *
 * | code | meaning | retryable by default |
 * | --- | --- | --- |
 * | `InvalidEvent` | an event breaks a CloudEvents rule (missing or malformed attribute) | no |
 * | `MalformedInput` | bytes, headers or properties cannot be parsed at all | no |
 * | `UnsupportedContentType` | no registered format or codec handles the content type | no |
 * | `PayloadTooLarge` | an event, batch or header set exceeds a configured limit | no |
 * | `NotSupported` | the transport cannot do what was asked (e.g. `release()` on core NATS) | no |
 * | `ConnectionFailed` | the transport connection failed or was lost | yes |
 * | `Timeout` | an operation did not complete in time | yes |
 * | `PublishRejected` | the peer or broker refused a message it received | depends on the condition |
 * | `Closed` | the publisher or subscriber was closed | no |
 * | `Aborted` | an `AbortSignal` fired | no |
 * | `SettlementFailed` | a delivery could not be settled (already settled, link gone) | no |
 */
export type ErrorCode =
  | "InvalidEvent"
  | "MalformedInput"
  | "UnsupportedContentType"
  | "PayloadTooLarge"
  | "NotSupported"
  | "ConnectionFailed"
  | "Timeout"
  | "PublishRejected"
  | "Closed"
  | "Aborted"
  | "SettlementFailed";

/** Options for {@link PosthornError}. */
export interface PosthornErrorOptions {
  /** Whether trying the same operation again may succeed. Defaults per code (see {@link ErrorCode}). */
  retryable?: boolean;
  /** The transport's own code or condition, e.g. `amqp:resource-limit-exceeded` or HTTP `503`. */
  protocolCode?: string | number;
  /** The attribute, header or property the error is about, when there is one. */
  attribute?: string;
  /** The underlying error. */
  cause?: unknown;
}

const RETRYABLE_BY_DEFAULT: ReadonlySet<ErrorCode> = new Set(["ConnectionFailed", "Timeout"]);

/**
 * The one error type of Posthorn.
 *
 * @example
 * ```ts
 * try { format.decode(bytes) } catch (err) {
 *   if (isPosthornError(err, "MalformedInput")) console.warn(err.message);
 * }
 * ```
 */
export class PosthornError extends Error {
  /** Always `"PosthornError"`: test it, or call {@link isPosthornError}, not `instanceof`. */
  override readonly name = "PosthornError";
  /** What kind of failure this is. */
  readonly code: ErrorCode;
  /** Whether trying again may succeed. */
  readonly retryable: boolean;
  /** The transport's own code or condition, where it has one. */
  readonly protocolCode: string | number | undefined;
  /**
   * The attribute, header or property concerned, or the option a `NotSupported` setting names,
   * where there is one.
   */
  readonly attribute: string | undefined;

  /**
   * @param code - the failure kind
   * @param message - a sentence a person can act on
   * @param options - retryability, protocol code, attribute and cause
   */
  constructor(code: ErrorCode, message: string, options: PosthornErrorOptions = {}) {
    super(
      cut(message, MAX_MESSAGE_LENGTH),
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.code = code;
    this.retryable = options.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
    this.protocolCode = options.protocolCode;
    this.attribute =
      options.attribute === undefined ? undefined : cut(options.attribute, MAX_ATTRIBUTE_LENGTH);
  }
}

// Messages and attribute names often quote what arrived (a header name, a content type, an
// attribute's value), and they go on to logs, HTTP answers and dead-letter reasons: a hostile
// megabyte must not go with them. Past these lengths they are cut, saying how much was left out.
const MAX_MESSAGE_LENGTH = 2000;
const MAX_ATTRIBUTE_LENGTH = 200;

function cut(text: string, max: number): string {
  return text.length <= max
    ? text
    : `${text.slice(0, max)}... (${text.length - max} more characters)`;
}

/**
 * Tells whether `err` is a Posthorn error, optionally of one code. Works across copies of core.
 *
 * @param err - anything caught
 * @param code - when given, the code it must have
 */
export function isPosthornError(err: unknown, code?: ErrorCode): err is PosthornError {
  if (typeof err !== "object" || err === null) return false;
  const e = err as { name?: unknown; code?: unknown };
  return e.name === "PosthornError" && (code === undefined || e.code === code);
}

/**
 * Shorthand for an `InvalidEvent` error about one attribute (not retryable).
 *
 * @param message - a sentence a person can act on
 * @param attribute - the attribute concerned, when there is one
 * @param cause - the underlying error, when there is one
 * @returns the error, to throw
 */
export function invalidEvent(message: string, attribute?: string, cause?: unknown): PosthornError {
  return new PosthornError("InvalidEvent", message, {
    ...(attribute === undefined ? {} : { attribute }),
    cause,
  });
}

/**
 * Untrusted text for an error message: JSON-quoted (so control characters show), and cut after
 * 40 characters (a hostile header name can be most of a megabyte).
 *
 * @param text - the text
 */
export function quoted(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
}

/**
 * Shorthand for a `MalformedInput` error (not retryable). Note the order: `cause` comes before
 * `attribute` here, after it in {@link invalidEvent}.
 *
 * @param message - a sentence a person can act on
 * @param cause - the underlying error, when there is one
 * @param attribute - the attribute, header or property concerned, when there is one
 * @returns the error, to throw
 */
export function malformed(message: string, cause?: unknown, attribute?: string): PosthornError {
  return new PosthornError("MalformedInput", message, {
    ...(attribute === undefined ? {} : { attribute }),
    cause,
  });
}

/**
 * A `PayloadTooLarge` error for input past a decoding limit, naming the option that sets it so
 * the reader knows what to raise: `<what> (<option>[, by default]): raise <option> to accept it`.
 *
 * @param what - what is past the limit, e.g. `record value of 2048 bytes exceeds the limit of 1024`
 * @param option - the option's name, e.g. `maxPayloadBytes`
 * @param byDefault - whether the limit is the option's default (the caller set none)
 * @returns the error, to throw
 */
export function overLimit(what: string, option: string, byDefault: boolean): PosthornError {
  return new PosthornError(
    "PayloadTooLarge",
    `${what} (${option}${byDefault ? ", by default" : ""}): raise ${option} to accept it`,
  );
}

/**
 * Wraps anything thrown by a decoder into a typed error: a {@link PosthornError} passes through,
 * anything else (a `RangeError` from a library, a `TypeError` from truncated bytes) becomes
 * `MalformedInput` with the original as `cause`.
 *
 * @param err - anything a decoder threw
 * @param what - what was being decoded; starts the new error's message
 * @returns the error, to throw
 */
export function asDecodeError(err: unknown, what: string): PosthornError {
  if (isPosthornError(err)) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return malformed(`${what}: ${reason}`, err);
}

/**
 * Types what a function of the caller's threw for an event it was handed (a key mapper, a
 * subject or message id function, a format's `encode`): a {@link PosthornError} passes through,
 * anything else becomes `InvalidEvent` (this event cannot be sent this way, so not retryable)
 * naming the function and the event, with what it threw as `cause`. Thrown as it was, a
 * `TypeError` from the caller's code reached the publisher's caller untyped.
 *
 * @param err - what the function threw
 * @param what - the function, e.g. `"the keyMapper"`; starts the message
 * @param eventId - the id of the event it was handed
 * @param attribute - what it was to give, e.g. `"key"` or `"subject"`
 * @param after - appended to the message, e.g. `"; nothing was published"`
 * @returns the error, to throw
 */
export function thrownFor(
  err: unknown,
  what: string,
  eventId: unknown,
  attribute: string,
  after = "",
): PosthornError {
  if (isPosthornError(err)) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new PosthornError(
    "InvalidEvent",
    `${what} threw for event ${quoted(String(eventId))}: ${reason}${after}`,
    { attribute, cause: err },
  );
}

/**
 * The error codes Node gives (undici as the `cause` of a `fetch` failure, `ws` on its error)
 * when a server's TLS certificate is not accepted: untrusted, expired, revoked or for another
 * host name. Trying again fails the same way until the configuration changes (a CA to trust, a
 * renewed certificate, the right host name), so a binding makes such a failure not retryable.
 */
const CERTIFICATE_CODES: ReadonlySet<string> = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_REVOKED",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "CERT_SIGNATURE_FAILURE",
  "CERT_CHAIN_TOO_LONG",
  "INVALID_CA",
  "INVALID_PURPOSE",
  "PATH_LENGTH_EXCEEDED",
  "HOSTNAME_MISMATCH",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/**
 * Whether `code` (an error's `code`, e.g. `"CERT_HAS_EXPIRED"`) says a server's TLS certificate
 * was not accepted: a failure retrying cannot mend.
 *
 * @param code - the `code` of the error a connection failed with (anything else is `false`)
 * @returns `true` for Node's certificate verification codes
 * @example
 * ```ts
 * socket.on("error", (err) => {
 *   const retryable = !isCertificateErrorCode((err as { code?: unknown }).code);
 * });
 * ```
 */
export function isCertificateErrorCode(code: unknown): boolean {
  return typeof code === "string" && CERTIFICATE_CODES.has(code);
}
