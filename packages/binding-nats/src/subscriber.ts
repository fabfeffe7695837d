import {
  AsyncQueue,
  checkCountOption,
  checkTimeOption,
  closeOnReturn,
  corkForThisTick,
  createDelivery,
  type Delivery,
  Drain,
  limitTimer,
  MAX_TIMER_MS,
  PosthornError,
  quoted,
  type SettlementCapabilities,
  type Subscriber,
} from "@posthorn/core";
import {
  JETSTREAM_CAPABILITIES,
  NATS_CORE_CAPABILITIES,
  NATS_CORE_UNSUPPORTED,
} from "./capabilities.js";
import {
  type ConsumerLike,
  type ConsumerMessagesLike,
  connectionEnding,
  connectionOf,
  isReconnecting,
  type JetStreamClientLike,
  type JsMsgLike,
  type NatsConnectionLike,
  type NatsMsgLike,
  reconnected,
  socketOf,
  whenClosed,
} from "./client.js";
import { consumerLookupError, translateNatsError } from "./errors.js";
import { type NatsDecodeOptions, receiveNatsMessage } from "./from-message.js";

/** Options for {@link natsSubscriber}. */
export interface NatsSubscriberOptions extends NatsDecodeOptions {
  /** The subject (wildcards `*` and `>` allowed). */
  subject: string;
  /**
   * A queue group: subscribers sharing it compete, and each message goes to one of them
   * (competing consumers on core NATS, still at-most-once). One or more characters, none of
   * them white space or a control character (else `NotSupported`).
   */
  queue?: string;
  /**
   * Most deliveries kept waiting for the iterator to pull them. Core NATS has no flow control: the
   * server sends as fast as it can, and a consumer that falls behind cannot slow it down. Past
   * this many, a message that arrives is dropped (before it is decoded) and counted in `dropped`,
   * as nats-server itself drops messages for a slow consumer; at-most-once delivery allows it, and
   * it keeps the subscriber's memory bounded. Default {@link DEFAULT_MAX_PENDING}; `Infinity`
   * for no limit.
   */
  maxPending?: number;
  /**
   * Called for each message dropped because `maxPending` deliveries were waiting, with the total.
   * It must not throw: what it throws ends this subscriber (iteration fails with `NotSupported`,
   * `attribute` `onDrop`, the thrown error as `cause`, after the deliveries waiting), never the
   * connection.
   */
  onDrop?: (dropped: number) => void;
}

/** The default `maxPending` of {@link natsSubscriber}: 65,536 deliveries, NATS clients' usual limit. */
export const DEFAULT_MAX_PENDING = 65_536;

/** A core NATS subscriber. */
export interface NatsSubscriber<T = unknown> extends Subscriber<T> {
  /** How many deliveries wait for the iterator to pull them. */
  readonly pending: number;
  /** How many messages were dropped because `maxPending` deliveries were waiting. */
  readonly dropped: number;
}

/** Options for {@link jetStreamSubscriber}. */
export interface JetStreamSubscriberOptions extends NatsDecodeOptions {
  /** The stream. */
  stream: string;
  /**
   * The durable consumer to read from, created beforehand (with explicit acks) by the application
   * or its deployment. Several subscribers on one durable consumer share its messages. Not an
   * ordered consumer: an empty or missing name is `NotSupported`.
   */
  consumer: string;
  /**
   * How many messages the client pulls ahead. Default 256. The server's ack wait of a message
   * runs from when it is sent; the subscriber tells the server (+WPI) that the messages it holds
   * and has not handed out are in progress, each within half the consumer's `ack_wait`, so that
   * none is sent again while it waits here. They are held for as long as they wait, away from
   * other subscribers on the consumer: a lower `maxMessages` shares a slow backlog more evenly.
   */
  maxMessages?: number;
  /** How long each pull request waits on the server. Default the client's (30 s). */
  expiresMs?: number;
  /**
   * Whether `accept()` waits for the server to confirm the ack (`ackAck`), so that a resolved
   * `accept()` means the message will not come back. Default `false`: acks are sent and not
   * confirmed, like nats.js does by default.
   */
  confirmAck?: boolean;
  /**
   * Whether `reject(reason)` sends the reason with `+TERM`. nats-server before 2.10 does not
   * understand a reason and treats `+TERM <reason>` as no acknowledgement at all, redelivering the
   * message; the default is to send a reason only when the server says it is 2.10 or later.
   */
  termWithReason?: boolean;
  /**
   * On `close()`, wait up to this long for deliveries in the application's hands to settle:
   * `accept()`, `release()`, `reject()` and `inProgress()` reach the server meanwhile, and what is
   * still unsettled afterwards is naked. The wait ends early when the connection closes. Default 0.
   */
  drainTimeoutMs?: number;
  /**
   * On `close()`, how long to wait for each round trip to the server: the one that confirms the
   * server stopped sending to this subscriber (messages it sent before are received and naked),
   * and the one after the naks. A server that does not answer in time is not waited for again,
   * and a message it sends later is dropped and comes back after the consumer's ack wait. Default
   * {@link DEFAULT_STOP_TIMEOUT_MS}.
   */
  stopTimeoutMs?: number;
}

