import {
  AsyncQueue,
  type CloudEvent,
  checkCountOption,
  checkTimeOption,
  closeOnReturn,
  createDelivery,
  type Delivery,
  Drain,
  type EventFormat,
  type ExtensionRegistry,
  isPosthornError,
  type JsonLimits,
  limitTimer,
  MAX_TIMER_MS,
  type Message,
  PosthornError,
  type PropertyValue,
  type SettlementCapabilities,
  SlotSet,
  type Slotted,
  type Subscriber,
  type UnsupportedSettlements,
} from "@posthorn/core";
import {
  DEFAULT_MAX_BATCH_EVENTS,
  DEFAULT_MAX_BODY_BYTES,
  fromHttpMessage,
  type HttpHeadersInput,
} from "./from-message.js";
import {
  answerWebhookValidation,
  checkRateOption,
  OriginRates,
  WEBHOOK_HEADERS,
  type WebhookReceiverOptions,
} from "./webhook.js";

/**
 * What settling an HTTP delivery does. The sender, not a broker, redelivers: `release()` answers
 * 429 or 503 with `Retry-After` (so `delayMs` is honoured), `reject()` answers 422, which no
 * well-behaved sender retries. HTTP has no delivery counter.
 */
export const HTTP_CAPABILITIES: SettlementCapabilities = Object.freeze({
  release: "native",
  releaseDelay: true,
  reject: "native",
  inProgress: false,
  deliveryCount: "none",
});

/** Why an HTTP delivery cannot be extended, in the binding's words. */
const HTTP_UNSUPPORTED: UnsupportedSettlements = Object.freeze({
  inProgress:
    "HTTP has no acknowledgement wait to extend: the sender waits for the answer, which comes at settlement or after settleTimeoutMs (503, to deliver again)",
});

/**
 * A delivery from an {@link HttpReceiver}: always a CloudEvent, since a request that does not
 * decode to one (or a batch of them) is answered 4xx and never delivered. It is a `Delivery`
 * wherever one is asked for.
 */
export interface HttpDelivery<T = unknown> extends Delivery<T> {
  /** The event the request carried (one of them, for a batch). */
  readonly event: CloudEvent<T>;
}

/** Options of an HTTP receiver (every adapter takes them). */
export interface HttpReceiverOptions {
  /** Formats accepted in structured and batch mode. Binary mode needs none. */
  formats?: readonly EventFormat[];
  /**
   * Where the types of extensions are looked up, in binary, structured and batch mode alike (see
   * {@link FromHttpMessageOptions.registry}). Defaults to core's registry in binary mode and to
   * each format's own in structured and batch mode.
   */
  registry?: ExtensionRegistry;
  /**
   * Largest body accepted, in bytes (413 above it). Default 1 MiB. The same name as in every
   * other binding.
   */
  maxPayloadBytes?: number;
  /**
   * The former name of {@link HttpReceiverOptions.maxPayloadBytes}, still read; when both are
   * given, `maxPayloadBytes` wins.
   *
   * @deprecated use maxPayloadBytes
   */
  maxBodyBytes?: number;
  /**
   * Most events one batch request (`application/cloudevents-batch+json` and the like) may carry:
   * past it the request is answered 413 saying so, and none of its events is delivered. Checked
   * once the body is decoded, before any delivery is made. Default
   * {@link DEFAULT_MAX_BATCH_EVENTS} (1,000; the publisher splits a longer array into requests of
   * that many); a whole number of 1 or more, or `Infinity` for no limit. Every delivery costs the receiver memory until the request
   * is answered, and a 1 MiB batch holds some 19,000 minimal events. A request in binary or
   * structured mode carries one event.
   */
  maxBatchEvents?: number;
  /** Most request headers accepted (431 above it). Default 200. */
  maxHeaderCount?: number;
  /** Largest total size of header names and values (431 above it). Default 64 KiB. */
  maxHeaderBytes?: number;
  /** JSON limits for binary-mode data. */
  json?: JsonLimits;
  /**
   * Handles each event. It may settle the delivery itself; when it returns without settling,
   * the delivery is accepted, and when it throws, the request is answered 500. Without a
   * handler, deliveries are read by iterating the receiver (it is a `Subscriber`).
   */
  onDelivery?: (delivery: HttpDelivery) => unknown;
  /** Status of a released delivery: 503 (default) or 429. */
  releaseStatus?: 429 | 503;
  /** `Retry-After` sent when `release()` gives no `delayMs`. Default 1000 ms. */
  defaultRetryAfterMs?: number;
  /** How long a delivery may stay unsettled before the request is answered 503. Default 30 s. */
  settleTimeoutMs?: number;
  /**
   * On `close()`, wait up to this long for deliveries in the application's hands (and running
   * `onDelivery` handlers) to settle, so their requests get their real answer instead of 503.
   * Default 0, as on Kafka (MQTT's is 5 s).
   */
  drainTimeoutMs?: number;
  /**
   * How long the receiver waits, from the request's arrival, for everything before the delivery:
   * `authorize`, the webhook handshake's `allowedOrigins` and `onCallback`, and the whole body.
   * Past it a body still arriving is answered 408 with `Connection: close`, and an `authorize`
   * or webhook callback that has not answered 500. Default 60 s. (The delivery itself is bounded
   * by `settleTimeoutMs`.) `Infinity` sets no limit.
   */
  requestTimeoutMs?: number;
  /**
   * Checks the `Authorization` header (or `access_token` query parameter); false is 401. When it
   * throws or rejects, the answer is 500 `authorize failed` (the error's text is not sent): the
   * credential may be fine, so the sender should try again rather than give up as on 401.
   * `context.abortSignal` aborts when the receiver stops waiting for the answer (the client went
   * away, `requestTimeoutMs` passed, or `close()`): pass it on, e.g. to `fetch`.
   */
  authorize?: (
    credential: string | undefined,
    context: AuthorizeContext,
  ) => boolean | Promise<boolean>;
  /**
   * Answers the webhook validation handshake (`OPTIONS`) when set: at once for the origins it
   * allows, or later through the sender's callback URL with `onCallback`.
   */
  webhook?: WebhookReceiverOptions;
}

