import {
  type CloudEventLike,
  type ContentMode,
  checkCountOption,
  checkTimeOption,
  DEFAULT_CLOSE_TIMEOUT_MS,
  type EventFormat,
  isPosthornError,
  limitTimer,
  PosthornError,
  type Publisher,
  type PublishOptions,
  SlotSet,
  type Slotted,
  settleWithin,
} from "@posthorn/core";
import { DEFAULT_MAX_BATCH_EVENTS } from "./from-message.js";
import {
  anySignal,
  checkHttpUrl,
  fetchSender,
  PLATFORM_SENDER,
  type RequestSender,
  type SenderAnswer,
  type WithPlatformSender,
} from "./sender.js";
import {
  checkMode,
  type HttpMessage,
  type ToHttpMessageOptions,
  toHttpMessage,
} from "./to-message.js";
import {
  checkRateOption,
  httpUrl,
  RateLimiter,
  rateText,
  readWebhookGrant,
  WEBHOOK_HEADERS,
  type WebhookApproval,
  type WebhookPermission,
  type WebhookSenderOptions,
} from "./webhook.js";

/** Retry policy of {@link httpPublisher}. */
export interface RetryOptions {
  /** Attempts in all, the first included. Default 3; 1 turns retries off. */
  maxAttempts?: number;
  /** First backoff delay; doubles per attempt, with jitter. Default 100 ms. */
  baseDelayMs?: number;
  /**
   * Longest wait between attempts. Default 10 s. A `Retry-After` longer than this is not waited
   * out: the publish fails with a retryable `PublishRejected` instead.
   */
  maxDelayMs?: number;
  /**
   * How long one attempt (one request and its answer) may take before it is aborted and, if
   * attempts remain, retried. Default 30 s. With `timeoutMs` set, an attempt never outlives the
   * call: it is cut off when the call's time runs out.
   */
  attemptTimeoutMs?: number;
}

/** Options of {@link httpPublisher}. */
export interface HttpPublisherOptions {
  /** Where events are sent. */
  url: string | URL;
  /** Content mode. Default `binary`. */
  mode?: ContentMode;
  /** Event format for structured and batch mode. */
  format?: EventFormat;
  /** HTTP method. Default `POST`. */
  method?: "POST" | "PUT";
  /**
   * Send every request with this `fetch`. Default: in Node, `node:http`/`node:https` with a
   * keep-alive agent (about a third of the CPU per request of Node's `fetch`); elsewhere the
   * global `fetch`. Pass `globalThis.fetch` in Node to go through undici anyway (a dispatcher set
   * with `setGlobalDispatcher`, say, or a test that stubs `fetch`).
   */
  fetch?: typeof fetch;
  /**
   * Node only, without `fetch`: the `node:http` or `node:https` `Agent` to send with (TLS
   * options such as a private CA, socket limits, a proxy agent). Default: a keep-alive agent of
   * the publisher's own, whose idle connections close after 4 s and whose sockets `close()`
   * destroys; an agent given here is left open. One for the other protocol than the `url`'s,
   * or an object that is no `Agent`, is refused with `NotSupported` when the publisher is made.
   */
  agent?: HttpAgentLike;
  /**
   * The longest a whole `publish()` call may take: every attempt, the backoff between them, the
   * wait for the webhook handshake, for the granted rate and for an `authorization` callback. When it passes, the call rejects
   * with `Timeout` (the receiver may still have got the event). No default: without it a call
   * ends after at most `retry.maxAttempts` attempts of `retry.attemptTimeoutMs` each, plus the
   * backoff. Per call: {@link PublishOptions.timeoutMs}.
   */
  timeoutMs?: number;
  /**
   * How long `close()` lets publishes in flight start requests: past it, a publish still waiting
   * to send (for its turn at the webhook rate, a `Retry-After` or a backoff) fails with `Closed`,
   * nothing more sent, and `close()` returns once the requests already sent are answered (each
   * bounded by `retry.attemptTimeoutMs`). Default 5000 ms, as the other bindings' publishers;
   * `Infinity` sends them all however long the rate makes that take; 0 starts no request after
   * `close()`.
   */
  closeTimeoutMs?: number;
  /**
   * In batch mode, the most events one request carries: a longer array is sent as several
   * requests of at most this many, in order, each encoded before the first is sent (a request
   * that fails stops the call; the batches before it were delivered). Default
   * {@link DEFAULT_MAX_BATCH_EVENTS} (1,000), what `httpReceiver` takes by default (it answers a
   * larger batch 413); a whole number of 1 or more, or `Infinity` for one request whatever the
   * length.
   */
  maxBatchEvents?: number;
  /** Retry policy, or `false` for a single attempt (still bounded by `attemptTimeoutMs`). */
  retry?: RetryOptions | false;
  /**
   * Extra headers on every request. `content-type` and the `ce-*` headers the event maps to are
   * written by the mapping, which wins; `content-length` and `transfer-encoding` (the body's
   * framing, the sender's own) are refused with `InvalidEvent`.
   */
  headers?: Record<string, string>;
  /**
   * The `Authorization` header (http-webhook.md 3.3), e.g. `Bearer <token>`, or a function giving
   * it per request (a token that refreshes). A function that throws or rejects fails the publish,
   * nothing sent, with a retryable `ConnectionFailed` whose `cause` is its error (a
   * `PosthornError` it throws passes as it is); one that gives no string, with `InvalidEvent`;
   * one that has not answered within `retry.attemptTimeoutMs` (`webhook.timeoutMs` for the
   * handshake's), or the call's `timeoutMs` if that ends sooner, with a retryable `Timeout`.
   */
  authorization?: string | (() => string | Promise<string>);
  /**
   * Perform the webhook validation handshake before the first delivery, then keep to the rate it
   * grants (see {@link WebhookSenderOptions}).
   */
  webhook?: WebhookSenderOptions;
}

