import { checkCountOption, PosthornError, quoted } from "@posthorn/core";
import type { HttpHeadersInput } from "./from-message.js";
import { fetchSender } from "./sender.js";

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
   * The rate granted, in requests per minute: a whole number, 1 or more, or `"*"` for no limit
   * (http-webhook.md 4.2.2 allows nothing else). Anything else (0, a fraction, `NaN`, `Infinity`)
   * is refused with `NotSupported` naming `webhook.allowedRate` when the receiver is made. When
   * absent, the rate the sender asked for (`WebHook-Request-Rate`) is granted, else `*`.
   */
  allowedRate?: number | "*";
  /**
   * Enforce `allowedRate` on deliveries (http-webhook.md 4.2.2: a sender over its granted rate
   * "ought to expect request throttling", shown by 429). When true, a `POST` or `PUT` from an
   * origin (its `WebHook-Request-Origin`, ignoring case; requests without one count as one origin
   * of their own) that already had `allowedRate` deliveries within the last minute is answered
   * 429 with `Retry-After` (whole seconds until it may send again), before its body is read. Only
   * requests that pass `authorize` count. Needs a numeric `allowedRate` (else `NotSupported` when
   * the receiver is made). Default false: the rate is granted, not enforced.
   */
  enforceRate?: boolean;
  /**
   * Run the receiver's `authorize` on validation requests (`OPTIONS` with
   * `WebHook-Request-Origin`) too: one it refuses is answered 401 and never reaches
   * `allowedOrigins` or `onCallback`. Default false, since http-webhook.md section 4 says the
   * handshake establishes no authorization context, and a sender need not send a credential
   * with it (Posthorn's publisher sends its `authorization` anyway). Needs the receiver's
   * `authorize` (else `NotSupported` when the receiver is made). Only `httpReceiver` and its
   * adapters read it; `answerWebhookValidation` does not.
   */
  authorizeValidation?: boolean;
  /**
   * Asynchronous validation (http-webhook.md 4.1.3). When set, a validation request whose origin
   * `allowedOrigins` does not grant at once, but which carries an absolute `http(s)`
   * `WebHook-Request-Callback` URL, is answered 200 with the grant headers withheld, and handed to
   * this function. Grant it later with `request.confirm()` (or {@link confirmWebhookCallback}),
   * e.g. after a person approved it; ignore it to refuse. The callback URL comes from the sender:
   * confirm only origins you recognise, since confirming makes this server call that URL.
   */
  onCallback?: (request: WebhookCallbackRequest) => unknown;
}

/** A validation request left for the application to grant later (see `onCallback`). */
export interface WebhookCallbackRequest {
  /** The sender's `WebHook-Request-Origin`. */
  readonly origin: string;
  /** The sender's `WebHook-Request-Callback` URL. */
  readonly callbackUrl: string;
  /** The sender's `WebHook-Request-Rate`, when it asked for one. */
  readonly requestedRate: number | undefined;
  /**
   * Grants permission by calling the callback URL ({@link confirmWebhookCallback}). The rate sent
   * defaults to the receiver's `allowedRate`, else the rate the sender asked for, else `*`.
   */
  confirm(options?: WebhookConfirmOptions): Promise<void>;
}

/** Options of {@link confirmWebhookCallback}. */
export interface WebhookConfirmOptions {
  /** Sent as `WebHook-Allowed-Origin`: the sender's origin, or `*`. Default `*`. */
  allowedOrigin?: string;
  /**
   * Sent as `WebHook-Allowed-Rate`: requests per minute (a whole number, 1 or more), or `*`.
   * Anything else rejects the call with `NotSupported` naming `allowedRate`, nothing sent.
   * Default `*`.
   */
  allowedRate?: number | "*";
  /** `GET` (default) or `POST`; the spec allows both. */
  method?: "GET" | "POST";
  /** The fetch to use. Default the global `fetch`. */
  fetch?: typeof fetch;
  /** Timeout of the request. Default 10 s. */
  timeoutMs?: number;
  /** Cancels the request. */
  abortSignal?: AbortSignal;
}

/** What the receiver's answer to a validation request is: status and headers. */
export interface WebhookGrant {
  /**
   * 200 when the origin is allowed or left to the callback, 403 when refused, 400 when the
   * request's `WebHook-Request-Rate` is malformed.
   */
  readonly status: number;
  /**
   * `Allow` always; `WebHook-Allowed-Origin` and `WebHook-Allowed-Rate` only when granted at
   * once.
   */
  readonly headers: Record<string, string>;
}

