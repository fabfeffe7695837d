import {
  CloudEvent,
  type CloudEventLike,
  checkCountOption,
  checkTimeOption,
  DEFAULT_CLOSE_TIMEOUT_MS,
  type EventFormat,
  encodeHeaderValue,
  limitTimer,
  MAX_TIMER_MS,
  PosthornError,
  type Publisher,
  type PublishOptions,
  SlotSet,
  type Slotted,
  settleWithin,
  thrownFor,
} from "@posthorn/core";
import {
  connectionOf,
  dropsOf,
  isReconnecting,
  type JetStreamClientLike,
  type NatsConnectionLike,
  type PubAckLike,
  whenClosed,
} from "./client.js";
import { noStreamError, translateNatsError } from "./errors.js";
import type { NatsHeaders } from "./headers.js";
import {
  type NatsContentMode,
  type NatsEncodeOptions,
  type NatsMessage,
  toNatsMessage,
} from "./to-message.js";

/** Options for {@link natsPublisher} and {@link jetStreamPublisher}. */
export interface NatsPublisherOptions {
  /**
   * The subject to publish on, or a function choosing it per event. A subject with a wildcard
   * token (`*`, `>`), white space or a control character, or empty, is `NotSupported`
   * (`attribute` `subject`): a fixed one when the publisher is made, a chosen one at the
   * publish, nothing sent. What the function throws
   * rejects the publish with `InvalidEvent` (`attribute` `subject`, the error as `cause`; a
   * `PosthornError` as it is), nothing sent.
   */
  subject: string | ((event: CloudEvent) => string);
  /** Content mode: `binary` (default) or `structured` (then `format` is required). */
  mode?: NatsContentMode;
  /** The event format for structured mode, e.g. `json` from `@posthorn/format-json`. */
  format?: EventFormat;
  /**
   * Largest message (payload plus headers) to hand to the client; larger ones are
   * `PayloadTooLarge` before anything is sent. Defaults to the server's `max_payload`.
   */
  maxPayloadBytes?: number;
  /**
   * Core NATS: how long `close()` waits for the server to confirm what was published, across a
   * reconnection. Default {@link DEFAULT_CLOSE_TIMEOUT_MS}. (JetStream's `close()` waits for the
   * acknowledgements in flight, each bounded by `timeoutMs`.)
   */
  closeTimeoutMs?: number;
}

export { DEFAULT_CLOSE_TIMEOUT_MS };

/** Per-call options of a NATS publisher. */
export interface NatsPublishOptions extends PublishOptions {
  /** Publish this call on another subject (checked as the publisher's `subject` is). */
  subject?: string;
  /**
   * JetStream: how long to wait for the stream's acknowledgement (the publisher's `timeoutMs`
   * when not given). Core NATS waits for nothing once nats.js has the message, so only 0 counts
   * there. On both, 0 fails the call at once with `Timeout` and nothing sent; `Infinity` is no
   * limit.
   */
  timeoutMs?: number;
}

/** Options for {@link jetStreamPublisher}. */
export interface JetStreamPublisherOptions extends NatsPublisherOptions {
  /**
   * The JetStream message id (`Nats-Msg-Id`) for an event, which the stream de-duplicates on
   * within its duplicate window. Defaults to the event's `source` and `id` (each percent-encoded
   * for the header, a space between them), which together identify an event: two sources may use
   * one id. Return `undefined` for no de-duplication. What it throws rejects the publish with
   * `InvalidEvent` (`attribute` `messageId`, the error as `cause`), nothing of the call sent.
   */
  messageId?: (event: CloudEvent) => string | undefined;
  /**
   * How long to wait for the stream's acknowledgement (`Timeout`; the stream may still store
   * it). 0 fails every publish at once with `Timeout` and nothing sent; `Infinity` (or anything
   * past `MAX_TIMER_MS`, about 24.8 days) is no limit. Default 5000 ms (per call: `timeoutMs`).
   */
  timeoutMs?: number;
  /** How many publishes of one batch wait for acknowledgements at once. Default 256. */
  maxInFlight?: number;
}

interface Prepared {
  readonly event: CloudEvent;
  readonly subject: string;
  readonly message: NatsMessage;
}