/**
 * A `node:http` or `node:https` `Agent`, typed by what the publisher needs of it, so that the
 * package's types do not need Node's.
 */
export interface HttpAgentLike {
  /** Closes the agent's sockets. */
  destroy(): void;
}

/** Per-call options of {@link HttpPublisher.publish}. */
export interface HttpPublishOptions extends PublishOptions {
  /**
   * Extra headers for this call, over the publisher's `headers`. As there, `content-type` and the
   * `ce-*` headers the event maps to are the event's own (the mapping's win), and
   * `content-length` or `transfer-encoding` rejects the call with `InvalidEvent`.
   */
  headers?: Record<string, string>;
}

/**
 * Whether an answer with `status` is worth another attempt. http-webhook.md 2.2: 429 asks to slow
 * down and 503 is a temporary failure; a 5xx is the server's failure (a handler that crashed, a
 * proxy whose receiver is briefly away), not the event's, and the next attempt may succeed. The
 * exceptions are 501 and 505, which say the server cannot take this kind of request at all. 408
 * (RFC 9110 15.5.9) says the request took too long to arrive and may be repeated: a receiver
 * answers it to a body that trickled in past its `requestTimeoutMs`. Every other 4xx is the
 * event's or the request's fault, and final.
 */
function retryableStatus(status: number): boolean {
  return status === 429 || status === 408 || (status >= 500 && status !== 501 && status !== 505);
}

/**
 * The `Authorization` value from the option's callback, with what goes wrong typed: a failure
 * (a token service down) is a retryable `ConnectionFailed` with the error as its `cause` (a
 * `PosthornError` passes as it is), and a value that is not a string is `InvalidEvent`, where
 * `fetch` would have sent `Authorization: undefined`.
 */
function callAuthorization(
  auth: () => string | Promise<string>,
  timeoutMs: number,
): Promise<string> {
  const value = Promise.resolve()
    .then(auth)
    .then(
      (value: unknown) => {
        if (typeof value === "string") return value;
        throw new PosthornError(
          "InvalidEvent",
          `the authorization callback gave ${value === null ? "null" : typeof value}, not a string`,
          { attribute: "authorization" },
        );
      },
      (err: unknown) => {
        if (isPosthornError(err)) throw err;
        throw new PosthornError(
          "ConnectionFailed",
          `the authorization callback failed: ${(err as Error)?.message ?? String(err)}`,
          { cause: err, retryable: true },
        );
      },
    );
  // A callback that never answers (a token service that hangs) is bounded like an attempt: it
  // kept the publish, and close(), waiting for ever when the call had no timeoutMs.
  return settleWithin(value, {
    timeoutMs,
    timedOut: () =>
      new PosthornError(
        "Timeout",
        `the authorization callback did not answer within ${timeoutMs} ms; nothing was sent`,
        { attribute: "authorization", retryable: true },
      ),
  });
}

/**
 * Refuses, for the fetch sender, what the node:http one refuses too: an absolute URL that is not
 * http(s) (a `data:` URL "answers" 200 to any POST) or that holds credentials. A relative URL is
 * left to `fetch`, which resolves it against the page in a browser.
 */
function checkFetchUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return;
  }
  checkHttpUrl(parsed, url);
}

function checkHeaders(headers: Record<string, string>): void {
  for (const name of Object.keys(headers)) {
    const value = headers[name] as string;
    const lower = name.toLowerCase();
    if (lower === "content-length" || lower === "transfer-encoding") {
      // The sender frames the body. node:http sent a wrong Content-Length as given, and the
      // bytes past it went down the kept-alive connection as the start of another request.
      throw new PosthornError(
        "InvalidEvent",
        `header ${JSON.stringify(name)} frames the body, which the publisher does itself; leave it out`,
        { attribute: name },
      );
    }
    if (/[\r\n\0]/.test(name) || /[\r\n\0]/.test(value)) {
      throw new PosthornError(
        "InvalidEvent",
        `header ${JSON.stringify(name)} holds CR, LF or NUL`,
        {
          attribute: name,
        },
      );
    }
  }
}

/**
 * Reads `Retry-After` (RFC 9110 10.2.3): delay-seconds or an HTTP-date.
 *
 * @param value - the header's value, or `null` when the response has none
 * @param now - the current time in epoch milliseconds, which an HTTP-date is measured from
 *   (default `Date.now()`)
 * @returns milliseconds to wait (0 for a date in the past), or `undefined` when absent or
 *   unreadable
 */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // Only the three HTTP-date forms (RFC 9110 5.6.7): Date.parse alone reads "1.5" or "-1" as a
  // date in 2001 (and so as "retry now"), where such a header is malformed and is ignored.
  let at: number;
  if (IMF_FIXDATE.test(text) || RFC850_DATE.test(text)) at = Date.parse(text);
  // asctime has no zone; it is GMT, but Date.parse would take it as local time.
  else if (ASCTIME_DATE.test(text)) at = Date.parse(`${text} GMT`);
  else return undefined;
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