/** What an {@link HttpReceiverOptions.authorize} callback gets besides the credential. */
export interface AuthorizeContext {
  /**
   * Aborts when the receiver stops waiting for `authorize`: the client went away (reason a
   * `PosthornError` `Aborted`), `requestTimeoutMs` passed (`Timeout`), or the receiver was closed
   * (`Closed`). Made when first read, so an `authorize` that does not read it costs nothing more.
   */
  readonly abortSignal: AbortSignal;
}

/** A request as every adapter presents it to {@link HttpReceiver.handle}. */
export interface HttpReceiverRequest {
  /** The request method, e.g. `POST`; `OPTIONS` is the webhook handshake. */
  readonly method: string;
  /** Path and query, when known (for `access_token`). */
  readonly url?: string;
  /** The request headers, in any shape an HTTP stack uses. */
  readonly headers: HttpHeadersInput;
  /**
   * Reads the whole body, failing with `PayloadTooLarge` past `limit` bytes (without reading
   * further than that).
   */
  readBody(limit: number): Promise<Uint8Array>;
  /**
   * Aborts when the client goes away before it is answered. The receiver then stops waiting for
   * `authorize` and the body, delivers nothing, and answers 499: nginx's non-standard "client
   * closed request", which reaches logs and metrics only, never the client, who is gone.
   */
  readonly signal?: ClientSignal;
}

/**
 * What the receiver reads of a request's abort signal. A Web `AbortSignal` is one; the Node
 * adapters pass a lighter one of their own (an `AbortController` per request cost about 3 µs).
 */
export interface ClientSignal {
  /** Whether the client has gone. */
  readonly aborted: boolean;
  /** Adds the listener for `abort`. */
  addEventListener(type: "abort", listener: () => void): void;
  /** Removes a listener added with `addEventListener`. */
  removeEventListener(type: "abort", listener: () => void): void;
}

/** The answer an adapter writes back. */
export interface HttpReply {
  /** The HTTP status code. */
  readonly status: number;
  /** Response headers by name (e.g. `Retry-After`, `WebHook-Allowed-Origin`). */
  readonly headers: Record<string, string>;
  /** A short plain-text explanation for error statuses. */
  readonly body?: string;
}

type Outcome =
  | { kind: "accept" }
  | { kind: "release"; delayMs: number | undefined }
  | { kind: "reject"; reason: string | undefined };

/** A delivery whose request waits for its answer, in the receiver's {@link SlotSet}. */
interface Pending extends Slotted {
  readonly delivery: HttpDelivery;
  /** Answers the delivery's part of the request; does nothing once it was answered. */
  readonly finish: (o: Outcome) => void;
  /** Whether it is in the iterator's queue, not handed to the application yet. */
  queued: boolean;
}

/**
 * The deliveries of one request, and the one `settleTimeoutMs` timer they share: a timer per
 * delivery cost a batch thousands of them, all set in the same turn for the same time.
 */
interface RequestDeliveries {
  /** Its deliveries, emptied once every one has ended. */
  readonly entries: Pending[];
  /** How many of them have not ended yet. */
  open: number;
  /** Answers those still open as released, `settleTimeoutMs` after they were made. */
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** The methods a receiver answers, for `Allow`. */
const ALLOWED_METHODS = "POST, PUT, OPTIONS";

const ERROR_STATUS: Readonly<Record<string, number>> = {
  UnsupportedContentType: 415,
  PayloadTooLarge: 413,
  MalformedInput: 400,
  InvalidEvent: 400,
};

function errorReply(
  status: number,
  message: string,
  extra: Record<string, string> = {},
): HttpReply {
  return {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...extra },
    body: message,
  };
}

