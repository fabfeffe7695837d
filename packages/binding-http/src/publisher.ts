import {
  type CloudEventLike,
  type ContentMode,
  type EventFormat,
  isPosthornError,
  PosthornError,
  type Publisher,
  type PublishOptions,
} from "@posthorn/core";
import { toHttpMessage } from "./to-message.js";
import {
  readWebhookGrant,
  WEBHOOK_HEADERS,
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
  /** The fetch to use. Default the global `fetch` (undici in Node, with keep-alive). */
  fetch?: typeof fetch;
  /** Per-attempt timeout. Default 30 s. */
  timeoutMs?: number;
  /** Retry policy, or `false` for a single attempt. */
  retry?: RetryOptions | false;
  /** Extra headers on every request (not `content-type` or `ce-*`, which the mapping writes). */
  headers?: Record<string, string>;
  /**
   * The `Authorization` header (http-webhook.md 3.3), e.g. `Bearer <token>`, or a function giving
   * it per request (a token that refreshes).
   */
  authorization?: string | (() => string | Promise<string>);
  /** Perform the webhook validation handshake before the first delivery. */
  webhook?: WebhookSenderOptions;
}

/** Per-call options of {@link HttpPublisher.publish}. */
export interface HttpPublishOptions extends PublishOptions {
  /** Extra headers for this call. */
  headers?: Record<string, string>;
}

// http-webhook.md 2.2: 429 asks to slow down; 503 is a temporary failure. 502 and 504 come from
// proxies in front of a receiver that is briefly away. Every other 4xx and 5xx is final.
const RETRY_STATUS: ReadonlySet<number> = new Set([429, 502, 503, 504]);