const MONTH = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
const CLOCK = "\\d{2}:\\d{2}:\\d{2}";
/** `Sun, 06 Nov 1994 08:49:37 GMT` */
const IMF_FIXDATE = new RegExp(`^[A-Z][a-z]{2}, \\d{2} ${MONTH} \\d{4} ${CLOCK} GMT$`);
/** `Sunday, 06-Nov-94 08:49:37 GMT` (obsolete, still to be read) */
const RFC850_DATE = new RegExp(`^[A-Z][a-z]+, \\d{2}-${MONTH}-\\d{2} ${CLOCK} GMT$`);
/** `Sun Nov  6 08:49:37 1994` (obsolete, still to be read) */
const ASCTIME_DATE = new RegExp(`^[A-Z][a-z]{2} ${MONTH} [ \\d]\\d ${CLOCK} \\d{4}$`);

/** What ends a wait of {@link sleep} besides the caller's signal, and the error it ends with. */
interface Closing {
  readonly signal: AbortSignal;
  error(): PosthornError;
}

/**
 * Waits `ms`. `signal` (the caller's) ends the wait with `Aborted`; `closing` (the publisher's,
 * once its `closeTimeoutMs` passed) with its error.
 */
function sleep(ms: number, signal: AbortSignal | undefined, closing?: Closing): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(aborted());
      return;
    }
    if (closing?.signal.aborted) {
      reject(closing.error());
      return;
    }
    const stop = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      closing?.signal.removeEventListener("abort", onClosing);
    };
    const onAbort = (): void => {
      stop();
      reject(aborted());
    };
    const onClosing = (): void => {
      stop();
      if (closing) reject(closing.error());
    };
    const timer = limitTimer(() => {
      stop();
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
    closing?.signal.addEventListener("abort", onClosing, { once: true });
  });
}

/** `failure` made final, because a `Retry-After` asks for more time than the publish may wait. */
function retryAfterRefused(failure: PosthornError, why: string): PosthornError {
  return new PosthornError(failure.code, `${failure.message} (${why})`, {
    protocolCode: failure.protocolCode ?? "",
    retryable: true,
    cause: failure,
  });
}

function aborted(): PosthornError {
  return new PosthornError("Aborted", "the publish was aborted");
}

/**
 * The time budget of one `publish()` call. `deadline` is on the `performance.now()` clock,
 * `Infinity` when the call has no `timeoutMs`.
 */
interface CallBudget {
  readonly deadline: number;
  readonly timeoutMs: number | undefined;
}

const UNBOUNDED: CallBudget = { deadline: Number.POSITIVE_INFINITY, timeoutMs: undefined };

function budgetOf(timeoutMs: number | undefined): CallBudget {
  if (timeoutMs === undefined || !Number.isFinite(timeoutMs)) return UNBOUNDED;
  return { deadline: performance.now() + timeoutMs, timeoutMs };
}

/**
 * The call's `timeoutMs` passed. `failure` is the last attempt that failed, if one did; `cause`
 * defaults to it.
 */
function callTimeout(
  what: string,
  budget: CallBudget,
  failure?: PosthornError,
  cause: unknown = failure,
): PosthornError {
  const last = failure ? ` (last failure: ${failure.message})` : "";
  return new PosthornError(
    "Timeout",
    `${what} did not complete within timeoutMs ${budget.timeoutMs} ms${last}`,
    cause === undefined ? { retryable: true } : { cause, retryable: true },
  );
}

/**
 * Settles like `promise`, unless `signal` fires (`Aborted`) or the call's deadline passes
 * (`Timeout`) first (core's `settleWithin`). A timer runs only when the call has a deadline.
 */
function bounded<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  budget: CallBudget,
  what: string,
): Promise<T> {
  if (signal === undefined && budget === UNBOUNDED) return promise;
  const left = budget.deadline - performance.now();
  if (!signal?.aborted && left <= 0) {
    promise.catch(() => undefined); // settles later, with nobody waiting for it
    return Promise.reject(callTimeout(what, budget));
  }
  return settleWithin(promise, {
    timeoutMs: left,
    signal,
    timedOut: () => callTimeout(what, budget),
    aborted,
  });
}

/**
 * The error of a publish that `close()`'s `closeTimeoutMs` stopped before a request: the one
 * `closing` was aborted with, the attempt's earlier failure (a 503 it would have retried) kept as
 * the cause.
 */
function closedUnsent(closing: AbortController, failure: PosthornError | undefined): PosthornError {
  const { message } = closing.signal.reason as PosthornError;
  return new PosthornError("Closed", message, failure === undefined ? {} : { cause: failure });
}

/** A publish not yet settled, in the publisher's {@link SlotSet}: what close() waits for. */
interface Running extends Slotted {
  readonly run: Promise<void>;
}

interface PendingApproval {
  resolve(permission: WebhookPermission): void;
  reject(err: PosthornError): void;
}

/**
 * Publishes events over HTTP: `node:http` in Node, `fetch` elsewhere or when given (see
 * {@link httpPublisher}).
 */