function headerRecord(headers: HttpHeadersInput): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  if (typeof (headers as { forEach?: unknown }).forEach === "function") {
    (headers as { forEach(cb: (v: string, n: string) => void): void }).forEach((v, n) => {
      out[n.toLowerCase()] = v;
    });
  } else {
    const record = headers as Readonly<Record<string, string | readonly string[] | number>>;
    for (const name of Object.keys(record)) {
      const v = record[name];
      if (v !== undefined) out[name.toLowerCase()] = Array.isArray(v) ? v.join(",") : String(v);
    }
  }
  return out;
}

function headerSize(headers: Record<string, string>): { count: number; bytes: number } {
  let count = 0;
  let bytes = 0;
  for (const name of Object.keys(headers)) {
    count++;
    bytes += name.length + (headers[name] as string).length;
  }
  return { count, bytes };
}

function accessToken(url: string | undefined): string | undefined {
  if (url === undefined || !url.includes("access_token=")) return undefined;
  const q = url.indexOf("?");
  if (q === -1) return undefined;
  const value = new URLSearchParams(url.slice(q + 1)).get("access_token");
  return value === null ? undefined : `Bearer ${value}`;
}

/**
 * The framework-neutral HTTP receiver every adapter (fetch, node:http, Express, Fastify) drives.
 * It answers the webhook handshake, checks authorization and limits, decodes the request (binary,
 * structured or batch), hands each event over as an {@link HttpDelivery}, and turns the settlement
 * into the status code: accept 204, release 503/429 with `Retry-After`, reject 422; 400 for an
 * invalid event or unparseable body, 413 too large, 415 not a CloudEvent or unknown format, 431 too
 * many or too large headers, 401 unauthorized, 405 other methods.
 *
 * Without `onDelivery`, the receiver is a `Subscriber`: iterate it to get deliveries, and each
 * HTTP request waits until its deliveries are settled (or `settleTimeoutMs` passes). Leaving a
 * `for await` loop over it closes it, as `close()` does.
 */
export class HttpReceiver implements Subscriber {
  /** {@link HTTP_CAPABILITIES}. */
  readonly capabilities: SettlementCapabilities = HTTP_CAPABILITIES;
  /**
   * Already resolved: there is no subscription to set up. The receiver takes requests as soon
   * as the server that routes them to it listens, which is the application's to wait for.
   */
  readonly ready: Promise<void> = Promise.resolve();
  readonly #options: HttpReceiverOptions;
  readonly #queue = new AsyncQueue<Pending>();
  /**
   * Deliveries whose request waits for its answer, each with what answers it. A SlotSet, not a
   * Map keyed by delivery: one add and one delete per request (see core's SlotSet).
   */
  readonly #pending = new SlotSet<Pending>();
  /** What close() waits on for the deliveries in the application's hands. */
  readonly #drain = new Drain();
  #closed = false;
  #closing: Promise<void> | undefined;
  /**
   * The requests not yet delivered, oldest first, each removed when it is past its waits: close()
   * ends them, and so does their deadline. (Racing one promise that stays pending until close()
   * would keep a reaction per request, for the receiver's lifetime.) Every request gets the same
   * `requestTimeoutMs`, so the oldest has the earliest deadline, and one timer serves them all.
   */
  readonly #waiting = new Set<Waiter>();
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  /** Deliveries per origin, when `webhook.enforceRate` is set. */
  readonly #rates: OriginRates | undefined;