// A call's options: no batch mode, and a timeoutMs (when given) of 0 or more.
function checkCall(options: NatsPublishOptions | undefined): void {
  if (options?.mode === "batch") {
    throw new PosthornError(
      "NotSupported",
      "the NATS binding has no batch mode (NATS binding 1.3)",
    );
  }
  if (options?.timeoutMs !== undefined) checkTimeOption("timeoutMs", options.timeoutMs);
}

// The options both publishers share; the numeric ones and a fixed subject are checked once, here.
function checkFormat(options: NatsPublisherOptions): void {
  if (typeof options.subject !== "function")
    checkedSubject(options.subject, "the publisher's subject");
  checkCountOption("maxPayloadBytes", options.maxPayloadBytes, 0);
  checkTimeOption("closeTimeoutMs", options.closeTimeoutMs);
  if ((options.mode ?? "binary") === "structured" && !options.format) {
    throw new PosthornError(
      "NotSupported",
      "a structured-mode NATS publisher needs an event format (options.format)",
    );
  }
}

function preparer(
  options: NatsPublisherOptions,
  serverLimit: () => number | undefined,
): (input: CloudEventLike, call: NatsPublishOptions | undefined) => Prepared {
  // maxPayloadBytes when given, else the server's max_payload (read at each publish: a reconnect
  // can reach another server).
  const limit = (): number | undefined => options.maxPayloadBytes ?? serverLimit();
  const subjectOf = options.subject;
  // The mapping options of each mode, made once: an object spread after other members, made for
  // every event, takes V8's slow path.
  const encodeOptions = (mode: NatsContentMode): NatsEncodeOptions =>
    options.format ? { mode, format: options.format } : { mode };
  const binary = encodeOptions("binary");
  const structured = encodeOptions("structured");
  return (input, call) => {
    const event = CloudEvent.from(input);
    const mode = (call?.mode ?? options.mode ?? "binary") as NatsContentMode;
    const message = toNatsMessage(event, mode === "structured" ? structured : binary);
    const max = limit();
    if (max !== undefined) {
      const size = message.data.length + message.headers.encode().length;
      if (size > max) {
        throw new PosthornError(
          "PayloadTooLarge",
          `the NATS message for event ${JSON.stringify(event.id)} is ${size} bytes (payload and headers); the limit is ${max}${
            options.maxPayloadBytes === undefined
              ? " (the server's max_payload: raise it in the server's configuration, or send large data by reference)"
              : " (the publisher's maxPayloadBytes)"
          }`,
          { protocolCode: "MAX_PAYLOAD_EXCEEDED" },
        );
      }
    }
    // A fixed subject was checked when the publisher was made.
    const subject =
      call?.subject != null
        ? checkedSubject(call.subject, "the call's subject")
        : typeof subjectOf === "string"
          ? subjectOf
          : checkedSubject(subjectFor(subjectOf, event), "the subject function's answer");
    return { event, subject, message };
  };
}

/**
 * `subject` when a message can be published to it, else `NotSupported` (`attribute` `subject`).
 * A token `*` or `>` is a wildcard, which NATS allows in subscriptions only, though nats-server
 * (2.9.10, outside pedantic mode) takes such a publish: it went only to subscribers whose own
 * wildcards match it token for token (`orders.*` and `orders.>`, never `orders.created`), and a
 * JetStream stream stored it under the subject `orders.*`. A subject with an empty token (`a..b`,
 * `.a`, `a.`) it takes too, and delivers to no one, not even a subscriber to `>`. An empty
 * subject, or one with white
 * space or a control character, nats.js refuses itself (empty, space, tab, CR, LF) or writes
 * into the `PUB` line.
 */