/** The default `stopTimeoutMs` of {@link jetStreamSubscriber}: 5 seconds. */
export const DEFAULT_STOP_TIMEOUT_MS = 5000;

const noop = (): void => {};

/** nats-server's default `ack_wait`: 30 seconds. */
const DEFAULT_ACK_WAIT_MS = 30_000;

/**
 * Why the connection under a subscriber ended, once it has: nats.js closes every subscription
 * first, then resolves `closed()` (v2 and v3, read only when it is there) with the error it gave
 * the connection up on (reconnect attempts exhausted, a fatal protocol error), or with nothing
 * when the application closed it (`nc.close()`, `nc.drain()`). The first is `ConnectionFailed`
 * with that error as `cause`, the second `Closed`, as in the AMQP and Kafka bindings.
 * `undefined` for a client without `closed()`: iteration then just ends.
 */
async function connectionEnd(
  nc: NatsConnectionLike | undefined,
  what: string,
): Promise<PosthornError | undefined> {
  const closed = whenClosed(nc);
  if (closed === undefined) return undefined;
  const why = await closed.then(
    (result) => result,
    (err: unknown) => err,
  );
  if (why instanceof Error) {
    const translated = translateNatsError(why, "subscribe");
    return new PosthornError(
      "ConnectionFailed",
      `the NATS connection was lost for good (nats.js gave it up: ${why.message}), which ended ${what}: connect again and make a new subscriber`,
      {
        cause: why,
        retryable: translated.retryable,
        ...(translated.protocolCode === undefined ? {} : { protocolCode: translated.protocolCode }),
      },
    );
  }
  return new PosthornError("Closed", `the application closed the NATS connection under ${what}`);
}

// The decoding limits both subscribers take, checked once when the subscriber is made.
function checkDecodeLimits(options: NatsDecodeOptions): void {
  checkCountOption("maxPayloadBytes", options.maxPayloadBytes, 0);
  checkCountOption("maxHeaders", options.maxHeaders, 0);
  checkCountOption("json.maxDepth", options.json?.maxDepth, 0);
  checkCountOption("maxJsonDepth", options.maxJsonDepth, 0);
}

/**
 * Refuses a queue group name the `SUB` line cannot carry. Neither nats.js line checks it: it is
 * written into the line as it is, so white space split the line (the server called it a protocol
 * error and dropped the whole connection), a CR or LF ended it and made what followed a command
 * of its own (a `PUB` in it was published), and `""` was taken for no group at all (every member
 * got every message).
 */
function checkQueue(queue: unknown): void {
  if (queue === undefined) return;
  if (typeof queue === "string" && queue.length > 0) {
    let clean = true;
    for (let i = 0; i < queue.length && clean; i++) {
      const c = queue.charCodeAt(i);
      // Space, tab, CR, LF, every other control character, DEL.
      clean = c > 0x20 && c !== 0x7f;
    }
    if (clean) return;
  }
  const shown =
    typeof queue === "string" ? JSON.stringify(queue) : `${typeof queue} ${String(queue)}`;
  throw new PosthornError(
    "NotSupported",
    `queue must be a queue group name of one or more characters, none of them white space or a control character, got ${shown}`,
    { attribute: "queue" },
  );
}

/**
 * A subscriber on core NATS: an async iterable of deliveries. CloudEvents (binary or structured)
 * arrive with `event` set; other messages with only `message`; messages that claim to be
 * CloudEvents but do not decode with `error` set. Core NATS is at-most-once: `accept()` does
 * nothing, and `release()`/`reject()`/`inProgress()` are `NotSupported`
 * ({@link NATS_CORE_CAPABILITIES}). Subscribers in one `queue` group share the messages.
 *
 * `close()` drains the subscription (messages the server already sent are still delivered),
 * then ends iteration once the queued deliveries are consumed. Leaving a `for await` loop
 * closes the subscriber, and so leaves its queue group. At most `maxPending` deliveries
 * wait to be pulled; past that, arriving messages are dropped and counted in `dropped`.
 * When the connection ends under an open subscriber, iteration fails after the deliveries that
 * had arrived: with `ConnectionFailed` (nats.js's error as `cause`) when nats.js gave the
 * connection up, with `Closed` when the application closed it.
 *
 * The subscriber is returned at once, before the server has the subscription: `await
 * subscriber.ready` (a round trip of the connection, `flush()`) before publishing anything it
 * must receive. A drop while nats.js reconnects is waited out: the round trip is made again on
 * the new connection, where nats.js re-sends the subscription.
 *
 * @param nc - a connection from nats.js (v2 or v3)
 * @param options - subject, queue group, formats, extension registry, limits
 * @throws {@link PosthornError} `NotSupported` when `maxPending` is not a whole number of 1 or more
 *   (or `Infinity`), a decoding limit not a whole number of 0 or more, a `subject` nats.js
 *   refuses (empty, or holding white space; `attribute` is `subject`), or a `queue` that is
 *   empty or holds white space or a control character (`attribute` is `queue`: nats.js writes
 *   it into the protocol line unchecked); `ConnectionFailed`
 *   (or the code of the client's error) when subscribing fails; when the connection ends
 *   before the server confirmed the subscription, `ready` rejects (and iteration ends) with
 *   `ConnectionFailed` (nats.js gave it up) or `Closed` (the application closed it) instead
 * @example
 * ```ts
 * const subscriber = natsSubscriber(nc, { subject: "orders.>", formats: [json] });
 * await subscriber.ready;
 * for await (const delivery of subscriber) handle(delivery.event);
 * ```
 */