/**
 * Answers an abuse-protection validation request (http-webhook.md 4.2): when the origin in
 * `WebHook-Request-Origin` is allowed, 200 with `WebHook-Allowed-Origin` (the origin, or `*` when
 * every origin is) and, where known, `WebHook-Allowed-Rate`; otherwise 403 with neither header,
 * which the sender reads as "not granted".
 *
 * When the origin is not granted at once, the request carries a `WebHook-Request-Callback` URL
 * and `options.onCallback` is set, the answer is 200 without the grant headers (4.2: a target
 * granting by callback withholds them) and `onCallback` decides later (4.1.3).
 *
 * @param origin - the `WebHook-Request-Origin` value
 * A `WebHook-Request-Rate` that is neither `*` nor a positive integer is answered 400 with
 * neither grant header, whatever the origin: the request is malformed.
 *
 * @param requestedRate - the `WebHook-Request-Rate` value, if any
 * @param options - who is allowed and at what rate
 * @param callbackUrl - the `WebHook-Request-Callback` value, if any
 * @throws {@link PosthornError} `NotSupported` when `options.allowedRate` is neither `*` nor a
 *   whole number of 1 or more (the receiver checks it when it is made)
 */
export async function answerWebhookValidation(
  origin: string,
  requestedRate: string | undefined,
  options: WebhookReceiverOptions,
  callbackUrl?: string,
): Promise<WebhookGrant> {
  checkRateOption("webhook.allowedRate", options.allowedRate);
  const headers: Record<string, string> = { allow: "POST, OPTIONS" };
  // 4.1.1: the requested rate is "*" or a positive integer. Anything else is a malformed request,
  // not a request for no limit: granting "*" to it would lift the limit the sender meant to ask.
  if (requestedRate !== undefined && !isRate(requestedRate)) return { status: 400, headers };
  const allowed = options.allowedOrigins;
  let granted: boolean;
  if (allowed === "*") granted = true;
  else if (typeof allowed === "function") granted = (await allowed(origin)) === true;
  else {
    const lower = origin.toLowerCase();
    granted = allowed.some((o) => o.toLowerCase() === lower);
  }
  const rate = options.allowedRate ?? requestedRate ?? "*";
  if (!granted) {
    const onCallback = options.onCallback;
    const url = callbackUrl === undefined ? undefined : httpUrl(callbackUrl.trim());
    if (onCallback === undefined || url === undefined) return { status: 403, headers };
    const asked =
      requestedRate === undefined || requestedRate === "*" ? undefined : Number(requestedRate);
    await onCallback({
      origin,
      callbackUrl: url,
      requestedRate: asked,
      confirm: (confirmOptions = {}) =>
        confirmWebhookCallback(url, {
          allowedOrigin: origin,
          // A rate past the range of a double (over 308 digits) is no limit in practice.
          allowedRate: rate === "*" || !Number.isFinite(Number(rate)) ? "*" : Number(rate),
          ...confirmOptions,
        }),
    });
    // 4.2: permission by callback withholds the grant headers.
    return { status: 200, headers };
  }
  // 4.2: the origin itself, or "*" when the receiver accepts deliveries from anyone.
  headers[WEBHOOK_HEADERS.allowedOrigin] = allowed === "*" ? "*" : origin;
  // 4.2.2: the rate MUST be returned when one was asked for, and SHOULD be otherwise; with no
  // limit configured and none asked for, the truthful answer is "*".
  headers[WEBHOOK_HEADERS.allowedRate] = typeof rate === "number" ? rateText(rate) : rate;
  return { status: 200, headers };
}

/** Whether a header value is a rate as 4.1.1 and 4.2.2 write one: `*` or a positive integer. */
function isRate(value: string): boolean {
  return value === "*" || /^[1-9]\d*$/.test(value);
}

/**
 * Checks a rate given as an option (a receiver's `allowedRate`, a confirmation's or an approval's)
 * where it is given: `*`, or a whole number of requests per minute, 1 or more. 4.2.2 allows
 * nothing else; 0, `NaN` or `Infinity` went out as `WebHook-Allowed-Rate: NaN` and the like.
 *
 * @param name - the option's name, as the caller wrote it
 * @param value - the value given; `undefined` (not given) passes
 * @returns `value`
 * @throws {@link PosthornError} `NotSupported` naming the option and the value
 */