export class HttpPublisher implements Publisher<HttpPublishOptions> {
  readonly #url: string;
  readonly #options: HttpPublisherOptions;
  readonly #sender: RequestSender;
  readonly #staticHeaders: Record<string, string>;
  readonly #staticHeaderNames: readonly string[];
  // One add and one delete per publish: a SlotSet rather than a Set (see core's SlotSet).
  readonly #inFlight = new SlotSet<Running>();
  readonly #limiter: RateLimiter | undefined;
  readonly #callbackUrl: string | undefined;
  #grant: Promise<WebhookPermission> | undefined;
  #approval: PendingApproval | undefined;
  #permission: WebhookPermission | undefined;
  #closed = false;
  /**
   * When, on the `performance.now()` clock, the `Retry-After` of the receiver's last 429 ends: no
   * request goes out before it (http-webhook.md 2.2). 0 when none was asked.
   */
  #holdUntil = 0;
  /** Ends a handshake still retrying once `close()` has waited for the publishes in flight. */
  readonly #closedSignal = new AbortController();
  /**
   * Aborted, with a `Closed` error as its reason, when `close()`'s `closeTimeoutMs` has passed:
   * from then on no request starts, and the waits before one end.
   */
  readonly #closeExpired = new AbortController();

  /** @param options - destination, mode, format, timeouts, retries, headers, webhook, agent */
  constructor(options: HttpPublisherOptions) {
    checkTimeOption("timeoutMs", options.timeoutMs);
    checkTimeOption("closeTimeoutMs", options.closeTimeoutMs);
    checkCountOption("maxBatchEvents", options.maxBatchEvents, 1);
    if (options.mode !== undefined) checkMode(options.mode);
    const method = options.method;
    if (method !== undefined && method !== "POST" && method !== "PUT") {
      throw new PosthornError(
        "NotSupported",
        `method must be "POST" or "PUT", got ${JSON.stringify(String(method))}: a receiver answers other methods 405`,
        { attribute: "method" },
      );
    }
    const retry = options.retry === false ? undefined : options.retry;
    // NaN attempts were never used up: a failing receiver was retried for ever.
    checkCountOption("retry.maxAttempts", retry?.maxAttempts);
    checkTimeOption("retry.baseDelayMs", retry?.baseDelayMs);
    checkTimeOption("retry.maxDelayMs", retry?.maxDelayMs);
    checkTimeOption("retry.attemptTimeoutMs", retry?.attemptTimeoutMs);
    const webhook = options.webhook;
    const origin: unknown = webhook?.origin;
    if (webhook !== undefined && (typeof origin !== "string" || origin.trim() === "")) {
      // Sent as it was: "undefined" over fetch, or an empty WebHook-Request-Origin.
      throw new PosthornError(
        "NotSupported",
        `webhook.origin must be the sender's origin, a non-empty string such as "events.example.com", got ${typeof origin === "string" ? JSON.stringify(origin) : String(origin)}`,
        { attribute: "webhook.origin" },
      );
    }
    checkCountOption("webhook.requestRate", webhook?.requestRate, 1, false);
    checkTimeOption("webhook.timeoutMs", webhook?.timeoutMs);
    checkTimeOption("webhook.approvalTimeoutMs", webhook?.approvalTimeoutMs);
    checkCountOption("webhook.burst", webhook?.burst, 1, false);
    this.#url = String(options.url);
    this.#options = options;
    // The package's Node entry point passes its node:http sender this way; elsewhere there is
    // none, and the global fetch is used.
    const platformSender = (options as WithPlatformSender)[PLATFORM_SENDER];
    if (options.fetch === undefined && platformSender !== undefined) {
      this.#sender = platformSender(this.#url, options);
    } else {
      const global = globalThis as { fetch?: typeof fetch };
      const f = options.fetch ?? global.fetch;
      if (f === undefined)
        throw new PosthornError("NotSupported", "no fetch is available; pass options.fetch");
      checkFetchUrl(this.#url);
      // Browsers refuse a fetch called on another object ("Illegal invocation"): call it unbound.
      this.#sender = fetchSender(this.#url, (input, init) => f(input, init));
    }
    const headers: Record<string, string> = {};
    for (const name of Object.keys(options.headers ?? {})) {
      headers[name.toLowerCase()] = (options.headers as Record<string, string>)[name] as string;
    }
    // The sender's origin travels with every delivery, as in the handshake (http-webhook.md 4.1).
    if (options.webhook) headers[WEBHOOK_HEADERS.requestOrigin] = options.webhook.origin;
    if (typeof options.authorization === "string") headers.authorization = options.authorization;
    checkHeaders(headers);
    this.#staticHeaders = headers;
    this.#staticHeaderNames = Object.keys(headers);
    if (options.webhook) this.#limiter = new RateLimiter(options.webhook.burst);
    const callback = options.webhook?.callbackUrl;
    if (callback !== undefined) {
      this.#callbackUrl = httpUrl(String(callback));
      if (this.#callbackUrl === undefined) {
        throw new PosthornError(
          "MalformedInput",
          `webhook.callbackUrl ${JSON.stringify(String(callback))} is not an absolute http(s) URL`,
          { attribute: WEBHOOK_HEADERS.requestCallback },
        );
      }
    }
  }

  /**
   * The permission the webhook handshake (or {@link approveWebhook}) obtained, once there is one.
   * Deliveries keep to its `allowedRate`.
   */
  get permission(): WebhookPermission | undefined {
    return this.#permission;
  }

  #grantPermission(permission: WebhookPermission): WebhookPermission {
    this.#permission = permission;
    this.#limiter?.setRate(permission.allowedRate);
    return permission;
  }