export function natsSubscriber<T = unknown>(
  nc: NatsConnectionLike,
  options: NatsSubscriberOptions,
): NatsSubscriber<T> {
  checkDecodeLimits(options);
  checkCountOption("maxPending", options.maxPending);
  checkQueue(options.queue);
  const queue = new AsyncQueue<Delivery<T>>();
  const decodeOptions: NatsDecodeOptions = options;
  const maxPending = options.maxPending ?? DEFAULT_MAX_PENDING;
  const onDrop = options.onDrop;
  let dropped = 0;
  const onMessage = (err: Error | null, msg: NatsMsgLike): void => {
    if (err) {
      queue.fail(translateNatsError(err, "subscribe"));
      return;
    }
    if (queue.size >= maxPending) {
      dropped++;
      if (onDrop) {
        // User code, run inside nats.js's message callback: what it throws would reach nats.js,
        // which closes the whole connection over it ("reader closed").
        try {
          onDrop(dropped);
        } catch (err) {
          onDropFailed(err);
        }
      }
      return;
    }
    const received = receiveNatsMessage<T>(
      msg,
      msg.reply ? { reply: msg.reply } : undefined,
      decodeOptions,
    );
    queue.push(
      createDelivery<T>({
        message: received.message,
        event: received.event,
        error: received.error,
        deliveryCount: 1,
        capabilities: NATS_CORE_CAPABILITIES,
        unsupported: NATS_CORE_UNSUPPORTED,
        accept: noop,
      }),
    );
  };
  /**
   * A throwing `onDrop` ends this subscriber, and only it: iteration fails after the deliveries
   * waiting (the way a failure of the subscription itself is reported), and the subscription
   * ends, so that a queue-group member does not go on taking messages nobody reads.
   */
  const onDropFailed = (err: unknown): void => {
    const why = err instanceof Error ? err.message : String(err);
    queue.fail(
      new PosthornError(
        "NotSupported",
        `onDrop threw (${why}) for the subscription to ${options.subject}; the subscriber stopped, its connection is untouched. onDrop must not throw`,
        { attribute: "onDrop", cause: err },
      ),
    );
    sub.unsubscribe();
  };
  let sub: ReturnType<NatsConnectionLike["subscribe"]>;
  try {
    sub = nc.subscribe(options.subject, {
      ...(options.queue === undefined ? {} : { queue: options.queue }),
      callback: onMessage,
    });
  } catch (err) {
    throw translateNatsError(err, "subscribe");
  }
  // subscribe() only queues the SUB line: the server has the subscription once it answered a
  // PING sent after it (a flush), and a message published before then is not delivered. nats.js
  // rejects that flush when the connection drops, and re-sends the SUB on the connection it makes
  // next, so the flush is sent again there: a drop while reconnecting is not the subscriber's end,
  // as it is not after `ready`. nats.js v3 leaves a flush unanswered for good when the connection
  // closes first, so the end of the subscription settles `ready` too. Set up before the handler
  // below, so that the failure, not a plain end, is what iteration sees.
  let confirmed = false;
  const what = `the subscription to ${options.subject}`;
  const ready = new Promise<void>((resolve, reject) => {
    const fail = (error: PosthornError): void => {
      if (confirmed) return;
      confirmed = true;
      queue.fail(error);
      reject(error);
    };
    // Why the subscription cannot be confirmed once the connection ended: given up or closed.
    const ended = async (err: unknown): Promise<PosthornError> =>
      (await connectionEnd(nc, what)) ?? translateNatsError(err, "subscribe");
    const confirm = async (): Promise<void> => {
      for (;;) {
        try {
          await nc.flush();
          break;
        } catch (err) {
          if (confirmed) return;
          if (connectionEnding(nc) || !(await reconnected(nc))) {
            fail(nc.isClosed() ? await ended(err) : translateNatsError(err, "subscribe"));
            return;
          }
        }
      }
      if (confirmed) return;
      confirmed = true;
      resolve();
    };
    void confirm();
    sub.closed.then(
      (result) => {
        if (confirmed) return;
        if (result instanceof Error) fail(translateNatsError(result, "subscribe"));
        else if (closing !== undefined) {
          // close() ends iteration itself, as a plain end.
          confirmed = true;
          reject(new PosthornError("Closed", `${what} was closed before the server confirmed it`));
        } else void ended(undefined).then(fail);
      },
      (err: unknown) => fail(translateNatsError(err, "subscribe")),
    );
  });
  // The failure also ends iteration; `ready` rejecting unobserved must not crash the process.
  ready.catch(noop);
  let closing: Promise<void> | undefined;
  sub.closed.then(
    (result) => {
      // Not yet confirmed: how `ready` fails is how iteration ends.
      if (!confirmed) return;
      if (result instanceof Error) queue.fail(translateNatsError(result, "subscribe"));
      else if (closing !== undefined || queue.ended) queue.end();
      // Not closed by close(): nats.js ended it with the connection. A worker's loop must not
      // stop as if closed normally when nats.js gave the connection up.
      else
        void connectionEnd(nc, `the subscription to ${options.subject}`).then((err) =>
          err === undefined ? queue.end() : queue.fail(err),
        );
    },
    (err: unknown) => queue.fail(translateNatsError(err, "subscribe")),
  );
  const close = (): Promise<void> => {
    closing ??= (async () => {
      if (!nc.isClosed()) {
        try {
          await sub.drain();
        } catch {
          sub.unsubscribe();
        }
      }
      queue.end();
    })();
    return closing;
  };
  return {
    capabilities: NATS_CORE_CAPABILITIES,
    ready,
    get pending() {
      return queue.size;
    },
    get dropped() {
      return dropped;
    },
    // Leaving a for-await loop closes the subscriber: still subscribed, a queue-group member
    // would go on taking its share of the group's messages into a queue nobody reads.
    [Symbol.asyncIterator]: () => closeOnReturn(queue[Symbol.asyncIterator](), close),
    close,
  };
}