function checkHeaders(headers: Record<string, string>): void {
  for (const name of Object.keys(headers)) {
    const value = headers[name] as string;
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
 * @returns milliseconds to wait, or `undefined` when absent or unreadable
 */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(aborted());
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(aborted());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function aborted(): PosthornError {
  return new PosthornError("Aborted", "the publish was aborted");
}

function anySignal(signals: AbortSignal[]): AbortSignal {
  const any = (AbortSignal as { any?: (s: AbortSignal[]) => AbortSignal }).any;
  if (any) return any(signals);
  const controller = new AbortController();
  for (const s of signals) {
    if (s.aborted) controller.abort(s.reason);
    else s.addEventListener("abort", () => controller.abort(s.reason), { once: true });
  }
  return controller.signal;
}

/**
 * Publishes events over HTTP with the standard `fetch` (see {@link httpPublisher}).
 */
export class HttpPublisher implements Publisher<HttpPublishOptions> {
  readonly #url: string;
  readonly #options: HttpPublisherOptions;
  readonly #fetch: typeof fetch;
  readonly #staticHeaders: Record<string, string>;
  readonly #inFlight = new Set<Promise<unknown>>();
  #grant: Promise<WebhookPermission> | undefined;
  #permission: WebhookPermission | undefined;
  #closed = false;

  /** @param options - destination, mode, format, timeouts, retries, headers, webhook */
  constructor(options: HttpPublisherOptions) {
    this.#url = String(options.url);
    this.#options = options;
    const global = globalThis as { fetch?: typeof fetch };
    // Browsers refuse a fetch called on another object ("Illegal invocation"): call it unbound.
    const f = options.fetch ?? global.fetch;
    if (f === undefined)
      throw new PosthornError("NotSupported", "no fetch is available; pass options.fetch");
    this.#fetch = (input, init) => f(input, init);
    const headers: Record<string, string> = {};
    for (const name of Object.keys(options.headers ?? {})) {
      headers[name.toLowerCase()] = (options.headers as Record<string, string>)[name] as string;
    }
    // The sender's origin travels with every delivery, as in the handshake (http-webhook.md 4.1).
    if (options.webhook) headers[WEBHOOK_HEADERS.requestOrigin] = options.webhook.origin;
    if (typeof options.authorization === "string") headers.authorization = options.authorization;
    checkHeaders(headers);
    this.#staticHeaders = headers;
  }

  /** The permission the webhook handshake obtained, once it has run. */
  get permission(): WebhookPermission | undefined {
    return this.#permission;
  }

  /**
   * Sends one event, or several. In binary and structured mode each event is its own request,
   * sent in order; in batch mode the array is one request. Resolves on a 2xx answer.
   *
   * @throws {@link PosthornError} `PublishRejected` (`protocolCode` is the HTTP status; retryable
   *   for 429/502/503/504 once retries are spent), `Timeout`, `ConnectionFailed`, `Aborted`,
   *   `Closed`, `InvalidEvent`
   */
  publish(
    events: CloudEventLike | readonly CloudEventLike[],
    options: HttpPublishOptions = {},
  ): Promise<void> {
    if (this.#closed) return Promise.reject(new PosthornError("Closed", "the publisher is closed"));
    const run = this.#publish(events, options);
    this.#inFlight.add(run);
    const forget = (): void => {
      this.#inFlight.delete(run);
    };
    run.then(forget, forget);
    return run;
  }

  async #publish(
    events: CloudEventLike | readonly CloudEventLike[],
    options: HttpPublishOptions,
  ): Promise<void> {
    const mode = options.mode ?? this.#options.mode ?? "binary";
    if (Array.isArray(events) && mode !== "batch") {
      for (const event of events as readonly CloudEventLike[])
        await this.#send(event, mode, options);
      return;
    }
    await this.#send(events, mode, options);
  }

  async #send(
    input: CloudEventLike | readonly CloudEventLike[],
    mode: ContentMode,
    options: HttpPublishOptions,
  ): Promise<void> {
    const format = this.#options.format;
    const message = toHttpMessage(input, format === undefined ? { mode } : { mode, format });
    if (this.#options.webhook && this.#permission === undefined) await this.#handshake();
    const headers: Record<string, string> = { ...this.#staticHeaders, ...message.headers };
    if (options.headers) {
      checkHeaders(options.headers);
      for (const name of Object.keys(options.headers)) {
        headers[name.toLowerCase()] = options.headers[name] as string;
      }
    }
    const auth = this.#options.authorization;
    if (typeof auth === "function") headers.authorization = await auth();
    await this.#attempts(
      { method: this.#options.method ?? "POST", headers, body: message.body },
      options,
    );
  }

  #handshake(): Promise<WebhookPermission> {
    this.#grant ??= this.#requestGrant().then(
      (permission) => {
        this.#permission = permission;
        return permission;
      },
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
      headers[WEBHOOK_HEADERS.requestRate] = String(webhook.requestRate);
    const auth = this.#options.authorization;
    if (auth !== undefined) headers.authorization = typeof auth === "string" ? auth : await auth();
    let response: Response;
    try {
      response = await this.#fetch(this.#url, {
        method: "OPTIONS",
        headers,
        signal: AbortSignal.timeout(webhook.timeoutMs ?? 10_000),
      });
    } catch (err) {
      throw this.#fetchError(err, undefined, "the webhook validation request");
    }
    await response.arrayBuffer().catch(() => undefined);
    return readWebhookGrant(response.status, response.headers, webhook.origin);
  }

  async #attempts(
    init: { method: string; headers: Record<string, string>; body: Uint8Array },
    options: HttpPublishOptions,
  ): Promise<void> {
    const retry = this.#options.retry === false ? { maxAttempts: 1 } : (this.#options.retry ?? {});
    const maxAttempts = Math.max(1, retry.maxAttempts ?? 3);
    const baseDelayMs = retry.baseDelayMs ?? 100;
    const maxDelayMs = retry.maxDelayMs ?? 10_000;
    const timeoutMs = options.timeoutMs ?? this.#options.timeoutMs ?? 30_000;
    const user = options.abortSignal;
    for (let attempt = 1; ; attempt++) {
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = user ? anySignal([user, timeout]) : timeout;
      let failure: PosthornError;
      let waitMs: number | undefined;
      try {
        const response = await this.#fetch(this.#url, {
          ...init,
          body: init.body as BodyInit,
          signal,
        });
        // Reading the (small) answer lets keep-alive reuse the connection.
        const text = await response.text().catch(() => "");
        if (response.status >= 200 && response.status < 300) return;
        const status = response.status;
        const retryable = RETRY_STATUS.has(status);
        failure = new PosthornError(
          "PublishRejected",
          `${this.#url} answered ${status}${text ? `: ${text.slice(0, 200)}` : ""}`,
          { protocolCode: status, retryable },
        );
        if (!retryable) throw failure;
        // Retry-After is honoured on 429 and 503 (http-webhook.md 2.2; RFC 9110 10.2.3).
        if (status === 429 || status === 503)
          waitMs = parseRetryAfter(response.headers.get("retry-after"));
      } catch (err) {
        // The only Posthorn errors thrown in the try block are final answers.
        if (isPosthornError(err)) throw err;
        failure = this.#fetchError(err, user, `${init.method} ${this.#url}`, timeoutMs);
        if (!failure.retryable) throw failure;
      }
      if (attempt >= maxAttempts) throw failure;
      const backoff = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
      const delay = waitMs ?? backoff * (0.5 + Math.random() / 2);
      if (delay > maxDelayMs) {
        throw new PosthornError(
          failure.code,
          `${failure.message} (Retry-After of ${delay} ms exceeds maxDelayMs ${maxDelayMs})`,
          { protocolCode: failure.protocolCode ?? "", retryable: true, cause: failure },
        );
      }
      await sleep(delay, user);
    }
  }

  #fetchError(
    err: unknown,
    user: AbortSignal | undefined,
    what: string,
    timeoutMs?: number,
  ): PosthornError {
    if (user?.aborted) return new PosthornError("Aborted", `${what} was aborted`, { cause: err });
    const name = (err as { name?: string })?.name;
    if (name === "TimeoutError" || name === "AbortError") {
      return new PosthornError(
        "Timeout",
        `${what} did not complete within ${timeoutMs ?? 10_000} ms`,
        {
          cause: err,
        },
      );
    }
    const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
    return new PosthornError(
      "ConnectionFailed",
      `${what} failed: ${cause?.message ?? (err as Error)?.message ?? String(err)}`,
      { cause: err, ...(cause?.code ? { protocolCode: cause.code } : {}) },
    );
  }

  /** Waits for publishes in flight, then refuses new ones. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#inFlight]);
  }
}

/**
 * A publisher that POSTs events over the standard `fetch`: binary, structured or batch mode,
 * per-attempt timeouts through `AbortSignal`, retries with exponential backoff and jitter on
 * 429/502/503/504 and on connection failures and timeouts (honouring `Retry-After` on 429 and
 * 503), never on other 4xx; optional webhook validation handshake and `Authorization`. Works in
 * Node (undici keeps connections alive by default) and in browsers.
 *
 * @example
 * ```ts
 * const publisher = httpPublisher({ url: "http://localhost:8080/events", mode: "structured", format: json });
 * await publisher.publish(event);
 * ```
 */
export function httpPublisher(options: HttpPublisherOptions): HttpPublisher {
  return new HttpPublisher(options);
}