export function checkRateOption<T extends number | "*" | undefined>(name: string, value: T): T {
  if (value !== "*") checkCountOption(name, value as number | undefined, 1, false);
  return value;
}

/** A checked rate as header text: digits (String writes 1e21 and past with an exponent), or `*`. */
export function rateText(rate: number | "*"): string {
  return rate === "*" || rate < 1e21 ? String(rate) : BigInt(rate).toString();
}

/** The URL in its normalised form when it is absolute http or https, else `undefined`. */
export function httpUrl(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : undefined;
}

/**
 * Grants a sender permission asynchronously (http-webhook.md 4.1.3): calls the sender's
 * `WebHook-Request-Callback` URL with `GET` (or `POST`), carrying `WebHook-Allowed-Origin` and
 * `WebHook-Allowed-Rate`. Resolves when the sender answers 2xx.
 *
 * @param callbackUrl - the URL the sender gave in `WebHook-Request-Callback`
 * @param options - the rate granted, method, fetch, timeout, abort signal
 * @throws {@link PosthornError} `MalformedInput` (not an absolute http(s) URL), `PublishRejected`
 *   (a non-2xx answer; `protocolCode` is the status), `Timeout`, `ConnectionFailed`, `Aborted`,
 *   `NotSupported` (no fetch available, or an `allowedRate` that is neither `*` nor a whole
 *   number of 1 or more; nothing is sent), `InvalidEvent` (an `allowedOrigin` a header cannot
 *   carry; nothing is sent)
 *
 * @example
 * ```ts
 * await confirmWebhookCallback(callbackUrl, { allowedOrigin: "events.example.com", allowedRate: 120 });
 * ```
 */
export async function confirmWebhookCallback(
  callbackUrl: string | URL,
  options: WebhookConfirmOptions = {},
): Promise<void> {
  const url = httpUrl(String(callbackUrl));
  if (url === undefined) {
    throw new PosthornError(
      "MalformedInput",
      `the webhook callback URL ${JSON.stringify(String(callbackUrl))} is not an absolute http(s) URL`,
      { attribute: WEBHOOK_HEADERS.requestCallback },
    );
  }
  checkRateOption("allowedRate", options.allowedRate);
  const f = options.fetch ?? (globalThis as { fetch?: typeof fetch }).fetch;
  if (f === undefined) {
    throw new PosthornError("NotSupported", "no fetch is available; pass options.fetch");
  }
  const what = `the webhook callback ${url}`;
  const answer = await fetchSender(url, (input, init) => f(input, init)).send({
    method: options.method ?? "GET",
    headers: {
      [WEBHOOK_HEADERS.allowedOrigin]: options.allowedOrigin ?? "*",
      [WEBHOOK_HEADERS.allowedRate]: rateText(options.allowedRate ?? "*"),
    },
    body: undefined,
    timeoutMs: options.timeoutMs ?? 10_000,
    signal: options.abortSignal,
    what,
  });
  if (answer.status < 200 || answer.status > 299) {
    throw new PosthornError("PublishRejected", `${what} answered ${answer.status}`, {
      protocolCode: answer.status,
      retryable: false,
    });
  }
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
  /**
   * Timeout of each attempt of the `OPTIONS` request, which is retried under the publisher's
   * `retry` policy when answered 408, 429 or 5xx, or when it fails or times out. Default 10 s.
   */
  timeoutMs?: number;
  /**
   * A URL the sender serves, sent as `WebHook-Request-Callback` (http-webhook.md 4.1.3), where
   * the receiver (or a person with a browser) grants permission later. It should hold a secret
   * that is hard to guess. When the `OPTIONS` answer grants nothing, publishes wait until the
   * application calls `publisher.approveWebhook()` from its handler for this URL.
   */
  callbackUrl?: string | URL;
  /**
   * How long publishes wait for an asynchronous grant before failing with `Timeout`; the next
   * publish asks again. Default 5 minutes.
   */
  approvalTimeoutMs?: number;
  /**
   * How many requests may go back to back after an idle spell, within the granted rate. Default 1:
   * requests are spaced at least `60000 / rate` ms apart, so no 60-second window holds more than
   * the granted number. With `burst` B, a window may hold up to rate + B - 1.
   */
  burst?: number;
}

/** A grant that arrived by callback (see {@link readWebhookApproval}). */
export interface WebhookApproval {
  /**
   * Requests per minute granted (a whole number, 1 or more), or `*` (or absent) for no limit;
   * `approveWebhook` refuses anything else with `NotSupported`.
   */
  allowedRate?: number | "*";
}