  /** @param options - formats, limits, handler, webhook and authorization settings */
  constructor(options: HttpReceiverOptions = {}) {
    checkCountOption("maxPayloadBytes", options.maxPayloadBytes, 0);
    checkCountOption("maxBodyBytes", options.maxBodyBytes, 0);
    checkCountOption("maxBatchEvents", options.maxBatchEvents, 1);
    checkCountOption("maxHeaderCount", options.maxHeaderCount, 0);
    checkCountOption("maxHeaderBytes", options.maxHeaderBytes, 0);
    checkCountOption("json.maxDepth", options.json?.maxDepth, 0);
    // Sent as Retry-After in seconds: NaN went out as "NaN".
    checkTimeOption("defaultRetryAfterMs", options.defaultRetryAfterMs, 0, Number.MAX_SAFE_INTEGER);
    checkTimeOption("settleTimeoutMs", options.settleTimeoutMs);
    checkTimeOption("drainTimeoutMs", options.drainTimeoutMs);
    checkTimeOption("requestTimeoutMs", options.requestTimeoutMs);
    checkRateOption("webhook.allowedRate", options.webhook?.allowedRate);
    const webhook = options.webhook;
    if (webhook !== undefined) {
      const allowed: unknown = webhook.allowedOrigins;
      if (
        allowed !== "*" &&
        typeof allowed !== "function" &&
        !(Array.isArray(allowed) && allowed.every((o) => typeof o === "string"))
      ) {
        // A single origin as a string failed every handshake later, with a TypeError (500).
        throw new PosthornError(
          "NotSupported",
          `webhook.allowedOrigins must be "*", an array of origins or a function, got ${typeof allowed === "string" ? JSON.stringify(allowed) : String(allowed)}${typeof allowed === "string" ? `; for one origin write [${JSON.stringify(allowed)}]` : ""}`,
          { attribute: "webhook.allowedOrigins" },
        );
      }
    }
    if (webhook?.authorizeValidation === true && options.authorize === undefined) {
      throw new PosthornError(
        "NotSupported",
        "webhook.authorizeValidation needs the receiver's authorize option",
        { attribute: "webhook.authorizeValidation" },
      );
    }
    if (webhook?.enforceRate === true) {
      const rate = webhook.allowedRate;
      if (typeof rate !== "number") {
        throw new PosthornError(
          "NotSupported",
          `webhook.enforceRate needs webhook.allowedRate as a number of requests per minute, got ${rate === undefined ? "none" : JSON.stringify(rate)}`,
          { attribute: "webhook.enforceRate" },
        );
      }
      this.#rates = new OriginRates(rate);
    }
    const releaseStatus: unknown = options.releaseStatus;
    if (releaseStatus !== undefined && releaseStatus !== 429 && releaseStatus !== 503) {
      // Any other status was sent as given: 200 told the sender a released event was delivered,
      // and a 500 or "429" (a string) lost the Retry-After it carries.
      throw new PosthornError(
        "NotSupported",
        `releaseStatus must be 429 or 503, got ${typeof releaseStatus === "string" ? JSON.stringify(releaseStatus) : String(releaseStatus)}`,
        { attribute: "releaseStatus" },
      );
    }
    this.#options = options;
  }

  /**
   * Handles one request and returns the reply to write. Never throws: every failure is a status.
   *
   * @param request - method, headers and a body reader
   */
  async handle(request: HttpReceiverRequest): Promise<HttpReply> {
    try {
      return await this.#handle(request);
    } catch (err) {
      if (isPosthornError(err)) {
        const status = ERROR_STATUS[err.code];
        if (status !== undefined) return errorReply(status, err.message);
      }
      return errorReply(500, "the event handler failed");
    }
  }

