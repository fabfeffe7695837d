import { type ErrorCode, isPosthornError, PosthornError, quoted } from "@posthorn/core";

/** What the binding was doing when the client failed. */
export type NatsOperation = "publish" | "subscribe" | "settle";

interface Translation {
  /** The code; when absent, the operation's (`PublishRejected` or `ConnectionFailed`). */
  readonly code?: ErrorCode;
  readonly retryable?: boolean;
}

// Every nats.js failure this binding meets, in one table. The modular v3 clients name their
// errors (`err.name`); the `nats` v2 package sets `err.code` on a NatsError.
const BY_NAME: Readonly<Record<string, Translation>> = {
  TimeoutError: { code: "Timeout" },
  NoResponders: { code: "PublishRejected", retryable: false },
  JetStreamNotEnabled: { code: "PublishRejected", retryable: false },
  ClosedConnectionError: { code: "Closed" },
  DrainingConnectionError: { code: "Closed" },
  ConnectionError: { code: "ConnectionFailed" },
  ProtocolError: { code: "ConnectionFailed" },
  AuthorizationError: { code: "ConnectionFailed", retryable: false },
  UserAuthenticationExpiredError: { code: "ConnectionFailed", retryable: false },
  PermissionViolationError: { code: "PublishRejected", retryable: false },
  JetStreamApiError: { code: "PublishRejected" },
  JetStreamError: { code: "PublishRejected" },
  JetStreamStatusError: { code: "ConnectionFailed" },
  // Not found: nothing to publish to, or to subscribe to; the operation says which.
  StreamNotFoundError: { retryable: false },
  ConsumerNotFoundError: { retryable: false },
  InvalidSubjectError: { code: "PublishRejected", retryable: false },
  AbortError: { code: "Aborted" },
};

const BY_CODE: Readonly<Record<string, Translation>> = {
  TIMEOUT: { code: "Timeout" },
  "503": { code: "PublishRejected", retryable: false },
  "408": { code: "Timeout" },
  "409": { code: "ConnectionFailed" },
  CONNECTION_CLOSED: { code: "Closed" },
  CONNECTION_DRAINING: { code: "Closed" },
  SUB_CLOSED: { code: "Closed" },
  SUB_DRAINING: { code: "Closed" },
  DISCONNECT: { code: "ConnectionFailed" },
  CONNECTION_REFUSED: { code: "ConnectionFailed" },
  CONNECTION_TIMEOUT: { code: "ConnectionFailed" },
  MAX_PAYLOAD_EXCEEDED: { code: "PayloadTooLarge" },
  PERMISSIONS_VIOLATION: { code: "PublishRejected", retryable: false },
  AUTHORIZATION_VIOLATION: { code: "ConnectionFailed", retryable: false },
  BAD_SUBJECT: { code: "PublishRejected", retryable: false },
  "BAD API": { code: "PublishRejected" },
  CANCELLED: { code: "Aborted" },
};

/**
 * Translates anything nats.js throws into a {@link PosthornError}, with the client's own name or
 * code as `protocolCode` and the original as `cause`. Settlement failures are always
 * `SettlementFailed`.
 *
 * @param err - anything a nats.js call threw or rejected with; a `PosthornError` is returned as is
 * @param operation - what the binding was doing, which picks the code when the table has none:
 *   `PublishRejected` for `publish`, `ConnectionFailed` for `subscribe`
 * @returns the error, to throw
 */
export function translateNatsError(err: unknown, operation: NatsOperation): PosthornError {
  if (isPosthornError(err)) return err;
  const e = (typeof err === "object" && err !== null ? err : {}) as {
    name?: unknown;
    code?: unknown;
    message?: unknown;
  };
  const message = typeof e.message === "string" ? e.message : String(err);
  const name = typeof e.name === "string" ? e.name : undefined;
  const code = e.code === undefined ? undefined : String(e.code);
  const protocolCode = code ?? name;
  const options = { cause: err, ...(protocolCode === undefined ? {} : { protocolCode }) };
  if (operation === "settle") {
    return new PosthornError("SettlementFailed", `NATS settlement failed: ${message}`, options);
  }
  if (
    operation === "subscribe" &&
    (name === "InvalidSubjectError" || code === "BAD_SUBJECT" || /illegal subject/i.test(message))
  ) {
    // The subject the caller gave cannot be subscribed to: an option refused, not a publish.
    return new PosthornError("NotSupported", `NATS subscribe failed: ${message}`, {
      ...options,
      attribute: "subject",
    });
  }
  let found =
    (code !== undefined ? BY_CODE[code] : undefined) ?? (name ? BY_NAME[name] : undefined);
  if (!found && /max_payload/i.test(message)) found = { code: "PayloadTooLarge" };
  const t = found ?? {};
  const errorCode = t.code ?? (operation === "publish" ? "PublishRejected" : "ConnectionFailed");
  return new PosthornError(errorCode, `NATS ${operation} failed: ${message}`, {
    ...options,
    ...(t.retryable === undefined ? {} : { retryable: t.retryable }),
  });
}