function headerValue(headers: HttpHeadersInput, name: string): string | undefined {
  const get = (headers as { get?: unknown }).get;
  if (typeof get === "function") {
    const v = (get as (n: string) => string | null).call(headers, name);
    return v ?? undefined;
  }
  const record = headers as Readonly<
    Record<string, string | readonly string[] | number | undefined>
  >;
  for (const key of Object.keys(record)) {
    if (key.toLowerCase() !== name) continue;
    const v = record[key];
    return v === undefined ? undefined : Array.isArray(v) ? v.join(",") : String(v);
  }
  return undefined;
}

/**
 * A rate a peer sent in `WebHook-Allowed-Rate`: the positive integer, or `undefined` for `*`, for
 * no header, and for one too large to hold (no limit in practice).
 *
 * @throws {@link PosthornError} `MalformedInput` for anything else (4.2.2: "either an asterisk
 *   character or the string representation of a positive integer number greater than zero"):
 *   such an answer says nothing of the rate, and was taken for no limit
 */
function readRate(value: string | undefined, from: string): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (text === "*") return undefined;
  if (!/^[1-9][0-9]*$/.test(text)) {
    throw new PosthornError(
      "MalformedInput",
      `${from} WebHook-Allowed-Rate ${quoted(text)} is neither "*" nor a positive integer (http-webhook.md 4.2.2)`,
      { attribute: WEBHOOK_HEADERS.allowedRate },
    );
  }
  const rate = Number(text);
  return Number.isFinite(rate) ? rate : undefined;
}

/**
 * Reads the grant a receiver sent to the sender's callback URL (http-webhook.md 4.1.3): the
 * `WebHook-Allowed-Rate` header of that request, for `publisher.approveWebhook()`. `*` or no
 * header is no limit.
 *
 * @param headers - the callback request's headers (Web `Headers` or a Node header record)
 * @throws {@link PosthornError} `MalformedInput` (attribute `webhook-allowed-rate`) when the
 *   header is neither `*` nor a positive integer: answer the callback 400 and approve nothing
 */
export function readWebhookApproval(headers: HttpHeadersInput): WebhookApproval {
  const rate = readRate(headerValue(headers, WEBHOOK_HEADERS.allowedRate), "the callback's");
  return rate === undefined ? {} : { allowedRate: rate };
}

/**
 * Reads a receiver's answer to the validation request (http-webhook.md 4.2): granted when the
 * status is 2xx and `WebHook-Allowed-Origin` is `*` or the sender's own origin.
 *
 * @param status - the HTTP status of the answer
 * @param headers - the answer's headers (a Web `Headers`, or anything with `get`)
 * @param origin - the sender's own origin, as it sent it in `WebHook-Request-Origin`; compared
 *   without regard to case
 * @returns the permission; `allowedRate` only when the header holds a positive integer
 * @throws {@link PosthornError} `PublishRejected` (not retryable) when permission is refused,
 *   `MalformedInput` (attribute `webhook-allowed-rate`) when it is granted with a
 *   `WebHook-Allowed-Rate` that is neither `*` nor a positive integer
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
  return {
    allowedOrigin,
    allowedRate: readRate(headers.get(WEBHOOK_HEADERS.allowedRate) ?? undefined, "the receiver's"),
  };
}

interface RateWaiter {
  resolve(): void;
  /** Rejects the wait, its abort listener removed. */
  reject(err: PosthornError): void;
}

/**
 * Paces requests to a granted rate (http-webhook.md 4.2.2, requests per minute), as a token
 * bucket of `burst` tokens refilled one per `60000 / rate` ms (kept as a theoretical arrival
 * time, so no timer runs while idle). Waiters are served first come, first served; an aborted
 * waiter leaves the queue without taking a token, so nothing is sent for it and nobody behind it
 * waits longer. A rate of `undefined` is no limit.
 */
export class RateLimiter {
  #intervalMs = 0;
  #burst: number;
  /** When the bucket would be full again: each request pushes it one interval on. */
  #tat = 0;
  readonly #queue: RateWaiter[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Set by {@link RateLimiter.close}: the error of every wait from then on. */
  #closed: (() => PosthornError) | undefined;

  /** @param burst - requests allowed back to back after an idle spell (at least 1) */
  constructor(burst = 1) {
    this.#burst = Math.max(1, Math.floor(burst));
  }