/** A JetStream subscriber, with the settlement JetStream supports. */
export interface JetStreamSubscriber<T = unknown> extends Subscriber<T> {
  /** How many deliveries were handed out and are not settled yet. */
  readonly inFlight: number;
}

/**
 * Refuses a consumer whose acknowledgements do not settle one message each: with `ack_policy`
 * `none` the server ignores every ack, nak and term, so `release()` and `reject()` resolved and
 * nothing came back or stopped; with `all` an ack settles every earlier message too, ones other
 * handlers still hold.
 */
async function checkAckPolicy(
  consumer: ConsumerLike,
  options: JetStreamSubscriberOptions,
): Promise<{ maxDeliver?: number; ackWaitMs?: number }> {
  if (typeof consumer.info !== "function") return {};
  const config = (await consumer.info(true)).config;
  const policy = config.ack_policy;
  if (policy === undefined || policy === "explicit") {
    const max = config.max_deliver;
    const wait = config.ack_wait;
    return {
      ...(typeof max === "number" && max > 0 ? { maxDeliver: max } : {}),
      ...(typeof wait === "number" && wait > 0 ? { ackWaitMs: wait / 1e6 } : {}),
    };
  }
  throw new PosthornError(
    "NotSupported",
    `consumer ${quoted(options.consumer)} of stream ${quoted(options.stream)} has ack_policy ${quoted(policy)}: jetStreamSubscriber settles each message on its own and needs ack_policy "explicit" (create the consumer with AckPolicy.Explicit)`,
    { attribute: "consumer", protocolCode: policy },
  );
}

/**
 * Refuses a `consumer` that names no durable consumer. nats.js takes a missing name (or an
 * options object) for an ordered consumer, an ephemeral one with `ack_policy` `none` whose
 * settlements the server ignores; that failed as `ConnectionFailed` with a `TypeError` inside
 * ("Cannot read properties of undefined"), and `""` as `ConnectionFailed` "durable name required".
 */
function checkConsumerName(options: JetStreamSubscriberOptions): void {
  const name: unknown = options.consumer;
  if (typeof name === "string" && name.length > 0) return;
  const shown = typeof name === "string" ? '""' : `${typeof name} ${String(name)}`;
  throw new PosthornError(
    "NotSupported",
    `consumer must name a durable consumer of stream ${quoted(options.stream)} with ack_policy "explicit", got ${shown}: jetStreamSubscriber does not take an ordered consumer, whose acknowledgements the server ignores (read one with nats.js's own consume())`,
    { attribute: "consumer" },
  );
}

/**
 * The longest nak delay nats-server takes, in whole milliseconds. nats.js sends `delayMs` times
 * 10^6 as a JSON number, and the server reads it into a Go `time.Duration`: int64 nanoseconds, at
 * most 9,223,372,036,854,775,807 (about 292 years). One past that, or written as `9.007e+21` (for
 * `Number.MAX_SAFE_INTEGER`, which core allows), did not parse, and the server took the nak for
 * one without a delay: the message came back within milliseconds (nats-server 2.9.10).
 */
const MAX_NAK_DELAY_MS = 9_223_372_036_854;

/**
 * The delay to nak with: whole milliseconds, rounded up (a fraction of a nanosecond, such as
 * 1331.0000000000005 ms from an exponential backoff, is no int64 either, and was redelivered at
 * once too), at most {@link MAX_NAK_DELAY_MS}.
 */