function checkedSubject(subject: unknown, what: string): string {
  if (typeof subject === "string" && subject.length > 0) {
    let clean = true;
    let wildcard = false;
    let emptyToken = false;
    for (let i = 0; i < subject.length && clean && !wildcard && !emptyToken; i++) {
      const c = subject.charCodeAt(i);
      clean = c > 0x20 && c !== 0x7f;
      // `*` (42) or `>` (62) as a whole token, between dots (46) or the ends.
      wildcard =
        (c === 42 || c === 62) &&
        (i === 0 || subject.charCodeAt(i - 1) === 46) &&
        (i + 1 === subject.length || subject.charCodeAt(i + 1) === 46);
      // A dot at either end or next to another leaves a token empty.
      emptyToken =
        c === 46 && (i === 0 || i + 1 === subject.length || subject.charCodeAt(i + 1) === 46);
    }
    if (clean && !wildcard && !emptyToken) return subject;
    if (wildcard) {
      throw new PosthornError(
        "NotSupported",
        `cannot publish to ${JSON.stringify(subject)} (${what}): a "*" or ">" token is a wildcard, which NATS allows only in subscriptions; name the subject in full`,
        { attribute: "subject" },
      );
    }
    if (emptyToken) {
      throw new PosthornError(
        "NotSupported",
        `cannot publish to ${JSON.stringify(subject)} (${what}): it has an empty token (a dot at an end or next to another), which no subscription can match; nats-server takes the publish and delivers it to no one`,
        { attribute: "subject" },
      );
    }
  }
  const shown =
    typeof subject === "string" ? JSON.stringify(subject) : `${typeof subject} ${String(subject)}`;
  throw new PosthornError(
    "NotSupported",
    `a NATS subject to publish to is one or more characters, none of them white space or a control character; ${what} is ${shown}`,
    { attribute: "subject" },
  );
}

/**
 * The subject the publisher's `subject` function chooses for `event`. What the function throws
 * is `InvalidEvent` (this event cannot be routed; `attribute` `subject`, the error as `cause`),
 * as the HTTP binding treats a callback's unusable answer; a `PosthornError` passes as it is.
 */
function subjectFor(choose: (event: CloudEvent) => string, event: CloudEvent): string {
  try {
    return choose(event);
  } catch (err) {
    throw thrownFor(err, "the subject function", event.id, "subject", "; nothing was published");
  }
}

const RESOLVED: Promise<void> = Promise.resolve();

function closedError(): PosthornError {
  return new PosthornError("Closed", "the NATS publisher is closed");
}

function reconnectingError(): PosthornError {
  return new PosthornError(
    "ConnectionFailed",
    "the NATS connection is reconnecting, and nats.js drops what is published meanwhile; publish again once it is back",
    { retryable: true },
  );
}

function abortedError(signal: AbortSignal): PosthornError {
  return new PosthornError("Aborted", "the publish was aborted", { cause: signal.reason });
}

// The rejection of a publish whose timeoutMs (the publisher's or the call's) is 0.
function zeroTimeoutError(subject: NatsPublisherOptions["subject"]): PosthornError {
  const where = typeof subject === "string" ? ` to ${subject}` : "";
  return new PosthornError("Timeout", `timeoutMs is 0: nothing was published${where}`);
}

/** A publisher on core NATS ({@link natsPublisher}). */
export interface NatsPublisher extends Publisher<NatsPublishOptions> {
  /**
   * Resolves once the server has everything published before the call (a nats.js `flush()`
   * round trip). Core NATS is at-most-once: when the connection dropped after messages that no
   * completed flush had confirmed, they may be lost, and this rejects (once for that loss) even
   * though the round trip itself succeeded after the reconnection.
   *
   * @param options - `timeoutMs`: how long to wait for the server's answer (default: the
   *   publisher's `closeTimeoutMs`, 5 s; `Infinity` for no limit)
   * @throws {@link PosthornError} `ConnectionFailed` naming how many messages published since
   *   the last confirmed flush may be lost, when the connection dropped in between (not
   *   retryable: publish them again) or the round trip failed (while reconnecting); `Timeout`
   *   (retryable) when the server did not answer within `timeoutMs` (nothing is counted as
   *   lost: a later flush may still confirm them); `Closed` after `close()` or when the
   *   connection is closed
   */
  flush(options?: {
    /** How long to wait for the server's answer; default `closeTimeoutMs` (5 s). */
    timeoutMs?: number;
  }): Promise<void>;
}