  /** Sets the rate in requests per minute; `undefined` lifts the limit. Waiters are re-timed. */
  setRate(perMinute: number | undefined): void {
    this.#intervalMs = perMinute === undefined ? 0 : 60_000 / perMinute;
    this.#pump();
  }

  /**
   * Waits for a token.
   *
   * @throws {@link PosthornError} `Aborted` when `signal` fires first (no token is taken)
   */
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(rateAborted());
    if (this.#queue.length === 0 && this.#take()) return Promise.resolve();
    if (this.#closed !== undefined) return Promise.reject(this.#closed());
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.#queue.indexOf(waiter);
        if (at !== -1) this.#queue.splice(at, 1);
        reject(rateAborted());
        this.#pump();
      };
      const waiter: RateWaiter = {
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        reject: (err) => {
          signal?.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(waiter);
      this.#pump();
    });
  }

  /**
   * Ends every wait, now and later, with `error()`: a request that would have to wait for its
   * token is not sent. One for which a token is there at once still goes.
   */
  close(error: () => PosthornError): void {
    this.#closed = error;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    for (const waiter of this.#queue.splice(0)) waiter.reject(error());
  }

  /** Takes a token if one is there now. */
  #take(): boolean {
    if (this.#intervalMs === 0) return true;
    const now = performance.now();
    const tat = Math.max(this.#tat, now);
    // GCRA: conforming when the bucket, after this request, would not overflow.
    if (tat + this.#intervalMs - this.#burst * this.#intervalMs > now + 0.5) return false;
    this.#tat = tat + this.#intervalMs;
    return true;
  }

  #pump(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    while (this.#queue.length > 0 && this.#take()) this.#queue.shift()?.resolve();
    if (this.#queue.length === 0) return;
    const now = performance.now();
    const next = Math.max(this.#tat, now) + this.#intervalMs - this.#burst * this.#intervalMs;
    this.#timer = setTimeout(() => this.#pump(), Math.max(1, Math.ceil(next - now)));
  }
}

function rateAborted(): PosthornError {
  return new PosthornError("Aborted", "the publish was aborted while waiting for the webhook rate");
}

/**
 * How much sooner than a full minute a delivery leaves an origin's window: a sender paced to the
 * rate (`60000 / rate` ms apart) whose requests arrive a little unevenly is not throttled for it.
 */
const RATE_SLACK_MS = 1000;

/** The deliveries of one origin within the window, oldest first, from `head` on. */
interface OriginWindow {
  times: number[];
  head: number;
}

/**
 * Counts a receiver's deliveries per origin against a rate in requests per minute, over a sliding
 * window of one minute (less {@link RATE_SLACK_MS}): a delivery is within the rate when fewer than
 * `rate` deliveries of its origin were counted in the window. Only deliveries within the rate are
 * counted. Origins with nothing in the window are forgotten, so many origins cost memory for a
 * minute at most.
 */
export class OriginRates {
  readonly #rate: number;
  readonly #windowMs = 60_000 - RATE_SLACK_MS;
  readonly #origins = new Map<string, OriginWindow>();
  #sweepAt = 0;

  /** @param perMinute - deliveries allowed per origin and minute (a whole number, 1 or more) */
  constructor(perMinute: number) {
    this.#rate = perMinute;
  }

  /**
   * Counts a delivery from `origin` now, if it is within the rate.
   *
   * @param origin - the sender's origin, as the receiver keys it
   * @param now - the current time on the `performance.now()` clock
   * @returns 0 when the delivery is within the rate (and counted), else the milliseconds until it
   *   would be
   */
  take(origin: string, now: number = performance.now()): number {
    const since = now - this.#windowMs;
    if (now >= this.#sweepAt) this.#sweep(since, now);
    let window = this.#origins.get(origin);
    if (window === undefined) {
      window = { times: [], head: 0 };
      this.#origins.set(origin, window);
    }
    const times = window.times;
    while (window.head < times.length && (times[window.head] as number) <= since) window.head++;
    if (window.head > 64 && window.head * 2 > times.length) {
      times.splice(0, window.head);
      window.head = 0;
    }
    if (times.length - window.head >= this.#rate) {
      return Math.max(1, (times[window.head] as number) - since);
    }
    times.push(now);
    return 0;
  }

  /** Forgets the origins with nothing left in the window. */
  #sweep(since: number, now: number): void {
    this.#sweepAt = now + this.#windowMs;
    for (const [origin, window] of this.#origins) {
      const newest = window.times[window.times.length - 1];
      if (newest === undefined || newest <= since) this.#origins.delete(origin);
    }
  }
}