// JetStream API error codes (the server's `err_code`) of a consumer look-up, and what the user
// has to do about each. nats.js v3 sets them as `code`; v2 as `api_error.err_code` (its `code`
// is the HTTP-like 404 of both).
const LOOKUP_FAILURES: Readonly<Record<number, (stream: string, consumer: string) => string>> = {
  10059: (stream) =>
    `stream ${quoted(stream)} does not exist on this server: create it (and its durable consumer) before jetStreamSubscriber reads it`,
  10014: (stream, consumer) =>
    `stream ${quoted(stream)} has no consumer ${quoted(consumer)}: create the durable pull consumer, with ack_policy "explicit", before jetStreamSubscriber reads it`,
};

/**
 * The error of `jetStreamSubscriber` when it cannot look up or read the consumer: a missing
 * stream or consumer, a push consumer, or (while iterating) a consumer deleted under it, is
 * `ConnectionFailed`, not retryable, with a message that says what to create (nats.js v3 called a missing stream `PublishRejected` here, and v2 made
 * every one of them retryable); anything else as {@link translateNatsError} does.
 *
 * @internal
 */
export function consumerLookupError(err: unknown, stream: string, consumer: string): PosthornError {
  const translated = translateNatsError(err, "subscribe");
  if (isPosthornError(err)) return translated;
  const e = (typeof err === "object" && err !== null ? err : {}) as {
    code?: unknown;
    message?: unknown;
    api_error?: { err_code?: unknown };
  };
  const apiCode = Number(e.api_error?.err_code ?? e.code);
  const message = typeof e.message === "string" ? e.message : "";
  const explain =
    LOOKUP_FAILURES[apiCode] ??
    (/stream not found/i.test(message) ? LOOKUP_FAILURES[10059] : undefined) ??
    (/consumer not found/i.test(message) ? LOOKUP_FAILURES[10014] : undefined);
  let text: string | undefined = explain?.(stream, consumer);
  if (text === undefined && /consumer deleted/i.test(message)) {
    text = `consumer ${quoted(consumer)} of stream ${quoted(stream)} was deleted (or its stream was) while the subscriber read it: create it again and make a new subscriber`;
  }
  if (text === undefined && /not a pull consumer|push consumer/i.test(message)) {
    text = `consumer ${quoted(consumer)} of stream ${quoted(stream)} is a push consumer (it has a deliver_subject): jetStreamSubscriber reads pull consumers, so create one without deliver_subject`;
  }
  if (text === undefined) return translated;
  return new PosthornError("ConnectionFailed", text, {
    cause: err,
    retryable: false,
    ...(translated.protocolCode === undefined ? {} : { protocolCode: translated.protocolCode }),
  });
}

/**
 * The error of a JetStream publish the server had no responder for: no stream stores the
 * subject (nats.js v3 says `jetstream is not enabled`, v2 `503`), or JetStream is off.
 *
 * @internal
 */
export function noStreamError(err: unknown, subject: string): PosthornError | undefined {
  const translated = translateNatsError(err, "publish");
  const why = translated.protocolCode;
  if (why !== "JetStreamNotEnabled" && why !== "503" && why !== "NoResponders") return undefined;
  return new PosthornError(
    "PublishRejected",
    `no JetStream stream stores subject ${quoted(subject)} (the server had no responder for the publish): add the subject to a stream's subjects, or check that JetStream is enabled on the server`,
    { cause: err, protocolCode: why, retryable: false },
  );
}