  async #handle(request: HttpReceiverRequest): Promise<HttpReply> {
    const o = this.#options;
    const headers = headerRecord(request.headers);
    const size = headerSize(headers);
    if (size.count > (o.maxHeaderCount ?? 200) || size.bytes > (o.maxHeaderBytes ?? 65536)) {
      return errorReply(431, "request headers are too many or too large");
    }
    const method = request.method.toUpperCase();
    if (method !== "OPTIONS" && method !== "POST" && method !== "PUT") {
      return errorReply(405, `method ${method} not allowed`, { allow: ALLOWED_METHODS });
    }
    const timeoutMs = o.requestTimeoutMs ?? 60_000;
    const waiter = this.#wait(request.signal, timeoutMs);
    try {
      return await this.#receive(request, method, headers, waiter, timeoutMs);
    } finally {
      waiter.dispose();
      this.#waiting.delete(waiter);
    }
  }

  /**
   * What comes after the header checks. Each wait for the application's callbacks or the client
   * races `waiter.when`: the receiver closing, the client going away, or `requestTimeoutMs`
   * passing.
   */
  async #receive(
    request: HttpReceiverRequest,
    method: string,
    headers: Record<string, string>,
    waiter: Waiter,
    timeoutMs: number,
  ): Promise<HttpReply> {
    const o = this.#options;
    const stop = waiter.when;
    // A function, not a property read: the compiler would keep its value across the awaits.
    const gone = (): boolean => request.signal?.aborted === true;
    // The webhook handshake too: a closed receiver takes no deliveries, so it grants none.
    if (this.#closed) return closedReply();
    if (method === "OPTIONS") {
      // A validation request goes through authorize only when asked (see authorizeValidation).
      if (
        o.authorize &&
        o.webhook?.authorizeValidation === true &&
        headers[WEBHOOK_HEADERS.requestOrigin] !== undefined
      ) {
        const refused = await this.#authorize(o.authorize, request, headers, waiter, timeoutMs);
        if (refused !== undefined) return refused;
      }
      let answer: HttpReply | Interruption;
      try {
        answer = await Promise.race([this.#options_(headers), stop]);
      } catch {
        // As for authorize: the application's callback failed, not the sender's request. (It was
        // answered "the event handler failed", for a request that carries no event.)
        return errorReply(500, "the webhook callback (allowedOrigins or onCallback) failed");
      }
      if (typeof answer !== "symbol") return answer;
      if (answer === TIMED_OUT) {
        return errorReply(500, `the webhook callbacks did not answer within ${timeoutMs} ms`);
      }
      return interruptedReply(answer);
    }
    if (o.authorize) {
      const refused = await this.#authorize(o.authorize, request, headers, waiter, timeoutMs);
      if (refused !== undefined) return refused;
    }
    if (this.#rates !== undefined) {
      // http-webhook.md 4.2.2: over the granted rate, the sender is throttled with 429; 2.2: with
      // Retry-After, which it must wait out. The body is not read: nothing is delivered.
      const origin = (headers[WEBHOOK_HEADERS.requestOrigin] ?? "").trim().toLowerCase();
      const waitMs = this.#rates.take(origin);
      if (waitMs > 0) {
        return errorReply(
          429,
          `origin ${origin === "" ? "(none)" : origin} is over its rate of ${o.webhook?.allowedRate} requests per minute`,
          { "retry-after": String(Math.max(1, Math.ceil(waitMs / 1000))) },
        );
      }
    }
    const max = o.maxPayloadBytes ?? o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    const declared = Number(headers["content-length"]);
    if (declared > max) {
      return errorReply(413, `body of ${declared} bytes exceeds ${max}`, { connection: "close" });
    }
    // Gone while authorize ran: reading the body of an aborted request may never end.
    if (gone()) return interruptedReply(ABORTED);
    let body: Uint8Array;
    try {
      const read = await Promise.race([request.readBody(max), stop]);
      // The rest of the body is not read, so the connection closes: answered now, not once the
      // sender finishes (or never, for a client gone or a body trickling in).
      if (read === TIMED_OUT) {
        return errorReply(408, `the body did not arrive within ${timeoutMs} ms`, {
          connection: "close",
        });
      }
      if (typeof read === "symbol") return interruptedReply(read);
      body = read;
    } catch (err) {
      if (isPosthornError(err, "PayloadTooLarge")) {
        return errorReply(413, err.message, { connection: "close" });
      }
      if (isPosthornError(err, "NotSupported")) return errorReply(500, err.message);
      // The stream broke off (the client went away, or sent a body that does not parse): a
      // half-read body is never decoded.
      if (gone()) return interruptedReply(ABORTED);
      return errorReply(400, "the request body could not be read", { connection: "close" });
    }
    // Past the waits that requestTimeoutMs and close() end: from here only the client going away
    // ends `stop` (which withdraws deliveries still queued). Ended by the deadline, it no longer
    // could: a request in the queue past requestTimeoutMs was handed out after its client left.
    this.#waiting.delete(waiter);
    // Closed just as the body arrived: its delivery would go to a queue nobody reads any more.
    if (this.#closed) return closedReply();
    // Gone just as the body arrived: nobody waits for the answer a delivery would get.
    if (gone()) return interruptedReply(ABORTED);
    const decoded = fromHttpMessage(
      { headers, body },
      {
        formats: o.formats ?? [],
        maxPayloadBytes: max,
        ...(o.registry ? { registry: o.registry } : {}),
        ...(o.json ? { json: o.json } : {}),
      },
    );
    const maxEvents = o.maxBatchEvents ?? DEFAULT_MAX_BATCH_EVENTS;
    if (Array.isArray(decoded) && decoded.length > maxEvents) {
      // Nothing delivered: each delivery holds memory (and a handler's work) until the answer.
      return errorReply(
        413,
        `batch of ${decoded.length} events exceeds maxBatchEvents ${maxEvents}; send it in smaller batches`,
      );
    }
    const events = Array.isArray(decoded) ? decoded : [decoded];
    const message: Message = {
      body,
      ...(headers["content-type"] === undefined ? {} : { contentType: headers["content-type"] }),
      properties: headers as Record<string, PropertyValue>,
      metadata: { method, ...(request.url === undefined ? {} : { url: request.url }) },
    };
    const deliveries: RequestDeliveries = { entries: [], open: events.length, timer: undefined };
    const outcomes = Promise.all(events.map((event) => this.#deliver(message, event, deliveries)));
    // Set after every delivery was made, in the same turn: none can have ended yet (handlers and
    // the iterator run later), and each waits settleTimeoutMs from its making, as it did with a
    // timer of its own.
    if (deliveries.open > 0) {
      deliveries.timer = limitTimer(() => {
        for (const entry of [...deliveries.entries]) {
          entry.finish({ kind: "release", delayMs: undefined });
        }
      }, o.settleTimeoutMs ?? 30_000);
    }
    if (o.onDelivery === undefined && events.length > 0) {
      // A client gone while its deliveries wait in the queue: they are withdrawn rather than
      // handed out for an answer nobody hears (its sender, unanswered, delivers them again).
      void stop.then((why) => {
        if (why === ABORTED) for (const entry of [...deliveries.entries]) this.#withdraw(entry);
      });
    }
    let settled: Outcome[];
    try {
      settled = await outcomes;
    } catch {
      // The handler's failure is the receiver's, whatever it threw: a PosthornError from its own
      // work (a downstream publish's InvalidEvent or PayloadTooLarge) was answered with that
      // code's 4xx, which told the sender to drop an event it had sent correctly.
      return errorReply(500, "the event handler failed");
    }
    return this.#reply(settled);
  }

  /**
   * Runs `authorize` on the request's credential (`Authorization`, or the `access_token` query
   * parameter), within the request's waits.
   *
   * @returns the answer when the request goes no further (401, 500, or the client gone), else
   *   `undefined`
   */
  async #authorize(
    authorize: NonNullable<HttpReceiverOptions["authorize"]>,
    request: HttpReceiverRequest,
    headers: Record<string, string>,
    waiter: Waiter,
    timeoutMs: number,
  ): Promise<HttpReply | undefined> {
    const stop = waiter.when;
    const credential = headers.authorization ?? accessToken(request.url);
    // Its signal is made only if authorize reads it.
    const context: AuthorizeContext = {
      get abortSignal() {
        return waiter.abortSignal();
      },
    };
    let allowed: boolean | Interruption;
    try {
      // Through then(), so an authorize that throws at once is a rejection like any other.
      allowed = await Promise.race([
        Promise.resolve().then(() => authorize(credential, context)),
        stop,
      ]);
    } catch {
      return errorReply(500, "authorize failed");
    }
    if (allowed === TIMED_OUT) {
      return errorReply(500, `authorize did not answer within ${timeoutMs} ms`, {
        connection: "close",
      });
    }
    if (typeof allowed === "symbol") return interruptedReply(allowed);
    if (allowed !== true) {
      return errorReply(401, "not authorized", { "www-authenticate": "Bearer" });
    }
    return undefined;
  }

  /**
   * The waits of one request, ended by whatever comes first: the receiver closing, the request's
   * signal, or `timeoutMs` (none when it is `Infinity` or past what a timer holds).
   */
  #wait(signal: ClientSignal | undefined, timeoutMs: number): Waiter {
    const deadline = timeoutMs <= MAX_TIMER_MS ? Date.now() + timeoutMs : Number.POSITIVE_INFINITY;
    const waiter = new Waiter(signal, deadline);
    if (this.#closed) waiter.end(CLOSED);
    else if (signal?.aborted === true) waiter.end(ABORTED);
    this.#waiting.add(waiter);
    if (this.#deadlineTimer === undefined && deadline !== Number.POSITIVE_INFINITY) {
      this.#armDeadlines(deadline);
    }
    return waiter;
  }

  /** Ends the waits of the requests past their deadline, then waits for the next deadline. */
  #armDeadlines(at: number): void {
    const timer = setTimeout(
      () => {
        this.#deadlineTimer = undefined;
        const now = Date.now();
        for (const waiter of this.#waiting) {
          if (waiter.deadline === Number.POSITIVE_INFINITY) continue;
          if (waiter.deadline > now) {
            this.#armDeadlines(waiter.deadline);
            return;
          }
          this.#waiting.delete(waiter);
          waiter.end(TIMED_OUT);
        }
      },
      Math.max(0, at - Date.now()),
    );
    // The deadlines of requests in flight do not keep the process alive; their sockets do.
    timer.unref?.();
    this.#deadlineTimer = timer;
  }

  async #options_(headers: Record<string, string>): Promise<HttpReply> {
    const origin = headers[WEBHOOK_HEADERS.requestOrigin];
    const webhook = this.#options.webhook;
    if (origin === undefined || webhook === undefined) {
      // Not a validation request, or no handshake configured: say what is allowed, grant nothing.
      return { status: 204, headers: { allow: ALLOWED_METHODS } };
    }
    const grant = await answerWebhookValidation(
      origin,
      headers[WEBHOOK_HEADERS.requestRate],
      webhook,
      headers[WEBHOOK_HEADERS.requestCallback],
    );
    // The receiver takes PUT too, as its other answers say (answerWebhookValidation, which may
    // serve a POST-only endpoint, does not).
    return { status: grant.status, headers: { ...grant.headers, allow: ALLOWED_METHODS } };
  }

  /**
   * Hands one event to `onDelivery`, or queues it for the iterator, adds it to its request's
   * `deliveries` (whose timer answers it after `settleTimeoutMs`), and resolves with its outcome.
   */
  #deliver(message: Message, event: CloudEvent, deliveries: RequestDeliveries): Promise<Outcome> {
    return new Promise<Outcome>((resolve, reject) => {
      let done = false;
      // Whether this call is the one that ends the delivery's wait (an outcome, or the handler's
      // failure); close() hears of each end.
      const end = (): boolean => {
        if (done) return false;
        done = true;
        this.#pending.delete(entry);
        if (--deliveries.open === 0) {
          clearTimeout(deliveries.timer);
          // A delivery the application keeps no longer holds the rest of its batch.
          deliveries.entries.length = 0;
        }
        return true;
      };
      const finish = (outcome: Outcome): void => {
        if (!end()) return;
        resolve(outcome);
        this.#drain.wake();
      };
      // The request may already have been answered for the application (503 when the receiver
      // closed or settleTimeoutMs passed): settling then must say so, not pretend it worked.
      const settle = (outcome: Outcome): void => {
        if (done) {
          throw new PosthornError(
            "SettlementFailed",
            this.#closed
              ? "the receiver was closed and answered this request 503; the sender delivers it again"
              : "the request was answered 503 after settleTimeoutMs; the sender delivers it again",
          );
        }
        finish(outcome);
      };
      // createDelivery types `event` as possibly undefined; here it is the decoded event.
      const delivery = createDelivery<unknown>({
        message,
        event,
        deliveryCount: 1,
        capabilities: HTTP_CAPABILITIES,
        unsupported: HTTP_UNSUPPORTED,
        accept: () => settle({ kind: "accept" }),
        release: (options) => settle({ kind: "release", delayMs: options.delayMs }),
        reject: (reason) => settle({ kind: "reject", reason }),
      }) as HttpDelivery;
      const entry: Pending = { slot: -1, delivery, finish, queued: false };
      this.#pending.add(entry);
      deliveries.entries.push(entry);
      const handler = this.#options.onDelivery;
      if (handler === undefined) {
        entry.queued = true;
        this.#queue.push(entry);
        return;
      }
      Promise.resolve()
        .then(() => handler(delivery))
        .then(
          () => {
            if (!delivery.settled && !done) return delivery.accept();
          },
          (err: unknown) => {
            if (!end()) return;
            reject(err);
            this.#drain.wake();
          },
        )
        .catch(reject);
    });
  }

  #reply(outcomes: readonly Outcome[]): HttpReply {
    // A batch is one request: a release anywhere asks for the whole batch again, after the
    // longest delay any release asked for (the sender resends it once, so the first release's
    // delay brought back early an event that asked for longer); otherwise a reject anywhere
    // refuses it; otherwise it is accepted.
    let releaseMs: number | undefined;
    let rejected: Outcome | undefined;
    for (const outcome of outcomes) {
      if (outcome.kind === "release") {
        const ms = outcome.delayMs ?? this.#options.defaultRetryAfterMs ?? 1000;
        releaseMs = releaseMs === undefined ? ms : Math.max(releaseMs, ms);
      } else if (outcome.kind === "reject") rejected ??= outcome;
    }
    if (releaseMs !== undefined) {
      return errorReply(this.#options.releaseStatus ?? 503, "released: deliver again later", {
        "retry-after": String(Math.max(0, Math.ceil(releaseMs / 1000))),
      });
    }
    if (rejected?.kind === "reject") {
      return errorReply(422, rejected.reason ?? "rejected by the receiver");
    }
    return { status: 204, headers: {} };
  }

  /** Iterates deliveries when no `onDelivery` handler was given. */
  [Symbol.asyncIterator](): AsyncIterator<HttpDelivery> {
    if (this.#options.onDelivery !== undefined) {
      throw new PosthornError(
        "NotSupported",
        "this receiver hands deliveries to onDelivery; it cannot also be iterated",
      );
    }
    const source = this.#queue[Symbol.asyncIterator]();
    const next = async (): Promise<IteratorResult<HttpDelivery>> => {
      for (;;) {
        const r = await source.next();
        if (r.done === true) return { done: true, value: undefined };
        const entry = r.value;
        entry.queued = false;
        // One already answered while it waited here (its client went away, or settleTimeoutMs
        // passed) is skipped: its sender delivers it again.
        if (this.#pending.has(entry)) return { done: false, value: entry.delivery };
      }
    };
    // Leaving a for-await loop closes the receiver: otherwise each request would wait
    // settleTimeoutMs for a loop nobody runs any more.
    return closeOnReturn({ next }, () => this.close());
  }

  /** Answers a delivery that is still in the queue as released, and so takes it out. */
  #withdraw(entry: Pending): void {
    if (entry.queued) {
      entry.queued = false;
      // Does nothing when the request was answered meanwhile.
      entry.finish({ kind: "release", delayMs: undefined });
    }
  }

  /**
   * Stops receiving: later requests are answered 503, and so are requests whose deliveries were
   * not handed out yet. Deliveries in the application's hands get up to `drainTimeoutMs`
   * (default 0) to be settled; then those still waiting are released (503 with `Retry-After`),
   * so their senders deliver again. Calling it again returns the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    for (const waiter of [...this.#waiting]) waiter.end(CLOSED);
    for (const entry of this.#queue.drain()) {
      entry.queued = false;
      entry.finish({ kind: "release", delayMs: undefined });
    }
    this.#queue.end();
    const drainMs = this.#options.drainTimeoutMs ?? 0;
    if (drainMs > 0 && this.#pending.size > 0) {
      await this.#drain.wait(drainMs, () => this.#pending.size === 0);
    }
    for (const entry of this.#pending) entry.finish({ kind: "release", delayMs: undefined });
  }
}

/**
 * Makes an {@link HttpReceiver}.
 *
 * @param options - formats, limits, the delivery handler, release status and webhook answers
 * @throws {@link PosthornError} `NotSupported` for a limit (`maxPayloadBytes`, `maxHeaderCount`,
 *   `maxHeaderBytes`, `json.maxDepth`) that is not a whole number of 0 or more, a
 *   `maxBatchEvents` that is not a whole number of 1 or more (or `Infinity`), or a time
 *   (`defaultRetryAfterMs`, `settleTimeoutMs`, `drainTimeoutMs`, `requestTimeoutMs`) that is not a
 *   number of 0 or more (`defaultRetryAfterMs` also finite), or a `webhook.allowedRate` that is
 *   neither `"*"` nor a whole number of 1 or more, a `webhook.allowedOrigins` that is not `"*"`,
 *   an array of strings or a function, or a `releaseStatus` other than 429 and 503;
 *   so do the adapters given options
 *   (default none: binary mode only, deliveries read by iterating)
 * @example
 * ```ts
 * const receiver = httpReceiver({ formats: [json] });
 * http.createServer(createNodeHandler(receiver)).listen(8080);
 * for await (const delivery of receiver) { ...; await delivery.accept(); }
 * ```
 */