/**
 * A publisher on core NATS. Core NATS has no acknowledgement: `publish()` resolves once the client
 * has the message (at-most-once), so a per-call `timeoutMs` bounds nothing, except that 0 rejects
 * the call with `Timeout` and nothing sent. While the client reconnects, `publish()` rejects with
 * `ConnectionFailed` (retryable): nats.js would drop the message when it reconnects, after
 * reporting it sent.
 *
 * `flush()` and `close()` tell you when messages may have been lost: a message still in the
 * client's buffer or the socket when the connection drops is gone, so the publisher counts the
 * messages handed to nats.js and those a completed flush round trip confirmed (counters only,
 * nothing per message), and reads the connection's count of drops (one `status()` watcher per
 * connection, shared by all its publishers, so a publisher made per event costs no iterator of
 * its own). If the connection
 * dropped while messages were unconfirmed, `flush()` and `close()` reject with
 * `ConnectionFailed` naming how many may be lost, instead of resolving as if all were delivered.
 *
 * `close()` flushes, so that everything published before it has reached the server; it leaves
 * the connection open (it belongs to the caller).
 * Called while the client reconnects, it waits for the reconnection, up to `closeTimeoutMs`; past
 * it, or when the connection closed on an error, it rejects with `ConnectionFailed`.
 *
 * @param nc - a connection from nats.js (`connect()` of `nats` v2 or `@nats-io/transport-node`)
 * @param options - subject, content mode, format and size limit
 * @throws {@link PosthornError} `NotSupported` for structured mode without a format, a fixed
 *   `subject` NATS cannot publish to (a `*` or `>` token, white space, a control character, or
 *   empty; `attribute` `subject`), a time limit that is not a number of 0 or more, or a count or
 *   size that is not a whole number (a per-call `timeoutMs` or `subject` is checked likewise, and
 *   the call rejects)
 * @example
 * ```ts
 * const nc = await connect({ servers: "127.0.0.1:4222" });
 * const publisher = natsPublisher(nc, { subject: "orders.created" });
 * await publisher.publish(event);
 * await publisher.flush(); // the server has it, or ConnectionFailed says it may be lost
 * ```
 */
export function natsPublisher(
  nc: NatsConnectionLike,
  options: NatsPublisherOptions,
): NatsPublisher {
  checkFormat(options);
  const prepare = preparer(options, () => nc.info?.max_payload);
  let closed = false;
  // One promise for every close() call, so that a second call too resolves after the flush.
  let closing: Promise<void> | undefined;
  // Counters, not records per message: how many messages were handed to nats.js, how many of
  // those a completed flush round trip confirmed, and how many were unconfirmed when the
  // connection dropped (not yet reported by flush() or close()).
  let handed = 0;
  let confirmed = 0;
  let mayBeLost = 0;
  // The connection's drops, counted once per connection; this publisher looks at the count before
  // anything changes its own counters, so a drop is charged with exactly the messages handed
  // over and unconfirmed when it happened (none can be handed over while the client reconnects).
  const drops = dropsOf(nc);
  let dropsSeen = drops.count;
  const noticeDrops = (): void => {
    if (drops.count === dropsSeen) return;
    dropsSeen = drops.count;
    mayBeLost += handed - confirmed;
    confirmed = handed;
  };
  /**
   * A round trip begun when `upTo` messages were handed over was answered: the server has them.
   * Throws, once, for those unconfirmed at an earlier drop.
   */
  const confirm = (upTo: number): void => {
    noticeDrops();
    if (upTo > confirmed) confirmed = upTo;
    if (mayBeLost > 0) {
      const count = mayBeLost;
      mayBeLost = 0;
      throw lostError(count, undefined);
    }
  };
  /**
   * A round trip failed (the connection dropped under it): every message not yet confirmed may be
   * lost, counted here as reported, so the drop's own event adds none of them again.
   */
  const takeLost = (): number => {
    noticeDrops();
    const n = mayBeLost + handed - confirmed;
    mayBeLost = 0;
    confirmed = handed;
    return n;
  };
  const send = (p: Prepared): void => {
    noticeDrops();
    try {
      nc.publish(p.subject, p.message.data, { headers: p.message.headers });
    } catch (err) {
      throw translateNatsError(err, "publish");
    }
    handed++;
  };
  return {
    // Not async: the work is synchronous, and the resolved promise is shared, so a publish that
    // succeeds allocates no promise of its own.
    publish(events, call) {
      try {
        if (closed) throw closedError();
        checkCall(call);
        if (call?.abortSignal?.aborted) throw abortedError(call.abortSignal);
        // Core NATS waits for nothing, but a limit of 0 is over before the call began: Timeout
        // with nothing sent, as every other binding, not a message sent past it.
        if (call?.timeoutMs === 0) throw zeroTimeoutError(call.subject ?? options.subject);
        // nats.js would drop it after publish() reported it handed over.
        if (isReconnecting(nc)) throw reconnectingError();
        if (Array.isArray(events)) {
          // Encode everything first, so that a bad event fails the call before anything is sent.
          const prepared = (events as readonly CloudEventLike[]).map((e) => prepare(e, call));
          for (const p of prepared) send(p);
        } else {
          send(prepare(events as CloudEventLike, call));
        }
        return RESOLVED;
      } catch (err) {
        return Promise.reject(err);
      }
    },
    async flush(flushOptions = {}) {
      if (closed) throw closedError();
      checkTimeOption("timeoutMs", flushOptions.timeoutMs);
      const upTo = handed;
      const timeoutMs =
        flushOptions.timeoutMs ?? options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
      let answered: true | undefined;
      try {
        // A server that is up but does not answer would hold the round trip until nats.js's
        // ping checks give the connection up (minutes by default).
        answered = await withinTime(
          nc.flush().then(() => true as const),
          timeoutMs,
        );
      } catch (err) {
        const translated = translateNatsError(err, "publish");
        if (translated.code === "Closed") throw translated;
        // A round trip fails when the connection drops under it, or was begun while away.
        throw lostError(takeLost(), err);
      }
      if (answered === undefined) {
        const count = mayBeLost + handed - confirmed;
        throw new PosthornError(
          "Timeout",
          `the NATS server did not answer the flush round trip within ${timeoutMs} ms; ${count} message${count === 1 ? "" : "s"} published since the last confirmed flush ${count === 1 ? "is" : "are"} not confirmed`,
          { retryable: true },
        );
      }
      confirm(upTo);
    },
    close() {
      closed = true;
      closing ??= (async () => {
        const upTo = handed;
        await confirmPublished(
          nc,
          options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS,
          () => mayBeLost + handed - confirmed,
        );
        confirm(upTo);
      })();
      return closing;
    },
  };
}