function nakDelayMs(delayMs: number): number {
  return Math.min(Math.ceil(delayMs), MAX_NAK_DELAY_MS);
}

function serverAtLeast210(version: string | undefined): boolean {
  if (!version) return false;
  const [major, minor] = version.split(".").map((n) => Number.parseInt(n, 10));
  return (major ?? 0) > 2 || ((major ?? 0) === 2 && (minor ?? 0) >= 10);
}

/**
 * A subscriber on a durable JetStream consumer: an async iterable of deliveries that must be
 * settled ({@link JETSTREAM_CAPABILITIES}): `accept()` acks, `release({ delayMs })` naks (with
 * that delay, rounded up to whole milliseconds and at most 9,223,372,036,854 ms, the longest
 * nats-server reads), `reject()` terminates, `inProgress()` tells the server the handler is still
 * working (resetting the ack wait). `deliveryCount` is the server's count of deliveries of the
 * message, so a job knows its attempt number. The messages pulled ahead (`maxMessages`) and not
 * handed out yet the subscriber keeps in progress itself (+WPI, each within half the consumer's
 * `ack_wait`), so that none is sent again while it waits; a delivery handed out is the
 * application's to keep in progress.
 *
 * `close()` stops pulling (a round trip, at most `stopTimeoutMs`, so that what the server sent
 * meanwhile is received too) and ends iteration, naks the messages the client had pulled but not
 * yet handed out, waits up to `drainTimeoutMs` (default 0) for the deliveries handed out to be
 * settled, then naks those still unsettled (so another consumer gets them at once rather than
 * after the ack wait; settling one later is `SettlementFailed`). Leaving a `for await` loop
 * closes the subscriber the same way. When the consumer or its stream is deleted, iteration fails
 * with `ConnectionFailed` (not retryable) rather than waiting for it to come back. When the
 * connection ends under an open subscriber, iteration fails after the messages that had arrived:
 * with `ConnectionFailed` (nats.js's error as `cause`) when nats.js gave the connection up, with
 * `Closed` when the application closed it. A settlement
 * made while the connection is closed or reconnecting rejects with `SettlementFailed` (nats.js
 * would write it nowhere, or drop it at the reconnection): the server delivers the message again
 * after the ack wait.
 *
 * @param js - a JetStream client (v2 or v3)
 * @param options - stream, durable consumer, formats, extension registry, limits
 * A consumer with `max_deliver` says so in each delivery's `metadata.maxDeliver`: the delivery
 * whose `deliveryCount` reaches it is the last, and releasing it (or letting its ack wait pass)
 * ends it; the server keeps it in the stream, delivers it no more and publishes a
 * `MAX_DELIVERIES` advisory. Settle such a delivery with `reject()` where it must be seen.
 *
 * @throws {@link PosthornError} when the consumer cannot be found or read; `NotSupported` for a
 *   consumer whose `ack_policy` is not `explicit` (with `none` the server ignores every
 *   settlement; with `all` one ack settles earlier messages too), for a `consumer` that is not a
 *   non-empty string (nats.js would make an ordered consumer) and, before reading it, for a
 *   `maxMessages` that is not a whole number of 1 or more, an `expiresMs` outside
 *   1000 to `MAX_TIMER_MS`, a `drainTimeoutMs` or `stopTimeoutMs` that is not a number of 0 or
 *   more, or a decoding limit that is not a whole number of 0 or more
 * @example
 * ```ts
 * const jobs = await jetStreamSubscriber(jetstream(nc), { stream: "JOBS", consumer: "workers" });
 * for await (const job of jobs) {
 *   try { await work(job.event); await job.accept(); }
 *   catch { await job.release({ delayMs: 5000 }); }
 * }
 * ```
 */