export function httpReceiver(options: HttpReceiverOptions = {}): HttpReceiver {
  return new HttpReceiver(options);
}

/** A receiver, or the options to make one. */
export type ReceiverOrOptions = HttpReceiver | HttpReceiverOptions;

/** The receiver itself, or a new one made from options. */
export function toReceiver(input: ReceiverOrOptions): HttpReceiver {
  return input instanceof HttpReceiver ? input : new HttpReceiver(input);
}

/** The receiver closed: told apart from a body or an answer. */
const CLOSED = Symbol("closed");
/** The request's signal aborted: the client went away. */
const ABORTED = Symbol("aborted");
/** `requestTimeoutMs` passed. */
const TIMED_OUT = Symbol("timed out");
/** Why the receiver stopped waiting for a request's callbacks or body. */
type Interruption = typeof CLOSED | typeof ABORTED | typeof TIMED_OUT;

/** The waits of one request before its delivery: {@link Waiter.when} says what ended them. */
class Waiter {
  /** Resolves with why the waits ended, if they end before the request is past them. */
  readonly when: Promise<Interruption>;
  #resolve: (why: Interruption) => void = () => {};
  /** Why the waits ended, once they have. */
  #why: Interruption | undefined;
  /** Made by the first {@link Waiter.abortSignal} call only. */
  #controller: AbortController | undefined;
  readonly #signal: ClientSignal | undefined;
  readonly #onAbort = (): void => this.end(ABORTED);

