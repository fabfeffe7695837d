import { type ErrorCode, isPosthornError, PosthornError } from "@posthorn/core";

/** What the binding was doing when the client failed. */
export type NatsOperation = "publish" | "subscribe" | "settle";

interface Translation {
  readonly code: ErrorCode;
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
  StreamNotFoundError: { code: "PublishRejected", retryable: false },
  ConsumerNotFoundError: { code: "ConnectionFailed", retryable: false },
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
  let found =
    (code !== undefined ? BY_CODE[code] : undefined) ?? (name ? BY_NAME[name] : undefined);
  if (!found && /max_payload/i.test(message)) found = { code: "PayloadTooLarge" };
  const t = found ?? { code: operation === "publish" ? "PublishRejected" : "ConnectionFailed" };
  return new PosthornError(t.code, `NATS ${operation} failed: ${message}`, {
    ...options,
    ...(t.retryable === undefined ? {} : { retryable: t.retryable }),
  });
}
