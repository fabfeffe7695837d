import { type ErrorCode, isPosthornError, PosthornError } from "@posthorn/core";

/** How one AMQP error condition or outcome reads as a Posthorn error. */
interface Translation {
  /** The code; when absent, the context's default (`PublishRejected` or `ConnectionFailed`). */
  readonly code?: ErrorCode;
  readonly retryable: boolean;
}

/**
 * The one table from AMQP 1.0 error conditions (amqp-core-transport 2.8.15-2.8.18), delivery
 * outcomes, and socket errors to Posthorn's error codes. Conditions not listed take the context's
 * default code and are not retryable.
 */
export const AMQP_ERROR_TABLE: Readonly<Record<string, Translation>> = Object.freeze({
  // Delivery outcomes that are not `accepted` (messaging 3.4).
  rejected: { code: "PublishRejected", retryable: false },
  released: { code: "PublishRejected", retryable: true },
  modified: { code: "PublishRejected", retryable: true },
  // amqp-error
  "amqp:internal-error": { retryable: true },
  "amqp:not-found": { retryable: false },
  "amqp:unauthorized-access": { code: "ConnectionFailed", retryable: false },
  "amqp:decode-error": { code: "MalformedInput", retryable: false },
  "amqp:resource-limit-exceeded": { retryable: true },
  "amqp:not-allowed": { retryable: false },
  "amqp:invalid-field": { retryable: false },
  "amqp:not-implemented": { code: "NotSupported", retryable: false },
  "amqp:resource-locked": { retryable: true },
  "amqp:precondition-failed": { retryable: false },
  "amqp:resource-deleted": { code: "ConnectionFailed", retryable: false },
  "amqp:illegal-state": { retryable: false },
  "amqp:frame-size-too-small": { code: "PayloadTooLarge", retryable: false },
  // connection-error
  "amqp:connection:forced": { code: "ConnectionFailed", retryable: true },
  "amqp:connection:framing-error": { code: "ConnectionFailed", retryable: true },
  "amqp:connection:redirect": { code: "ConnectionFailed", retryable: true },
  // session-error
  "amqp:session:window-violation": { code: "ConnectionFailed", retryable: true },
  "amqp:session:errant-link": { code: "ConnectionFailed", retryable: true },
  "amqp:session:handle-in-use": { code: "ConnectionFailed", retryable: true },
  "amqp:session:unattached-handle": { code: "ConnectionFailed", retryable: true },
  // link-error
  "amqp:link:detach-forced": { code: "ConnectionFailed", retryable: true },
  "amqp:link:transfer-limit-exceeded": { retryable: true },
  "amqp:link:message-size-exceeded": { code: "PayloadTooLarge", retryable: false },
  "amqp:link:redirect": { code: "ConnectionFailed", retryable: true },
  "amqp:link:stolen": { code: "ConnectionFailed", retryable: true },
  // Socket errors rhea reports on `disconnected`.
  ECONNREFUSED: { code: "ConnectionFailed", retryable: true },
  ECONNRESET: { code: "ConnectionFailed", retryable: true },
  EPIPE: { code: "ConnectionFailed", retryable: true },
  ETIMEDOUT: { code: "ConnectionFailed", retryable: true },
  EHOSTUNREACH: { code: "ConnectionFailed", retryable: true },
  ENOTFOUND: { code: "ConnectionFailed", retryable: true },
});

/** Where an AMQP error was met, which decides the default code. */
export type AmqpErrorContext = "publish" | "link" | "connection";

const DEFAULT_CODE: Record<AmqpErrorContext, ErrorCode> = {
  publish: "PublishRejected",
  link: "ConnectionFailed",
  connection: "ConnectionFailed",
};

/**
 * The condition (or socket error code) an AMQP error or rhea error carries.
 *
 * @param error - anything a rhea event or callback handed over
 * @returns the condition, e.g. `amqp:not-found`, or a code such as `ECONNREFUSED`; `undefined`
 *   when it carries neither
 */
export function conditionOf(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const e = error as { condition?: unknown; code?: unknown };
  return text(e.condition) ?? text(e.code);
}

function descriptionOf(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const e = error as { description?: unknown; message?: unknown };
  return text(e.description) || text(e.message) || undefined;
}

/** A string, or the string inside a still-typed AMQP value (`{ value: "..." }`). */
function text(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "object" && value !== null) {
    const inner = (value as { value?: unknown }).value;
    if (typeof inner === "string") return inner;
  }
  return undefined;
}

/**
 * Translates an AMQP error (an `{ condition, description }` error frame, a rhea error, a socket
 * error) or a delivery outcome into a {@link PosthornError}, through {@link AMQP_ERROR_TABLE}.
 *
 * @param error - the error, or `undefined` when only the outcome is known
 * @param context - where it was met: it decides the code of conditions the table leaves open
 * @param what - a sentence start naming the operation, e.g. `publish to /queue/orders`
 * @param outcome - the delivery outcome (`rejected`, `released`, `modified`) when there is one
 */
export function translateAmqpError(
  error: unknown,
  context: AmqpErrorContext,
  what: string,
  outcome?: "rejected" | "released" | "modified",
): PosthornError {
  if (isPosthornError(error)) {
    // The frame guard ends a connection with MalformedInput (a peer that broke the framing or
    // does not speak AMQP 1.0): for what ran on it, the connection failed. Trying again reaches
    // the same peer.
    if (context === "connection" && error.code !== "ConnectionFailed" && error.code !== "Closed") {
      return new PosthornError("ConnectionFailed", `${what} failed: ${error.message}`, {
        retryable: false,
        cause: error,
      });
    }
    return error;
  }
  const condition = conditionOf(error);
  const byCondition = condition === undefined ? undefined : AMQP_ERROR_TABLE[condition];
  const byOutcome = outcome === undefined ? undefined : AMQP_ERROR_TABLE[outcome];
  // An outcome decides the code (the broker answered the transfer); a condition it carries
  // refines retryability.
  const code = byOutcome?.code ?? byCondition?.code ?? DEFAULT_CODE[context];
  const retryable = byCondition?.retryable ?? byOutcome?.retryable ?? false;
  const description = descriptionOf(error);
  const protocolCode = condition ?? (outcome === undefined ? undefined : `amqp:${outcome}`);
  const head = outcome ? `${what}: the peer answered ${outcome}` : `${what} failed`;
  return new PosthornError(
    code,
    `${head}${condition ? ` (${condition})` : ""}${description ? `: ${description}` : ""}`,
    {
      retryable,
      ...(protocolCode === undefined ? {} : { protocolCode }),
      ...(error === undefined ? {} : { cause: error }),
    },
  );
}
