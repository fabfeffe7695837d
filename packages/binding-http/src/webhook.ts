import { PosthornError } from "@posthorn/core";

/**
 * Header names of the HTTP 1.1 Web Hooks for Event Delivery spec (http-webhook.md section 4,
 * abuse protection), in lower case.
 */
export const WEBHOOK_HEADERS = Object.freeze({
  requestOrigin: "webhook-request-origin",
  requestCallback: "webhook-request-callback",
  requestRate: "webhook-request-rate",
  allowedOrigin: "webhook-allowed-origin",
  allowedRate: "webhook-allowed-rate",
});

/** How a receiver answers the validation handshake. */
export interface WebhookReceiverOptions {
  /**
   * Which senders may deliver: `"*"` for any, a list of origins (DNS names, matched ignoring
   * case), or a function deciding per origin.
   */
  allowedOrigins: "*" | readonly string[] | ((origin: string) => boolean | Promise<boolean>);
  /**
   * The rate granted, in requests per minute, or `"*"` for no limit. When absent, the rate the
   * sender asked for (`WebHook-Request-Rate`) is granted; when it asked none, nothing is said.
   */
  allowedRate?: number | "*";
}

/** What the receiver's answer to a validation request is: status and headers. */
export interface WebhookGrant {
  readonly status: number;
  readonly headers: Record<string, string>;
}

/**
 * Answers an abuse-protection validation request (http-webhook.md 4.2): when the origin in
 * `WebHook-Request-Origin` is allowed, 200 with `WebHook-Allowed-Origin` (the origin, or `*` when
 * every origin is) and, where known, `WebHook-Allowed-Rate`; otherwise 403 with neither header,
 * which the sender reads as "not granted".
 *
 * @param origin - the `WebHook-Request-Origin` value
 * @param requestedRate - the `WebHook-Request-Rate` value, if any
 * @param options - who is allowed and at what rate
 */
export async function answerWebhookValidation(
  origin: string,
  requestedRate: string | undefined,
  options: WebhookReceiverOptions,
): Promise<WebhookGrant> {
  const allowed = options.allowedOrigins;
  let granted: boolean;
  if (allowed === "*") granted = true;
  else if (typeof allowed === "function") granted = (await allowed(origin)) === true;
  else {
    const lower = origin.toLowerCase();
    granted = allowed.some((o) => o.toLowerCase() === lower);
  }
  const headers: Record<string, string> = { allow: "POST, OPTIONS" };
  if (!granted) return { status: 403, headers };
  // 4.2: the origin itself, or "*" when the receiver accepts deliveries from anyone.
  headers[WEBHOOK_HEADERS.allowedOrigin] = allowed === "*" ? "*" : origin;
  const rate = options.allowedRate ?? (isRate(requestedRate) ? requestedRate : undefined);
  if (rate !== undefined) headers[WEBHOOK_HEADERS.allowedRate] = String(rate);
  return { status: 200, headers };
}

function isRate(value: string | undefined): value is string {
  return value !== undefined && (value === "*" || /^[1-9]\d{0,8}$/.test(value));
}

/** What a sender's validation handshake obtained. */
export interface WebhookPermission {
  /** The origin the receiver granted (`*` or the sender's origin). */
  readonly allowedOrigin: string;
  /** Requests per minute granted; `undefined` when unlimited or not stated. */
  readonly allowedRate: number | undefined;
}

/** How a sender asks for permission to deliver. */
export interface WebhookSenderOptions {
  /** The sender's origin, sent as `WebHook-Request-Origin` (a DNS name, e.g. `events.example.com`). */
  origin: string;
  /** Requests per minute asked for, sent as `WebHook-Request-Rate`. */
  requestRate?: number;
  /** Timeout of the `OPTIONS` request. Default 10 s. */
  timeoutMs?: number;
}

/**
 * Reads a receiver's answer to the validation request (http-webhook.md 4.2): granted when the
 * status is 2xx and `WebHook-Allowed-Origin` is `*` or the sender's own origin.
 *
 * @returns the permission
 * @throws {@link PosthornError} `PublishRejected` (not retryable) when permission is refused
 */
export function readWebhookGrant(
  status: number,
  headers: { get(name: string): string | null },
  origin: string,
): WebhookPermission {
  const allowedOrigin = headers.get(WEBHOOK_HEADERS.allowedOrigin)?.trim();
  if (
    status < 200 ||
    status > 299 ||
    allowedOrigin === undefined ||
    (allowedOrigin !== "*" && allowedOrigin.toLowerCase() !== origin.toLowerCase())
  ) {
    throw new PosthornError(
      "PublishRejected",
      `the receiver did not grant delivery to origin ${origin} (status ${status}, WebHook-Allowed-Origin ${allowedOrigin ?? "absent"})`,
      { protocolCode: status, retryable: false },
    );
  }
  const rate = headers.get(WEBHOOK_HEADERS.allowedRate)?.trim();
  const n = rate === undefined || rate === "*" ? Number.NaN : Number(rate);
  return { allowedOrigin, allowedRate: Number.isInteger(n) && n > 0 ? n : undefined };
}