/**
 * The error of a flush or close after the connection dropped: `count` messages published since
 * the last confirmed flush may be lost. Not retryable when there are any: calling again does not
 * bring them back (publish them again instead).
 */
function lostError(count: number, cause: unknown): PosthornError {
  const options = cause === undefined ? {} : { cause };
  if (count === 0) {
    const why = cause instanceof Error ? cause.message : String(cause);
    return new PosthornError(
      "ConnectionFailed",
      `the NATS flush round trip failed: ${why}`,
      options,
    );
  }
  return new PosthornError(
    "ConnectionFailed",
    `${count} message${count === 1 ? "" : "s"} published since the last confirmed flush may be lost: the NATS connection dropped before the server confirmed ${count === 1 ? "it" : "them"} (core NATS is at-most-once)`,
    { ...options, retryable: false },
  );
}

/**
 * Waits until the server has everything published on `nc` so far (the answer to a round trip),
 * for at most `timeoutMs`. nats.js fails a round trip begun while it reconnects, so a failed one
 * is tried again, every 100 ms, until the time is up. `unconfirmed` counts, for the error, the
 * messages that may be lost.
 */
async function confirmPublished(
  nc: NatsConnectionLike,
  timeoutMs: number,
  unconfirmed: () => number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let failure: unknown;
  for (;;) {
    if (nc.isClosed()) {
      // Closed by its owner (nats.js flushes first) or given up on after an error, which it
      // resolves closed() with (v2 and v3, read only when it is there).
      const why = await whenClosed(nc);
      if (why instanceof Error) failure = why;
      else return;
      break;
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    // A round trip that fails later, after the time ran out, is caught here all the same.
    const flushed = nc.flush().then(
      () => "answered" as const,
      (err: unknown) => {
        failure = err;
        return "failed" as const;
      },
    );
    const outcome = (await withinTime(flushed, left)) ?? "late";
    if (outcome === "answered") return;
    if (outcome === "failed") {
      await new Promise((resolve) => setTimeout(resolve, Math.min(100, deadline - Date.now())));
    }
  }
  const why =
    failure === undefined
      ? "no answer"
      : failure instanceof Error
        ? failure.message
        : String(failure);
  const count = unconfirmed();
  const lost =
    count === 0
      ? ""
      : `; ${count} message${count === 1 ? "" : "s"} published since the last confirmed flush may be lost`;
  throw new PosthornError(
    "ConnectionFailed",
    `the NATS server did not confirm what was published within ${timeoutMs} ms of close() (${why})${lost}`,
    { ...(failure === undefined ? {} : { cause: failure }), retryable: true },
  );
}

/**
 * What `work` resolves to, or `undefined` when `ms` passed first (no limit past what a timer can
 * hold, `Infinity` included: such a timer would fire at once). Rejects as `work` does.
 */
async function withinTime<T>(work: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<undefined>((resolve) => {
        timer = limitTimer(() => resolve(undefined), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** What a JetStream publish resolves to, for callers that want the stream's answer. */
export interface JetStreamPublisher extends Publisher<NatsPublishOptions> {
  /**
   * Publishes one event and resolves with the stream's acknowledgement: the stream, the sequence,
   * and whether the stream recognised it as a duplicate of an event inside its duplicate window.
   *
   * @throws {@link PosthornError} `PublishRejected`, `Timeout`, `PayloadTooLarge`, `Closed`,
   *   `Aborted`, `ConnectionFailed` while the connection reconnects
   */
  publishWithAck(
    event: CloudEventLike,
    options?: NatsPublishOptions,
  ): Promise<{
    /** The stream that stored the event. */
    stream: string;
    /** Its sequence number in the stream. */
    sequence: number;
    /** Whether the stream had already stored an event with this message ID. */
    duplicate: boolean;
  }>;
}

/** A JetStream message ready to send: encoded, its subject and message id chosen. */
interface WithId extends Prepared {
  readonly id: string | undefined;
}

/** A PubAck awaited, in the JetStream publisher's {@link SlotSet}. */
interface AwaitedAck extends Slotted {
  /** Settles (never rejects) when the PubAck came or the wait failed. */
  readonly ack: Promise<unknown>;
}

/**
 * A publisher on JetStream: each publish waits for the stream's acknowledgement (`PubAck`), and
 * sets the message id (`Nats-Msg-Id`) from the event `source` and `id`, so re-publishing an event inside the
 * stream's duplicate window stores it once. A subject no stream listens on is `PublishRejected`.
 * While the connection reconnects, a publish is refused with `ConnectionFailed` (retryable), not
 * sent to be dropped by nats.js and end as a `Timeout`.
 *
 * @param js - a JetStream client (`jetstream(nc)` of `@nats-io/jetstream`, or `nc.jetstream()` of `nats`)
 * @param options - subject, mode, format, message id, timeout
 * @throws {@link PosthornError} `NotSupported` for structured mode without a format, a fixed
 *   `subject` NATS cannot publish to (a `*` or `>` token, white space, a control character, or
 *   empty; `attribute` `subject`), a time limit that is not a number of 0 or more, or a count or
 *   size that is not a whole number (a per-call `timeoutMs` or `subject` is checked likewise, and
 *   the call rejects)
 * @example
 * ```ts
 * const publisher = jetStreamPublisher(jetstream(nc), { subject: "jobs.resize" });
 * await publisher.publish(event); // resolves once the stream stored it
 * ```
 */
export function jetStreamPublisher(
  js: JetStreamClientLike,
  options: JetStreamPublisherOptions,
): JetStreamPublisher {
  checkFormat(options);
  checkTimeOption("timeoutMs", options.timeoutMs);
  checkCountOption("maxInFlight", options.maxInFlight);
  const nc = connectionOf(js);
  const prepare = preparer(options, () => nc?.info?.max_payload);
  // CloudEvents 3.1.1: source and id together identify an event; two sources may use one id.
  // Percent-encoded, neither holds a space, so the one between them cannot be read two ways.
  const messageId =
    options.messageId ??
    ((e: CloudEvent) =>
      `${encodeHeaderValue(e.source, "source")} ${encodeHeaderValue(e.id, "id")}`);
  /**
   * Encodes an event and takes its message id, before anything of the call is sent: a
   * `messageId` that throws (your code) is `InvalidEvent`, `attribute` `messageId`, as a
   * throwing `subject` function is; in an array it used to throw once the events before it were
   * published, and its raw error.
   */
  const prepareWithId = (input: CloudEventLike, call: NatsPublishOptions | undefined): WithId => {
    const p = prepare(input, call);
    let id: string | undefined;
    try {
      id = messageId(p.event);
    } catch (err) {
      throw thrownFor(
        err,
        "the messageId function",
        p.event.id,
        "messageId",
        "; nothing was published",
      );
    }
    return { event: p.event, subject: p.subject, message: p.message, id };
  };
  const maxInFlight = options.maxInFlight ?? 256;
  // The PubAcks close() waits for (SlotSet: one add and one delete per message).
  const inFlight = new SlotSet<AwaitedAck>();
  let closed = false;

  // A limit of 0 is over before any PubAck could come: Timeout with nothing sent, as over HTTP,
  // rather than a message the stream may store after the caller was told Timeout.
  const checkZeroTimeout = (call: NatsPublishOptions | undefined): void => {
    if ((call?.timeoutMs ?? options.timeoutMs) === 0) {
      throw zeroTimeoutError(call?.subject ?? options.subject);
    }
  };

  /**
   * Publishes one prepared message and waits for its acknowledgement, or for `aborted` (an array
   * publish's one abort for all its messages) or else the call's own signal.
   */
  const send = async (
    p: WithId,
    call: NatsPublishOptions | undefined,
    aborted?: Promise<never>,
  ): Promise<PubAckLike> => {
    const id = p.id;
    // nats.js hands the limit to setTimeout, which fires after 1 ms for anything past
    // MAX_TIMER_MS (Infinity included): every publish failed with Timeout at once, and the stream
    // stored it all the same. The longest timer is the nearest nats.js has to no limit.
    const timeout = Math.min(call?.timeoutMs ?? options.timeoutMs ?? 5000, MAX_TIMER_MS);
    const publishOptions: { headers: NatsHeaders; timeout: number; msgID?: string } = {
      headers: p.message.headers,
      timeout,
    };
    if (id !== undefined) publishOptions.msgID = id;
    // Sent while the connection is away, the request would be dropped at the reconnection and
    // end as a Timeout ("may be stored"); refused now, it is known not to be.
    if (isReconnecting(nc)) throw reconnectingError();
    const ack = js.publish(p.subject, p.message.data, publishOptions);
    const tracked: AwaitedAck = { slot: -1, ack: ack.catch(() => undefined) };
    inFlight.add(tracked);
    try {
      const signal = call?.abortSignal;
      if (aborted) return await Promise.race([ack, aborted]);
      return await (signal
        ? settleWithin(ack, { signal, aborted: () => abortedError(signal) })
        : ack);
    } catch (err) {
      throw noStreamError(err, p.subject) ?? translateNatsError(err, "publish");
    } finally {
      inFlight.delete(tracked);
    }
  };

  const publishWithAck: JetStreamPublisher["publishWithAck"] = async (event, call) => {
    if (closed) throw closedError();
    checkCall(call);
    if (call?.abortSignal?.aborted) throw abortedError(call.abortSignal);
    checkZeroTimeout(call);
    const ack = await send(prepareWithId(event, call), call);
    return { stream: ack.stream, sequence: ack.seq, duplicate: ack.duplicate };
  };

  return {
    publishWithAck,
    async publish(events, call) {
      if (!Array.isArray(events)) {
        await publishWithAck(events as CloudEventLike, call);
        return;
      }
      if (closed) throw closedError();
      checkCall(call);
      if (call?.abortSignal?.aborted) throw abortedError(call.abortSignal);
      checkZeroTimeout(call);
      const prepared = (events as readonly CloudEventLike[]).map((e) => prepareWithId(e, call));
      // One listener on the caller's signal for the whole array: one per message in flight (up
      // to maxInFlight) would pass Node's limit of ten per signal, and it warns of a leak.
      const signal = call?.abortSignal;
      let stopListening: (() => void) | undefined;
      const aborted =
        signal &&
        new Promise<never>((_, reject) => {
          const onAbort = () => reject(abortedError(signal));
          signal.addEventListener("abort", onAbort, { once: true });
          stopListening = () => signal.removeEventListener("abort", onAbort);
        });
      aborted?.catch(() => {});
      // Pipelined: up to maxInFlight acknowledgements outstanding; the first failure is thrown
      // after every started publish has settled, so none is left unobserved.
      let next = 0;
      let failure: unknown;
      const worker = async (): Promise<void> => {
        while (next < prepared.length && failure === undefined) {
          const p = prepared[next++] as WithId;
          try {
            await send(p, call, aborted);
          } catch (err) {
            failure ??= err;
          }
        }
      };
      try {
        await Promise.all(
          Array.from({ length: Math.min(maxInFlight, prepared.length) }, () => worker()),
        );
      } finally {
        stopListening?.();
      }
      if (failure !== undefined) throw failure;
    },
    async close() {
      closed = true;
      await Promise.all(Array.from(inFlight, (a) => a.ack));
    },
  };
}