  constructor(
    signal: ClientSignal | undefined,
    readonly deadline: number,
  ) {
    this.when = new Promise<Interruption>((resolve) => {
      this.#resolve = resolve;
    });
    this.#signal = signal;
    signal?.addEventListener("abort", this.#onAbort);
  }

  /** Ends the waits (the first reason counts). */
  end(why: Interruption): void {
    if (this.#why !== undefined) return;
    this.#why = why;
    this.#resolve(why);
    this.#controller?.abort(interruptionError(why));
  }

  /**
   * An `AbortSignal` that aborts when the waits end, with a `PosthornError` as its reason
   * (`Aborted`, `Timeout` or `Closed`); made on the first call, aborted already if they have.
   */
  abortSignal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#why !== undefined) this.#controller.abort(interruptionError(this.#why));
    }
    return this.#controller.signal;
  }

  /** Drops the signal's listener. */
  dispose(): void {
    this.#signal?.removeEventListener("abort", this.#onAbort);
  }
}

/** The reason an `authorize` callback's `abortSignal` gives for ending. */
function interruptionError(why: Interruption): PosthornError {
  if (why === ABORTED) return new PosthornError("Aborted", "the client closed the request");
  if (why === TIMED_OUT) {
    return new PosthornError("Timeout", "requestTimeoutMs passed before the delivery");
  }
  return new PosthornError("Closed", "the receiver was closed");
}

/** The answer when the receiver closed or the client went away before the delivery. */
function interruptedReply(why: typeof CLOSED | typeof ABORTED): HttpReply {
  if (why === CLOSED) return closedReply({ connection: "close" });
  // 499, as nginx logs it: the client closed the request; nobody reads this answer.
  return errorReply(499, "the client closed the request", { connection: "close" });
}

/** The answer to a request that reaches a closed receiver: deliver again, elsewhere or later. */
function closedReply(headers?: Readonly<Record<string, string>>): HttpReply {
  return errorReply(503, "the receiver is closed", { "retry-after": "1", ...headers });
}
