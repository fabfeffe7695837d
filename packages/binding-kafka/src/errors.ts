import { type ErrorCode, isPosthornError, PosthornError } from "@posthorn/core";

// kafkajs error names and Kafka protocol error types, mapped onto Posthorn's codes in one place.
const BY_NAME: Readonly<Record<string, ErrorCode>> = {
  KafkaJSConnectionError: "ConnectionFailed",
  KafkaJSConnectionClosedError: "ConnectionFailed",
  KafkaJSBrokerNotFound: "ConnectionFailed",
  KafkaJSNotConnected: "ConnectionFailed",
  KafkaJSRequestTimeoutError: "Timeout",
  KafkaJSTimeout: "Timeout",
  KafkaJSLockTimeout: "Timeout",
  KafkaJSProtocolError: "PublishRejected",
  KafkaJSNonRetriableError: "PublishRejected",
  KafkaJSAggregateError: "PublishRejected",
};

const BY_TYPE: Readonly<Record<string, ErrorCode>> = {
  MESSAGE_TOO_LARGE: "PayloadTooLarge",
  RECORD_LIST_TOO_LARGE: "PayloadTooLarge",
  REQUEST_TIMED_OUT: "Timeout",
  NETWORK_EXCEPTION: "ConnectionFailed",
  UNKNOWN_TOPIC_OR_PARTITION: "PublishRejected",
  TOPIC_AUTHORIZATION_FAILED: "PublishRejected",
  INVALID_RECORD: "PublishRejected",
  CORRUPT_MESSAGE: "PublishRejected",
};

// Plain Errors kafkajs throws without a name or a retriable flag, by message: a broker connection
// that is being re-established (seen while the broker restarts) is a connection failure.
const BY_MESSAGE: ReadonlyArray<readonly [string, ErrorCode]> = [
  ["Broker not connected", "ConnectionFailed"],
  ["Connection closed", "ConnectionFailed"],
  ["ECONNREFUSED", "ConnectionFailed"],
  ["ECONNRESET", "ConnectionFailed"],
];

// kafkajs errors that only wrap another one (their `cause`).
const WRAPPERS: ReadonlySet<string> = new Set([
  "KafkaJSNumberOfRetriesExceeded",
  "KafkaJSNonRetriableError",
]);

interface KafkaClientError {
  name?: string;
  type?: string;
  code?: number | string;
  retriable?: boolean;
  message?: string;
  cause?: unknown;
  originalError?: unknown;
}

/**
 * Translates an error from a Kafka client (kafkajs, or a KafkaJS-compatible client) into a
 * {@link PosthornError}: connection and timeout failures are retryable, protocol refusals carry
 * the Kafka error type as `protocolCode`.
 *
 * @param err - what the client threw
 * @param what - the operation, for the message (e.g. `publish to orders`)
 * @param refused - the code of a refusal (a protocol error, what the client does not call
 *   retriable): `PublishRejected` (the default) for a publish, `SettlementFailed` for a commit
 */
export function fromKafkaError(
  err: unknown,
  what: string,
  refused: ErrorCode = "PublishRejected",
): PosthornError {
  if (isPosthornError(err)) return err;
  let e = (
    typeof err === "object" && err !== null ? err : { message: String(err) }
  ) as KafkaClientError;
  // kafkajs wraps the last failure of its retries, and a consumer that crashes and will not
  // restart reports a KafkaJSNonRetriableError around what went wrong (a KafkaJSConnectionError
  // when the broker went away): the innermost error says what happened (kafkajs itself decides
  // whether to restart from it).
  for (let depth = 0; depth < 8 && WRAPPERS.has(e.name ?? ""); depth++) {
    const inner = e.cause ?? e.originalError;
    if (typeof inner !== "object" || inner === null) break;
    e = inner as KafkaClientError;
  }
  const found: ErrorCode =
    (e.type !== undefined ? BY_TYPE[e.type] : undefined) ??
    (e.name !== undefined ? BY_NAME[e.name] : undefined) ??
    (e.retriable === undefined && typeof e.message === "string"
      ? BY_MESSAGE.find(([fragment]) => (e.message as string).includes(fragment))?.[1]
      : undefined) ??
    (e.retriable ? "ConnectionFailed" : "PublishRejected");
  // A refusal is a refusal of the operation at hand: of a commit, it is a failed settlement.
  const code = found === "PublishRejected" ? refused : found;
  const protocolCode = e.type ?? e.code;
  return new PosthornError(code, `${what} failed: ${e.message ?? String(err)}`, {
    cause: err,
    ...(e.retriable === undefined ? {} : { retryable: e.retriable }),
    ...(protocolCode === undefined ? {} : { protocolCode }),
  });
}

/**
 * Refuses a topic option that names no topic (`topic`, `deadLetterTopic`): kafkajs takes `""`,
 * and every request to it then fails with the broker's "Invalid topic".
 *
 * @internal
 */
export function checkTopicName(option: string, value: unknown): void {
  if (typeof value === "string" && value !== "") return;
  throw new PosthornError(
    "NotSupported",
    `${option} must be a topic name (a non-empty string), got ${shownTopics(value)}`,
    { attribute: option },
  );
}

/**
 * A topic option as an error message shows it: strings quoted, patterns as written, lists of both.
 *
 * @internal
 */
export function shownTopics(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(shownTopics).join(", ")}]`;
  if (value instanceof RegExp) return String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return typeof value;
  }
}