export async function jetStreamSubscriber<T = unknown>(
  js: JetStreamClientLike,
  options: JetStreamSubscriberOptions,
): Promise<JetStreamSubscriber<T>> {
  checkDecodeLimits(options);
  checkCountOption("maxMessages", options.maxMessages, 1, false);
  // nats.js refuses less than a second, and takes 0 and NaN for its default (30 s).
  checkTimeOption("expiresMs", options.expiresMs, 1000, MAX_TIMER_MS);
  checkTimeOption("drainTimeoutMs", options.drainTimeoutMs);
  checkTimeOption("stopTimeoutMs", options.stopTimeoutMs);
  checkConsumerName(options);
  let messages: ConsumerMessagesLike;
  // The consumer's max_deliver, when it has one: the delivery that reaches it is the last.
  let maxDeliver: number | undefined;
  // The consumer's ack_wait (nats-server's default when it cannot be read).
  let ackWaitMs = DEFAULT_ACK_WAIT_MS;
  try {
    const consumer = await js.consumers.get(options.stream, options.consumer);
    const config = await checkAckPolicy(consumer, options);
    maxDeliver = config.maxDeliver;
    ackWaitMs = config.ackWaitMs ?? ackWaitMs;
    messages = await consumer.consume({
      max_messages: options.maxMessages ?? 256,
      abort_on_missing_resource: true,
      ...(options.expiresMs === undefined ? {} : { expires: options.expiresMs }),
    });
  } catch (err) {
    throw consumerLookupError(err, options.stream, options.consumer);
  }
  const nc = connectionOf(js);
  // nats.js v3 ends the iteration when the connection closes, after the messages it holds; v2
  // went on waiting for more, for good. Stopped here as well (a no-op for v3), the same way.
  whenClosed(nc)?.then(() => {
    clearInterval(keeping);
    if (!closed) messages.stop();
  }, noop);
  const termWithReason = options.termWithReason ?? serverAtLeast210(nc?.info?.version);
  const decodeOptions: NatsDecodeOptions = options;
  const unsettled = new Set<Delivery<T>>();
  // What close() waits on for the deliveries handed out.
  const drain = new Drain();
  let closed = false;
  const capabilities: SettlementCapabilities = JETSTREAM_CAPABILITIES;

  /**
   * Throws when `what` (an ack, nak, term or +WPI) cannot reach the server. nats.js writes each
   * through the connection's protocol without looking at it: closed, the write went nowhere, and
   * while reconnecting it was dropped with the outbound buffer at the reconnection. Either way
   * the call returned, the settlement resolved, and the message came back after the ack wait.
   */
  const sendable = (what: string, retryable: boolean): void => {
    if (!nc) return;
    const why = nc.isClosed()
      ? "the NATS connection is closed"
      : isReconnecting(nc)
        ? "the NATS connection is reconnecting, and nats.js drops what is written meanwhile"
        : undefined;
    if (why === undefined) return;
    throw new PosthornError(
      "SettlementFailed",
      `${what} was not sent: ${why}; the server delivers the message again once the consumer's ack wait has passed`,
      { retryable },
    );
  };

  const toDelivery = (msg: JsMsgLike): Delivery<T> => {
    const info = msg.info;
    const { event, error, message } = receiveNatsMessage<T>(
      msg,
      {
        stream: info.stream,
        consumer: info.consumer,
        streamSequence: info.streamSequence,
        deliverySequence: info.deliverySequence,
        pending: info.pending,
        timestampNanos: info.timestampNanos,
        ...(maxDeliver === undefined ? {} : { maxDeliver }),
      },
      decodeOptions,
    );
    let delivery: Delivery<T> | undefined;
    const done = () => {
      if (delivery) unsettled.delete(delivery);
      drain.wake();
      // The settlement's write waits for the tick's others: one system call for them all.
      corkForThisTick(socketOf(nc));
    };
    delivery = createDelivery<T>({
      message,
      event,
      error,
      deliveryCount: info.deliveryCount,
      capabilities,
      async accept() {
        done();
        sendable("the ack", false);
        if (options.confirmAck) {
          let ok: boolean;
          try {
            ok = await msg.ackAck();
          } catch (err) {
            throw translateNatsError(err, "settle");
          }
          if (!ok)
            throw translateNatsError(new Error("the server did not confirm the ack"), "settle");
        } else {
          msg.ack();
        }
      },
      release({ delayMs }) {
        done();
        sendable("the nak", false);
        if (delayMs !== undefined && delayMs > 0) msg.nak(nakDelayMs(delayMs));
        else msg.nak();
      },
      reject(reason) {
        done();
        sendable("the term", false);
        if (termWithReason && reason) msg.term(reason);
        else msg.term();
      },
      inProgress() {
        // The delivery stays unsettled: once the connection is back, this can be called again.
        sendable("the in-progress signal (+WPI)", true);
        msg.working();
      },
    });
    unsettled.add(delivery);
    return delivery;
  };

  // Messages nats.js received and holds, not handed out yet. The server's ack wait of each runs
  // from when it sent it, so one held past the consumer's ack_wait would be sent again while this
  // subscriber holds it and be handled twice (up to maxMessages are pulled ahead). nats.js keeps
  // them in its iterator: queued (`yields` of its QueuedIterator in v2 and v3, read only when it
  // is there, as in releaseBuffered), and in the batch its iterator took from that queue and
  // yields one message per next(). `batch` is that batch when known, `batchNext` the index after
  // the message it yielded last; handedOut finds them after each next(), no timer or closure
  // per message. One timer for them all, keepHeld, tells the server they are in progress (+WPI).
  let batch: unknown[] | undefined;
  let batchNext = 0;
  const queuedOf = (): unknown[] | undefined => {
    const queued = (messages as { yields?: unknown }).yields;
    return Array.isArray(queued) ? queued : undefined;
  };
  // Where `msg` is in `list` from index `from` (messages come out in order, with nats.js's pull
  // requests, functions, between them): sets batchNext after it.
  const findIn = (list: unknown[], from: number, msg: JsMsgLike): boolean => {
    for (let i = from; i < list.length; i++) {
      if (list[i] === msg) {
        batchNext = i + 1;
        return true;
      }
    }
    return false;
  };
  // `msg` was just handed out: it came from the batch nats.js's iterator is going through, or
  // else from what was queued before the call, which the iterator took as its next batch.
  const handedOut = (msg: JsMsgLike, queuedBefore: unknown[] | undefined): void => {
    if (batch !== undefined && findIn(batch, batchNext, msg)) return;
    batch = queuedBefore !== undefined && findIn(queuedBefore, 0, msg) ? queuedBefore : undefined;
  };
  // The newest message held at the previous tick: it and those before it have been held a tick.
  let mark: unknown;
  /**
   * Sends +WPI for the messages held since the previous tick (never for one handed out: that is
   * the application's `inProgress()`). Ticking every quarter of the ack wait, each held message
   * is told in progress within half of it from its arrival, and every quarter after that.
   */
  const keepHeld = (): void => {
    if (closed || (nc && (nc.isClosed() || isReconnecting(nc)))) {
      mark = undefined;
      return;
    }
    const held: JsMsgLike[] = [];
    const queued = queuedOf();
    if (batch !== undefined && batch !== queued) collectMessages(batch, batchNext, held);
    if (queued !== undefined) collectMessages(queued, 0, held);
    const through = mark === undefined ? -1 : held.indexOf(mark as JsMsgLike);
    try {
      for (let i = 0; i <= through; i++) (held[i] as JsMsgLike).working();
    } catch {
      // The connection went meanwhile: the ack wait brings the rest back, as for any delivery.
    }
    mark = held[held.length - 1];
  };
  const keeping = setInterval(keepHeld, Math.min(Math.max(ackWaitMs / 4, 1), MAX_TIMER_MS));
  (keeping as { unref?: () => void }).unref?.();

  let closing: Promise<void> | undefined;
  // Whether iteration already ended with the connection (its error is thrown once).
  let ended = false;
  // The one iterator over nats.js's messages (it allows one), shared with close().
  let source: AsyncIterator<JsMsgLike> | undefined;

  // Messages nats.js pulled ahead and holds, not handed out yet: nak them, so that they go to
  // another consumer now instead of after the ack wait. Runs after stop() (see close()). The
  // iterator still yields the batch it had taken; the rest stays in nats.js's queue (`yields` of
  // its QueuedIterator in v2 and v3, read only when it is there). They are naked newest first:
  // see nakNewestFirst.
  const releaseBuffered = async (): Promise<void> => {
    const taken: JsMsgLike[] = [];
    if (source) {
      for (;;) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const r = await Promise.race([
          source.next(),
          new Promise<undefined>((resolve) => {
            timer = setTimeout(() => resolve(undefined), 100);
          }),
        ]).finally(() => clearTimeout(timer));
        if (r === undefined || r.done) break;
        taken.push(r.value);
      }
    }
    const queued = (messages as { yields?: unknown }).yields;
    if (Array.isArray(queued)) {
      for (const m of queued.splice(0)) {
        if (typeof m === "object" && m !== null && typeof (m as JsMsgLike).nak === "function") {
          taken.push(m as JsMsgLike);
        }
      }
    }
    nakNewestFirst(taken);
  };

  const stopMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  // Whether the server answered close()'s round trips so far: one that did not answer within
  // stopMs is not waited for again.
  let answering = true;
  /**
   * Waits for `work` (a round trip), at most stopMs and not past the connection's end (`closed()`
   * of nats.js v2 and v3, read only when it is there: v3 never answers a flush once closed).
   */
  const roundTrip = async (work: () => Promise<unknown>): Promise<void> => {
    if (!answering || !nc || nc.isClosed()) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const connectionClosed = whenClosed(nc);
    answering = await Promise.race([
      Promise.resolve()
        .then(work)
        .then(
          () => true,
          () => true,
        ),
      new Promise<boolean>((resolve) => {
        timer = limitTimer(() => resolve(false), stopMs);
      }),
      ...(connectionClosed
        ? [
            connectionClosed.then(
              () => false,
              () => false,
            ),
          ]
        : []),
    ]).finally(() => clearTimeout(timer));
  };

  // Stops the server sending. The server goes on answering the pull requests it holds until it
  // has the unsubscription of their inbox, and what it sent to the client before then arrives
  // after a local unsubscribe() and is dropped by nats.js, while the server holds it until the
  // ack wait (244 of 1,000 pulled in a run under the test suite's load). Draining the pull's
  // subscription (`sub` of nats.js v2 and v3's consumer messages, read only when it is there)
  // sends the UNSUB and a PING and keeps receiving until the PONG: nats-server delivers to a
  // subscription only until it processed the UNSUB, and those deliveries come before the PONG.
  // What its consumer sends afterwards matches no subscription, and nats-server (2.9 too) puts
  // a message it could not deliver back for redelivery at once (`didNotDeliver`) and drops a
  // pull request whose inbox has no interest. So every message sent to this subscriber is
  // either received here, to be naked, or back on the server.
  const stopPulling = async (): Promise<void> => {
    const sub = (messages as { sub?: { drain?: unknown } }).sub;
    const drainSub = sub?.drain;
    if (typeof drainSub === "function") {
      await roundTrip(() => drainSub.call(sub));
    } else {
      // Without a subscription to drain, a round trip lets in what the server sent before it.
      await roundTrip(() => (nc ? nc.flush() : Promise.resolve()));
    }
    // stop(), not close(): close() waits for the iterator to be pulled to its end, which a
    // caller that stopped iterating never does; stop() also ends any pending next(). After a
    // drain it only ends iteration; after a drain that timed out it drops the subscription.
    messages.stop();
    // nats.js queues its next pull requests among the messages it holds and sends each when
    // the iterator reaches it, with the inbox read then; releaseBuffered takes those messages
    // through the iterator. Sent with the unsubscribed inbox, such a request took a released
    // message that then came back only after the ack wait, and nats-server 2.9 sent another
    // one twice. Without an inbox (`inbox` of nats.js v2 and v3's consumer messages) the
    // server answers nothing. Blanked only now: while the subscription is there, nats.js tells
    // its status messages from the consumer's by this inbox.
    const held = messages as { inbox?: unknown };
    if (typeof held.inbox === "string") held.inbox = "";
  };

  const close = (): Promise<void> => {
    closing ??= (async () => {
      closed = true;
      clearInterval(keeping);
      await stopPulling();
      await releaseBuffered().catch(() => undefined);
      await roundTrip(() => (nc ? nc.flush() : Promise.resolve()));
      const drainMs = options.drainTimeoutMs ?? 0;
      if (drainMs > 0 && unsettled.size > 0) {
        // A closed connection settles nothing more (`closed()` of nats.js v2 and v3, read only
        // when it is there).
        await drain.wait(drainMs, () => unsettled.size === 0, whenClosed(nc));
      }
      // Newest first, as above. Settled through the delivery, so a later accept() by a handler
      // says SettlementFailed. A connection that is gone cannot nak: the ack wait brings the
      // message back then.
      for (const delivery of [...unsettled].reverse()) {
        if (delivery.settled) continue;
        await delivery.release().catch(() => undefined);
      }
      await roundTrip(() => (nc ? nc.flush() : Promise.resolve()));
    })();
    return closing;
  };

  return {
    capabilities,
    // Returned only once the consumer is found and consuming: nothing left to wait for.
    ready: Promise.resolve(),
    get inFlight() {
      return unsettled.size;
    },
    [Symbol.asyncIterator](): AsyncIterator<Delivery<T>> {
      source ??= messages[Symbol.asyncIterator]();
      const it = source;
      // Leaving a for-await loop closes the subscriber: what it pulled and handed out is naked,
      // instead of waiting out the consumer's ack wait.
      return closeOnReturn(
        {
          next: async (): Promise<IteratorResult<Delivery<T>>> => {
            if (closed) return { value: undefined, done: true };
            let r: IteratorResult<JsMsgLike>;
            const queuedBefore = queuedOf();
            try {
              r = await it.next();
            } catch (err) {
              clearInterval(keeping);
              // nats.js ends iteration with an error when the consumer is deleted (it was told
              // to: abort_on_missing_resource), rather than waiting in silence for it to return.
              throw consumerLookupError(err, options.stream, options.consumer);
            }
            if (!r.done) handedOut(r.value, queuedBefore);
            if (r.done || closed) {
              if (r.done) clearInterval(keeping);
              // A message pulled after close() goes back at once.
              if (!r.done) r.value.nak();
              else if (!closed && !ended && connectionEnding(nc)) {
                // nats.js ends the iteration when the connection closes, after what it had
                // received, the same way whether it gave the connection up or was told to.
                ended = true;
                const err = await connectionEnd(
                  nc,
                  `the subscriber to consumer ${quoted(options.consumer)} of stream ${quoted(options.stream)}`,
                );
                if (err) throw err;
              }
              return { value: undefined, done: true };
            }
            return { value: toDelivery(r.value), done: false };
          },
        },
        close,
      );
    },
    close,
  };
}

/** Appends the JetStream messages of `list` from index `from` (skipping nats.js's functions). */
function collectMessages(list: unknown[], from: number, into: JsMsgLike[]): void {
  for (let i = from; i < list.length; i++) {
    const m = list[i];
    if (typeof m === "object" && m !== null && typeof (m as JsMsgLike).working === "function") {
      into.push(m as JsMsgLike);
    }
  }
}

/**
 * Naks `messages` (in the order they were delivered) newest first. nats-server 2.9 loses track
 * of messages naked oldest first: of three pulled and naked in order, the consumer redelivered
 * the last one twice and the middle one only after the ack wait. Newest first, each comes back
 * once, at once (the test in leave-loop.int.test.ts, with ten).
 */
function nakNewestFirst(messages: readonly JsMsgLike[]): void {
  for (let i = messages.length - 1; i >= 0; i--) (messages[i] as JsMsgLike).nak();
}