  /**
   * Records a grant that arrived asynchronously (http-webhook.md 4.1.3): call it from the handler
   * serving `webhook.callbackUrl` once the request is known to be genuine (its secret matches).
   * Publishes waiting for the handshake then go ahead, at the rate granted. Calling it again
   * replaces the rate.
   *
   * @param approval - the rate granted, e.g. `readWebhookApproval(request.headers)`; none is no limit
   * @returns the permission now held
   * @throws {@link PosthornError} `NotSupported` when the publisher has no `webhook` option, or
   *   for an `allowedRate` that is neither `"*"` nor a whole number of 1 or more (nothing is
   *   approved)
   *
   * @example
   * ```ts
   * // in the sender's server, for GET /webhook-confirm?key=<secret>
   * if (key === secret) publisher.approveWebhook(readWebhookApproval(req.headers));
   * ```
   */
  approveWebhook(approval: WebhookApproval = {}): WebhookPermission {
    const webhook = this.#options.webhook;
    if (webhook === undefined) {
      throw new PosthornError(
        "NotSupported",
        "approveWebhook needs the publisher's webhook option",
      );
    }
    // 0, a fraction or NaN was taken for no limit, unsaid.
    const rate = checkRateOption("allowedRate", approval.allowedRate);
    const permission = this.#grantPermission({
      allowedOrigin: webhook.origin,
      allowedRate: rate === "*" ? undefined : rate,
    });
    this.#approval?.resolve(permission);
    return permission;
  }

  /**
   * Sends one event, or several. In binary and structured mode each event is its own request,
   * sent in order, once every event is encoded (an event that cannot be encoded fails the call
   * with no request made; a request that fails stops the call, and the events before it were
   * delivered); in batch mode the array is one request, or several of `maxBatchEvents` (default
   * 1,000) each when it is longer. Resolves on a 2xx answer; a redirect is
   * not followed (a 3xx is `PublishRejected` with its status, 0 in a browser).
   *
   * `timeoutMs` (per call, else the publisher's) bounds the whole call, every request of an array
   * included; `retry.attemptTimeoutMs` bounds each attempt.
   *
   * @throws {@link PosthornError} `PublishRejected` (`protocolCode` is the HTTP status; retryable
   *   for 408, 429 and 5xx but 501 and 505 once retries are spent, or when a `Retry-After` would end past
   *   `maxDelayMs` or the call's `timeoutMs`), `Timeout` (an attempt's or the call's),
   *   `ConnectionFailed`, `Aborted`, `Closed`, `InvalidEvent` (an event that cannot be encoded,
   *   or a header that cannot be sent: nothing is sent), `MalformedInput` (a relative `url` that
   *   `fetch` cannot resolve)
   *
   * @param events - one event, or an array sent in order (in batch mode one request per
   *   `maxBatchEvents` events)
   * @param options - extra headers, `timeoutMs` for the whole call, and an `abortSignal`
   */
  publish(
    events: CloudEventLike | readonly CloudEventLike[],
    options: HttpPublishOptions = {},
  ): Promise<void> {
    if (this.#closed) return Promise.reject(new PosthornError("Closed", "the publisher is closed"));
    if (options.timeoutMs !== undefined) {
      try {
        checkTimeOption("timeoutMs", options.timeoutMs);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    const run = this.#publish(events, options);
    const running: Running = { slot: -1, run };
    this.#inFlight.add(running);
    const forget = (): void => {
      this.#inFlight.delete(running);
    };
    run.then(forget, forget);
    return run;
  }

  async #publish(
    events: CloudEventLike | readonly CloudEventLike[],
    options: HttpPublishOptions,
  ): Promise<void> {
    const budget = budgetOf(options.timeoutMs ?? this.#options.timeoutMs);
    const mode = options.mode ?? this.#options.mode ?? "binary";
    const format = this.#options.format;
    const mapping: ToHttpMessageOptions = format === undefined ? { mode } : { mode, format };
    if (options.headers) checkHeaders(options.headers);
    if (Array.isArray(events) && mode !== "batch") {
      // Every event is encoded before the first request: one that cannot be encoded fails the
      // call with nothing sent.
      const list = events as readonly CloudEventLike[];
      const messages: HttpMessage[] = new Array(list.length);
      for (let i = 0; i < list.length; i++) {
        messages[i] = toHttpMessage(list[i] as CloudEventLike, mapping);
      }
      for (const message of messages) await this.#send(message, options, budget);
      return;
    }
    const most = this.#options.maxBatchEvents ?? DEFAULT_MAX_BATCH_EVENTS;
    if (Array.isArray(events) && events.length > most) {
      // A receiver answers a batch past its maxBatchEvents 413: sent as batches of `most`, each
      // encoded before the first request.
      const list = events as readonly CloudEventLike[];
      const messages: HttpMessage[] = [];
      for (let at = 0; at < list.length; at += most) {
        messages.push(toHttpMessage(list.slice(at, at + most), mapping));
      }
      for (const message of messages) await this.#send(message, options, budget);
      return;
    }
    await this.#send(toHttpMessage(events, mapping), options, budget);
  }

  async #send(
    message: HttpMessage,
    options: HttpPublishOptions,
    budget: CallBudget,
  ): Promise<void> {
    if (this.#options.webhook && this.#permission === undefined) {
      await bounded(this.#handshake(), options.abortSignal, budget, "the webhook handshake");
    }
    // The message's headers are made for this request alone, so they are sent as they are when
    // nothing is added; otherwise the publisher's go first, then the call's, then the message's:
    // `content-type` and `ce-*` are the event's, whoever else sets them.
    let headers = message.headers as Record<string, string>;
    const auth = this.#options.authorization;
    if (this.#staticHeaderNames.length > 0 || options.headers || typeof auth === "function") {
      headers = {};
      for (const name of this.#staticHeaderNames) {
        headers[name] = this.#staticHeaders[name] as string;
      }
      if (options.headers) {
        for (const name of Object.keys(options.headers)) {
          headers[name.toLowerCase()] = options.headers[name] as string;
        }
      }
      for (const name of Object.keys(message.headers)) {
        headers[name] = message.headers[name] as string;
      }
    }
    if (typeof auth === "function") {
      // A token callback that hangs (a token service down) is bounded like the rest of the call.
      const retry = this.#options.retry;
      headers.authorization = await bounded(
        callAuthorization(auth, (retry === false ? undefined : retry?.attemptTimeoutMs) ?? 30_000),
        options.abortSignal,
        budget,
        "the authorization callback",
      );
    }
    await this.#attempts(
      { method: this.#options.method ?? "POST", headers, body: message.body },
      options.abortSignal,
      budget,
    );
  }

  #handshake(): Promise<WebhookPermission> {
    this.#grant ??= this.#requestGrant().then(
      (permission) =>
        this.#permission === permission ? permission : this.#grantPermission(permission),
      (err: unknown) => {
        this.#grant = undefined; // ask again on the next publish
        throw err;
      },
    );
    return this.#grant;
  }

  async #requestGrant(): Promise<WebhookPermission> {
    const webhook = this.#options.webhook as WebhookSenderOptions;
    // http-webhook.md 4.1: the validation request.
    const headers: Record<string, string> = { [WEBHOOK_HEADERS.requestOrigin]: webhook.origin };
    if (webhook.requestRate !== undefined)
      headers[WEBHOOK_HEADERS.requestRate] = rateText(webhook.requestRate);
    // 4.1.3: the receiver may grant later by calling this URL. The approval can arrive before the
    // OPTIONS answer does, so the promise that waits for it exists before the request is sent.
    let approved: Promise<WebhookPermission> | undefined;
    if (this.#callbackUrl !== undefined) {
      headers[WEBHOOK_HEADERS.requestCallback] = this.#callbackUrl;
      approved = new Promise<WebhookPermission>((resolve, reject) => {
        this.#approval = { resolve, reject };
      });
      approved.catch(() => undefined);
    }
    try {
      const auth = this.#options.authorization;
      if (auth !== undefined)
        headers.authorization =
          typeof auth === "string"
            ? auth
            : await callAuthorization(auth, webhook.timeoutMs ?? 10_000);
      // Retried as a delivery is: a 408, 429 or 5xx answer, a failed connection or a timeout is no
      // refusal (it failed the publish as one, not retryable), and is asked again by the policy.
      let answer: SenderAnswer;
      try {
        answer = await this.#attempts(
          { method: "OPTIONS", headers, body: undefined },
          this.#closedSignal.signal,
          UNBOUNDED,
          { attemptMs: webhook.timeoutMs ?? 10_000 },
        );
      } catch (err) {
        // An approval by callback that came while the request was being retried still counts.
        if (this.#permission !== undefined) return this.#permission;
        throw err;
      }
      try {
        return readWebhookGrant(answer.status, answer.headers, webhook.origin);
      } catch (refusal) {
        // A grant whose rate cannot be read is the receiver's error, not a refusal to wait out.
        if (approved === undefined || isPosthornError(refusal, "MalformedInput")) throw refusal;
        // 4.2: a target granting by callback withholds the grant headers, and one that does not
        // know the handshake may still have the callback called by a person: wait either way.
        return await this.#awaitApproval(approved, webhook, refusal);
      }
    } finally {
      this.#approval = undefined;
    }
  }

  #awaitApproval(
    approved: Promise<WebhookPermission>,
    webhook: WebhookSenderOptions,
    refusal: unknown,
  ): Promise<WebhookPermission> {
    const ms = webhook.approvalTimeoutMs ?? 300_000;
    return new Promise<WebhookPermission>((resolve, reject) => {
      const timer = limitTimer(() => {
        reject(
          new PosthornError(
            "Timeout",
            `no webhook approval reached ${this.#callbackUrl} within ${ms} ms`,
            { cause: refusal, retryable: true },
          ),
        );
      }, ms);
      approved.then(
        (permission) => {
          clearTimeout(timer);
          resolve(permission);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  /**
   * Sends `init` until it is answered 2xx, or with a failure that is final or the last one the
   * retry policy allows. With `handshake`, the validation request: each attempt bounded by
   * `handshake.attemptMs`, not paced, and a final answer other than 2xx (a refusal, for the
   * caller to read) returned instead of thrown.
   */
  async #attempts(
    init: { method: string; headers: Record<string, string>; body: Uint8Array | undefined },
    user: AbortSignal | undefined,
    budget: CallBudget,
    handshake?: { attemptMs: number },
  ): Promise<SenderAnswer> {
    const retry = this.#options.retry === false ? { maxAttempts: 1 } : (this.#options.retry ?? {});
    const maxAttempts = Math.max(1, retry.maxAttempts ?? 3);
    const baseDelayMs = retry.baseDelayMs ?? 100;
    const maxDelayMs = retry.maxDelayMs ?? 10_000;
    const attemptMs = handshake?.attemptMs ?? retry.attemptTimeoutMs ?? 30_000;
    const what =
      handshake === undefined
        ? `${init.method} ${this.#url}`
        : `the webhook validation request (OPTIONS ${this.#url})`;
    let failure: PosthornError | undefined;
    for (let attempt = 1; ; attempt++) {
      // http-webhook.md 2.2: after a 429 with Retry-After the sender sends nothing to the target
      // until that time, whichever publish it came to.
      if (this.#holdUntil > performance.now()) {
        await this.#held(user, budget, maxDelayMs, failure);
      }
      // http-webhook.md 4.2.2: every request, retries included, counts against the granted rate.
      // The wait counts against the call's timeoutMs; the caller's abortSignal ends it too.
      if (this.#limiter && handshake === undefined) {
        try {
          await this.#paced(user, budget, what, failure);
        } catch (err) {
          // close()'s closeTimeoutMs ended the wait: the failure this attempt retries is the cause.
          if (this.#closeExpired.signal.aborted && (err as PosthornError).code === "Closed") {
            throw closedUnsent(this.#closeExpired, failure);
          }
          throw err;
        }
      }
      // After close()'s closeTimeoutMs nothing more is sent.
      if (this.#closeExpired.signal.aborted) throw closedUnsent(this.#closeExpired, failure);
      // The attempt's own timeout, shortened to the time left in the call.
      const left = budget.deadline - performance.now();
      if (left <= 0) throw callTimeout(what, budget, failure);
      const cutByCall = left <= attemptMs;
      const ms = cutByCall ? Math.ceil(left) : attemptMs;
      let waitMs: number | undefined;
      let answer: SenderAnswer | undefined;
      try {
        answer = await this.#sender.send({
          method: init.method,
          headers: init.headers,
          body: init.body,
          timeoutMs: ms,
          signal: user,
          what,
        });
      } catch (err) {
        const thrown = err as PosthornError;
        if (thrown.code === "Timeout" && cutByCall) {
          throw callTimeout(what, budget, failure, failure ?? thrown);
        }
        failure = thrown;
        if (!failure.retryable) throw failure;
      }
      if (answer !== undefined) {
        const status = answer.status;
        if (status >= 200 && status < 300) return answer;
        const retryable = retryableStatus(status);
        if (!retryable && handshake !== undefined) return answer;
        const text = answer.text;
        const who = handshake === undefined ? this.#url : what;
        failure = new PosthornError(
          "PublishRejected",
          `${who} answered ${status}${text ? `: ${text.slice(0, 200)}` : ""}`,
          { protocolCode: status, retryable },
        );
        if (!retryable) throw failure;
        // Retry-After is honoured on 429 and 503 (http-webhook.md 2.2; RFC 9110 10.2.3).
        if (status === 429 || status === 503) {
          waitMs = parseRetryAfter(answer.headers.get("retry-after"));
          // A 429 is about the sender's pace, so its Retry-After holds every request to the
          // target; a 503's may be about this event alone (a receiver's release({ delayMs })).
          if (status === 429 && waitMs !== undefined) {
            const until = performance.now() + waitMs;
            if (until > this.#holdUntil) this.#holdUntil = until;
          }
        }
      }
      // This attempt failed, with an answer or without: `failure` says how.
      const last = failure as PosthornError;
      if (attempt >= maxAttempts) throw last;
      if (waitMs !== undefined) {
        // The receiver said when to come back. If that is too far off, fail now with its answer
        // rather than sleep to a Timeout that is already certain.
        if (waitMs > maxDelayMs)
          throw retryAfterRefused(
            last,
            `Retry-After of ${waitMs} ms exceeds maxDelayMs ${maxDelayMs}`,
          );
        if (performance.now() + waitMs >= budget.deadline) {
          throw retryAfterRefused(
            last,
            `Retry-After of ${waitMs} ms ends past the call's timeoutMs ${budget.timeoutMs} ms`,
          );
        }
        await sleep(waitMs, user, this.#closing(last));
        continue;
      }
      const backoff = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
      const delay = backoff * (0.5 + Math.random() / 2);
      const rest = budget.deadline - performance.now();
      if (delay >= rest) {
        // The call's time runs out during the backoff: wait until it does, then Timeout.
        await sleep(Math.max(0, rest), user, this.#closing(last));
        throw callTimeout(what, budget, last);
      }
      await sleep(delay, user, this.#closing(last));
    }
  }

  /**
   * Waits until the receiver's `Retry-After` (see {@link HttpPublisher.#holdUntil}) has passed. A
   * wait longer than `maxDelayMs`, or one that would end past the call's deadline, is not waited
   * out: the publish fails at once, as the request that got the 429 does, with a retryable
   * `PublishRejected` 429.
   */
  async #held(
    user: AbortSignal | undefined,
    budget: CallBudget,
    maxDelayMs: number,
    failure: PosthornError | undefined,
  ): Promise<void> {
    // Another answer may push the time further on while this publish waits.
    for (let now = performance.now(); this.#holdUntil > now; now = performance.now()) {
      const ms = this.#holdUntil - now;
      const why =
        ms > maxDelayMs
          ? `exceeds maxDelayMs ${maxDelayMs}`
          : now + ms >= budget.deadline
            ? `ends past the call's timeoutMs ${budget.timeoutMs} ms`
            : undefined;
      if (why !== undefined) {
        throw new PosthornError(
          "PublishRejected",
          `${this.#url} answered 429 with a Retry-After that holds every request for ${Math.ceil(ms)} ms more, which ${why}`,
          failure === undefined
            ? { protocolCode: 429, retryable: true }
            : { protocolCode: 429, retryable: true, cause: failure },
        );
      }
      await sleep(ms, user, this.#closing(failure));
    }
  }

  /** How `close()`'s `closeTimeoutMs` ends a wait before a request; `failure`, its cause. */
  #closing(failure: PosthornError | undefined): Closing {
    const closing = this.#closeExpired;
    return { signal: closing.signal, error: () => closedUnsent(closing, failure) };
  }

  /** Waits for the webhook rate's next token, within the call's time. */
  async #paced(
    user: AbortSignal | undefined,
    budget: CallBudget,
    what: string,
    failure: PosthornError | undefined,
  ): Promise<void> {
    const limiter = this.#limiter as RateLimiter;
    // Without a granted rate the limiter never waits.
    if (budget === UNBOUNDED || this.#permission?.allowedRate === undefined) {
      return limiter.acquire(user);
    }
    const left = budget.deadline - performance.now();
    if (left <= 0) throw callTimeout(what, budget, failure);
    // Only a publisher paced to a granted rate gets here, so this second signal per request is
    // off the common path.
    const timeout = AbortSignal.timeout(Math.ceil(left));
    try {
      await limiter.acquire(user ? anySignal([user, timeout]) : timeout);
    } catch (err) {
      if (timeout.aborted && !user?.aborted) throw callTimeout(what, budget, failure);
      throw err;
    }
  }

  /**
   * Refuses new publishes and waits for those in flight. Those still waiting to send when
   * `closeTimeoutMs` (default 5 s) has passed (for the granted rate, a `Retry-After`, a backoff)
   * fail with `Closed`, nothing more sent; requests already sent are awaited. Publishes waiting
   * for an asynchronous webhook approval fail with `Closed` at once. Idempotent.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#approval?.reject(new PosthornError("Closed", "the publisher was closed before approval"));
    const closeMs = this.#options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    const expire = limitTimer(() => {
      const error = new PosthornError(
        "Closed",
        `the publisher was closed, and its closeTimeoutMs (${closeMs} ms) passed before this publish was sent`,
      );
      this.#closeExpired.abort(error);
      this.#limiter?.close(() => new PosthornError("Closed", error.message));
    }, closeMs);
    await Promise.allSettled(Array.from(this.#inFlight, (r) => r.run));
    clearTimeout(expire);
    // A handshake that every publish waiting for it gave up on (their timeoutMs) sends no more.
    this.#closedSignal.abort();
    this.#sender.close();
  }
}

/**
 * A publisher that POSTs events over HTTP: binary, structured or batch mode, a timeout for the
 * whole call (`timeoutMs`) and one per attempt (`retry.attemptTimeoutMs`), retries with
 * exponential backoff and jitter on 408, 429 and 5xx (but 501 and 505) and on connection failures and timeouts
 * (honouring `Retry-After` on 429 and 503), never on other 4xx; optional webhook validation
 * handshake (synchronous, or by callback) with pacing to the granted rate, and `Authorization`.
 * In Node (the package's `node` export condition) requests go through `node:http` /
 * `node:https` on a keep-alive agent (or `options.agent`); in browsers and other runtimes, and
 * wherever `options.fetch` is given, through `fetch`.
 *
 * @example
 * ```ts
 * const publisher = httpPublisher({ url: "http://localhost:8080/events", mode: "structured", format: json });
 * await publisher.publish(event);
 * ```
 *
 * @param options - destination, mode, format, timeouts, retries, headers, webhook
 * @throws {@link PosthornError} `NotSupported` when there is no global `fetch` and none is given
 *   (outside Node), or for a time limit (`timeoutMs`, `retry.*Ms`, `webhook.*Ms`) that is not a
 *   number of 0 or more, a `retry.maxAttempts` that is not a whole number of 1 or more (or
 *   `Infinity`), a `webhook.origin` that is not a non-empty string, a `webhook.requestRate` or
 *   `webhook.burst` that is not a whole number of 1 or
 *   more (a per-call `timeoutMs` is checked likewise, and the call rejects with nothing sent),
 *   or a `mode` that is none of `binary`, `structured` and `batch` (per call too), or a
 *   `method` other than `POST` and `PUT`;
 *   `InvalidEvent` when a configured header holds CR, LF or NUL, or is `content-length` or
 *   `transfer-encoding`,
 *   `MalformedInput` when `webhook.callbackUrl` is not an absolute http(s) URL, or when `url`
 *   is absolute but not http(s) or holds credentials (in Node, also when it is not absolute)
 */
export function httpPublisher(options: HttpPublisherOptions): HttpPublisher {
  return new HttpPublisher(options);
}
