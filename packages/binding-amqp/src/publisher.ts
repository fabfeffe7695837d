import {
  type CloudEventLike,
  checkChoiceOption,
  checkCountOption,
  checkTimeOption,
  corkForThisTick,
  DEFAULT_CLOSE_TIMEOUT_MS,
  Drain,
  MAX_TIMER_MS,
  PosthornError,
  type Publisher,
  type PublishOptions,
  SlotSet,
  type Slotted,
} from "@posthorn/core";
import type { Connection, EventContext, Delivery as RheaDelivery, Sender } from "rhea";
import type { AmqpCodec, AmqpMessage } from "./amqp-message.js";
import { BufferPool } from "./buffer-pool.js";
import {
  applyNoDelay,
  closeLinkAndSession,
  deadConnection,
  observeConnectionLoss,
  resumeWithConnection,
  socketOf,
} from "./connection-events.js";
import { encodeWithPool } from "./encode-message.js";
import { translateAmqpError } from "./errors.js";
import {
  checkAddress,
  checkBinaryOptions,
  checkConnection,
  checkFields,
  checkLinkOptions,
} from "./options.js";
import { type ToAmqpMessageOptions, toAmqpMessage } from "./to-message.js";

/** Options for {@link amqpPublisher}. */
export interface AmqpPublisherOptions extends Omit<ToAmqpMessageOptions, "codec" | "mode"> {
  /** The target address, e.g. `/queue/orders` or `/exchange/events/order.created` on RabbitMQ. */
  address: string;
  /** `binary` (default) or `structured` (then `format` is required). */
  mode?: "binary" | "structured";
  /**
   * Most transfers awaiting the peer's disposition at once: a whole number, 1 or more, or
   * `Infinity` for no limit. Default 1000.
   */
  maxInFlight?: number;
  /**
   * Most publishes waiting for link credit or a free in-flight slot; past it `publish` fails
   * at once (`PublishRejected`, retryable), so a peer that grants no credit cannot make the
   * publisher buffer without bound. 0: a publish that cannot be sent at once (no credit, no free
   * slot, the link not attached yet) fails. `Infinity`: no limit. Default 10,000. An array is
   * taken whole or not at all: one whose events do not all fit fails with nothing sent.
   */
  maxQueued?: number;
  /**
   * How long a publish may wait for credit and the disposition together (`Timeout`; the peer may
   * still have the message). 0 fails every publish at once with `Timeout` and nothing sent.
   * `Infinity`: no limit. Default 30,000 ms (per call: `timeoutMs`).
   */
  timeoutMs?: number;
  /**
   * How long `close()` waits for the publishes still queued or awaiting their disposition,
   * whatever their own `timeoutMs` (which may be `Infinity`). Past it each of them fails with
   * `Timeout` (the peer may or may not have the message) and `close()`, once the link is
   * detached, rejects with `Timeout` saying how many there were. `Infinity` waits as long as
   * the peer does; 0 does not wait. Default {@link DEFAULT_CLOSE_TIMEOUT_MS}.
   */
  closeTimeoutMs?: number;
  /**
   * Whether messages are published durable (the AMQP header's `durable` flag): the broker keeps
   * a durable message in a durable queue across a restart, and drops a transient one (AMQP 1.0
   * 3.2.1 makes a message without the flag transient; RabbitMQ 3.x does so). Default `true`; per
   * call, `fields: { durable }` wins.
   */
  durable?: boolean;
  /**
   * Extra rhea sender options (link name, source, ...). The target's `address` is set here
   * (a `target.address` other than {@link AmqpPublisherOptions.address}, a `target` that is not
   * an object and `target.dynamic: true`, a node the broker would create and name, are
   * `NotSupported`); other target fields are kept: `{ target: { durable: 2 } }` asks for a
   * durable terminus, which RabbitMQ 3.x needs to declare a `/queue/<name>` queue durable. The
   * target's `durable` must be 0, 1 or 2, `expiry_policy` one of `"link-detach"`,
   * `"session-end"`, `"connection-close"`, `"never"` and `timeout` a whole number of seconds
   * (rhea writes them as given: RabbitMQ never answered a `durable` of 7, and a negative
   * `timeout` ended the connection). Of the options that
   * decide settlement, `snd_settle_mode` may be 0 (default: `publish` resolves on the peer's
   * `accepted`), 2 (mixed: rhea sends unsettled, as 0) or 1: pre-settled transfers, at-most-once,
   * `publish` resolving once the transfer is handed to the connection to write, with no outcome
   * from the peer (a refused or lost message is not reported). `rcv_settle_mode` may only be 0,
   * `autosettle` true and `treat_modified_as_released` false; anything else is `NotSupported`,
   * naming the option. The link carries these settle modes itself, whatever rhea's
   * connection-wide `sender_options` say. The link's own `source` is checked too: `durable`,
   * `expiry_policy` and `timeout` as the target's, and `outcomes`, the outcomes the broker may
   * answer a publish with, absent or an array of AMQP's four outcome symbols holding
   * `amqp:accepted:list`, `amqp:rejected:list` and `amqp:released:list` (RabbitMQ 3.10 ends the
   * session for another symbol); its `address`, `dynamic` and `default_outcome` are passed
   * through (RabbitMQ 3.10 ignores them). `capabilities` on either terminus, and the link's
   * `offered_capabilities` and `desired_capabilities`, must be a string or an array of strings
   * (a number threw a `TypeError` out of rhea, or ended the connection);
   * `dynamic_node_properties` is passed through.
   */
  senderOptions?: Record<string, unknown>;
}

/** The shortest time between a sweep that failed publishes with `Timeout` and the next sweep. */
const MIN_SWEEP_GAP_MS = 5;

export { DEFAULT_CLOSE_TIMEOUT_MS };

/** Per-call options of {@link AmqpPublisher.publish}. */
export interface AmqpPublishOptions extends PublishOptions {
  /**
   * AMQP message fields to set besides the binding's, by rhea's names: `subject` (RabbitMQ's
   * routing key on `/exchange/<name>` addresses), `message_id`, `correlation_id`, `ttl`,
   * `durable`, `priority`, ... An unknown name or a value of the wrong type fails the call with
   * `NotSupported`, nothing sent.
   */
  fields?: Readonly<Record<string, unknown>>;
}

/** A publisher of CloudEvents over one AMQP 1.0 sender link. */
export interface AmqpPublisher extends Publisher<AmqpPublishOptions> {
  /** The target address. */
  readonly address: string;
  /**
   * Resolves when the sender link is attached; rejects when the peer refused it, when the
   * connection is lost for good, and with `Closed` when `close()` came before the attach.
   */
  readonly ready: Promise<void>;
}

/** What the link sends for one event. */
interface Encoded {
  /** The message's bytes (with extra fields set, as rhea's encoder wrote them). */
  readonly message: Buffer;
  /** The pool's buffer `message` was written into: handed back once the peer settled it. */
  readonly pooled: Buffer | undefined;
}

interface Job extends Encoded, Slotted {
  readonly resolve: () => void;
  readonly reject: (err: PosthornError) => void;
  /** `Date.now()` past which the publish fails with `Timeout`. */
  readonly deadline: number;
  readonly timeoutMs: number;
  cleanup: (() => void) | undefined;
}

/** A transfer this publisher sent, carrying its publish until the peer settles it. */
type SentDelivery = RheaDelivery & { posthornJob?: Job | undefined };

/** rhea's message encoder, on the connection's container (rhea's `message` module). */
interface MessageEncoder {
  readonly message: { encode(message: AmqpMessage): Buffer };
}

/**
 * Publishes CloudEvents over a rhea connection the application opened, on a sender link of its
 * own. `publish` resolves when the peer settles the transfer `accepted`; `rejected`, `released`
 * and `modified` reject with `PublishRejected` carrying the AMQP condition (`protocolCode`).
 * Sends happen only while the link has credit and fewer than `maxInFlight` transfers are
 * unsettled; other publishes wait in a queue of at most `maxQueued`. A lost connection fails what
 * awaits its disposition with `ConnectionFailed`; one the application closed, with `Closed`.
 * `close()` waits at most `closeTimeoutMs` for what is queued or in flight, then fails it with
 * `Timeout` and rejects with `Timeout` itself.
 *
 * @param connection - an open (or opening) rhea connection
 * @param options - the address and how events are mapped
 * @throws {@link PosthornError} `NotSupported` for a `connection` that is not a rhea
 *   `Connection`, an `address` that is not a non-empty string, an unknown `mode`, `prefix` or
 *   `integerType`, structured mode without a `format`, a `maxInFlight` that is not a whole number of 1
 *   or more, a `maxQueued` that is not a whole number of 0 or more (either may be `Infinity`), or
 *   a `timeoutMs` or `closeTimeoutMs` that is not a number of 0 or more (a per-call `timeoutMs`
 *   is checked likewise, and the call rejects with nothing sent), a `durable` that is not a
 *   boolean, or a settlement or target option of
 *   `senderOptions` the publisher cannot work with (see {@link AmqpPublisherOptions.senderOptions})
 * @example
 * ```ts
 * import rhea from "rhea";
 * const connection = rhea.connect({ host: "127.0.0.1", port: 5672, username: "guest", password: "guest" });
 * const publisher = amqpPublisher(connection, { address: "/queue/orders" });
 * await publisher.publish(event);
 * await publisher.close();
 * ```
 */
export function amqpPublisher(
  connection: Connection,
  options: AmqpPublisherOptions,
): AmqpPublisher {
  checkConnection("amqpPublisher", connection);
  checkAddress("amqpPublisher", options?.address);
  checkChoiceOption("mode", options.mode, ["binary", "structured"]);
  if (options.mode === "structured" && options.format === undefined) {
    throw new PosthornError(
      "NotSupported",
      'amqpPublisher: mode "structured" needs an event format (format: json, from @posthorn/format-json, for one)',
      { attribute: "format" },
    );
  }
  checkBinaryOptions(options);
  checkCountOption("maxInFlight", options.maxInFlight);
  checkCountOption("maxQueued", options.maxQueued, 0);
  checkTimeOption("timeoutMs", options.timeoutMs);
  checkTimeOption("closeTimeoutMs", options.closeTimeoutMs);
  checkLinkOptions("senderOptions", options.senderOptions, options.address);
  if (options.durable !== undefined && typeof options.durable !== "boolean") {
    throw new PosthornError(
      "NotSupported",
      `durable must be a boolean, got ${typeof options.durable === "string" ? `string ${JSON.stringify(options.durable)}` : typeof options.durable}`,
      { attribute: "durable" },
    );
  }
  const durable = options.durable ?? true;
  const codec = (connection as unknown as { container: AmqpCodec }).container;
  const { address, senderOptions, maxInFlight = 1000, maxQueued = 10_000 } = options;
  const defaultTimeoutMs = options.timeoutMs ?? 30_000;
  const closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
  const mapping: ToAmqpMessageOptions = {
    codec,
    mode: options.mode ?? "binary",
    ...(options.format === undefined ? {} : { format: options.format }),
    ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
    ...(options.integerType === undefined ? {} : { integerType: options.integerType }),
    ...(options.registry === undefined ? {} : { registry: options.registry }),
  };
  const what = `publish to ${address}`;
  // At-most-once: transfers go out settled, and the peer sends no outcome to wait for.
  const presettled = senderOptions?.snd_settle_mode === 1;
  const queue: Job[] = [];
  let queueHead = 0;
  // Publishes sent and not yet settled by the peer; each transfer carries its publish
  // (`posthornJob`). A SlotSet rather than a Map keyed by transfer, as in the subscribers.
  const inFlight = new SlotSet<Job>();
  // Encoding buffers of large messages, reused after the peer settled them (see BufferPool).
  const pool = new BufferPool(16 * 1024 * 1024);
  let failure: PosthornError | undefined;
  let closing: Promise<void> | undefined;
  // What close() waits on for the publishes queued or in flight.
  const drain = new Drain();
  const idle = (): boolean => inFlight.size === 0 && queue.length - queueHead === 0;
  // Whether the link is attached on the current connection. rhea keeps a dropped link's credit
  // until it reconnects, and a transfer sent in between goes into a session buffer it then
  // throws away: the publish would wait for a disposition that cannot come.
  let attached = false;

  // A session of its own: RabbitMQ ends the whole session when an address does not exist, and
  // that must not take the application's other links down with it.
  applyNoDelay(connection);
  const session = connection.create_session();
  session.begin();
  const sender: Sender = session.attach_sender({
    ...senderOptions,
    target: { ...(senderOptions?.target as Record<string, unknown> | undefined), address },
    // The settle modes the publisher works with, as checked, whatever the connection's
    // sender_options say: rhea's default mixed (2) unless senderOptions chose.
    snd_settle_mode: senderOptions?.snd_settle_mode ?? 2,
    rcv_settle_mode: 0,
    autosettle: true,
    // rhea reports `modified` as `released` unless told not to; the caller sees which it was.
    treat_modified_as_released: false,
  });
  resumeWithConnection(connection, session);

  let readyResolve!: () => void;
  let readyReject!: (e: unknown) => void;
  const ready = new Promise<void>((resolve, reject) => {
    readyResolve = resolve;
    readyReject = reject;
  });
  ready.catch(() => {});

  const finish = (job: Job): void => {
    job.cleanup?.();
  };

  // One timer for every pending publish, instead of a timer per publish: it is set for the
  // earliest deadline, and a sweep fails every publish past its own and sets it for the next.
  // It used to tick every quarter of the limit (at most 1 s), so a Timeout came up to 25% (or
  // 1 s) late. A sweep that failed publishes is followed by the next at least
  // MIN_SWEEP_GAP_MS later, so publishes whose deadlines fall a millisecond apart do not sweep
  // the whole queue each millisecond.
  let sweeper: ReturnType<typeof setTimeout> | undefined;
  let sweepAt = Number.POSITIVE_INFINITY;
  let lastExpiry = Number.NEGATIVE_INFINITY;
  const stopSweeper = (): void => {
    if (sweeper !== undefined) clearTimeout(sweeper);
    sweeper = undefined;
    sweepAt = Number.POSITIVE_INFINITY;
  };
  const armSweeper = (deadline: number): void => {
    const at = Math.max(deadline, lastExpiry + MIN_SWEEP_GAP_MS);
    if (at >= sweepAt) return;
    if (sweeper !== undefined) clearTimeout(sweeper);
    sweepAt = at;
    // A deadline past what a timer holds is looked at again when the timer fires.
    sweeper = setTimeout(sweep, Math.min(Math.max(at - Date.now(), 0), MAX_TIMER_MS));
  };
  const sweep = (): void => {
    sweeper = undefined;
    sweepAt = Number.POSITIVE_INFINITY;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    const expired: Job[] = [];
    for (const job of inFlight) {
      if (job.deadline <= now) {
        inFlight.delete(job);
        expired.push(job);
      } else if (job.deadline < next) next = job.deadline;
    }
    for (let i = queueHead; i < queue.length; i++) {
      const job = queue[i] as Job;
      if (job.deadline <= now) {
        queue.splice(i--, 1);
        expired.push(job);
      } else if (job.deadline < next) next = job.deadline;
    }
    // Only a sweep that failed publishes holds the next one back: a timer that fired a little
    // before Date.now() reached the deadline is set again for it at once.
    if (expired.length > 0) lastExpiry = now;
    if (next !== Number.POSITIVE_INFINITY) armSweeper(next);
    for (const job of expired) {
      finish(job);
      job.reject(
        new PosthornError(
          "Timeout",
          `${what}: no disposition within ${job.timeoutMs} ms (credit or settlement)`,
        ),
      );
    }
    if (inFlight.size === 0 && queue.length - queueHead === 0) stopSweeper();
    if (expired.length > 0) {
      pump();
      checkDrained();
    }
  };

  const failAll = (err: PosthornError, includeQueued: boolean): void => {
    const jobs = [...inFlight];
    inFlight.clear();
    if (includeQueued) {
      jobs.push(...queue.slice(queueHead));
      queue.length = 0;
      queueHead = 0;
    }
    for (const job of jobs) {
      finish(job);
      job.reject(err);
    }
    checkDrained();
  };

  const checkDrained = (): void => {
    if (!idle()) return;
    stopSweeper();
    drain.wake();
  };

  const pump = (): void => {
    if (!attached) return;
    let sent = false;
    while (queueHead < queue.length && inFlight.size < maxInFlight && sender.sendable()) {
      const job = queue[queueHead] as Job;
      queue[queueHead++] = undefined as unknown as Job;
      if (queueHead > 1024 && queueHead * 2 > queue.length) {
        queue.splice(0, queueHead);
        queueHead = 0;
      }
      let delivery: SentDelivery;
      try {
        delivery = sender.send(job.message, undefined, 0);
      } catch (err) {
        // Nothing went out; the publish must not be left waiting, out of the queue and the map.
        finish(job);
        job.reject(
          new PosthornError("ConnectionFailed", `${what}: rhea could not send the message`, {
            cause: err,
            retryable: false,
          }),
        );
        continue;
      }
      sent = true;
      if (presettled) {
        // Sent: rhea writes it with this tick's frames. (Its buffer is not given back to the
        // pool: rhea holds the bytes until then, and no settlement says when it is done.)
        finish(job);
        job.resolve();
        continue;
      }
      delivery.posthornJob = job;
      inFlight.add(job);
    }
    if (sent) corkForThisTick(socketOf(connection));
  };

  const settleWith = (context: EventContext, outcome?: "rejected" | "released" | "modified") => {
    const delivery = context.delivery as SentDelivery | undefined;
    if (delivery === undefined) return;
    const job = delivery.posthornJob;
    // Not in flight any more: it timed out, was aborted or failed with the connection.
    if (job === undefined || !inFlight.delete(job)) return;
    delivery.posthornJob = undefined;
    finish(job);
    // The peer settled the transfer, so rhea wrote its bytes long ago: the buffer can be reused.
    if (job.pooled !== undefined) pool.give(job.pooled);
    if (outcome === undefined) job.resolve();
    else {
      const state = delivery.remote_state as { error?: unknown } | undefined;
      job.reject(translateAmqpError(state?.error, "publish", what, outcome));
    }
    pump();
    checkDrained();
  };

  sender.on("accepted", (c) => settleWith(c));
  sender.on("rejected", (c) => settleWith(c, "rejected"));
  sender.on("released", (c) => settleWith(c, "released"));
  sender.on("modified", (c) => settleWith(c, "modified"));
  sender.on("sendable", pump);
  sender.on("sender_open", () => {
    attached = true;
    readyResolve();
    pump();
  });
  const onLinkError = (context: EventContext): void => {
    const err = translateAmqpError(context.sender?.error, "link", `the sender link to ${address}`);
    if (!closing) failure = err;
    readyReject(err);
    failAll(closing ? new PosthornError("Closed", "the publisher was closed") : err, true);
  };
  sender.on("sender_error", onLinkError);
  sender.on("sender_close", (context) => {
    if (!closing) onLinkError(context);
  });
  const onSessionEnd = (context: EventContext): void => {
    if (closing) return;
    const err = translateAmqpError(context.session?.error, "link", `the session of ${what}`);
    failure = err;
    readyReject(err);
    failAll(err, true);
  };
  session.on("session_error", onSessionEnd);
  session.on("session_close", onSessionEnd);
  const stopObserving = [
    observeConnectionLoss(connection, ({ error, reconnecting, byApplication }) => {
      attached = false;
      const err = byApplication
        ? new PosthornError(
            "Closed",
            `the application closed the connection carrying ${what}; a publish awaiting its disposition may or may not have arrived`,
          )
        : translateAmqpError(error, "connection", `the connection carrying ${what}`);
      // Transfers not yet settled are lost with the connection; the caller may resend them.
      // Queued publishes wait for the link to be attached again when rhea reconnects.
      failAll(err, !reconnecting);
      if (!reconnecting) {
        failure = err;
        readyReject(err);
      }
    }),
  ];

  const dead = deadConnection(connection, `the publisher to ${address}`);
  if (dead !== undefined) {
    failure = dead;
    readyReject(dead);
  }

  // The mapping options of a call: the publisher's, unless the call asks for another mode.
  const mappingOf = (opts: AmqpPublishOptions): ToAmqpMessageOptions =>
    opts.mode ? { ...mapping, mode: opts.mode } : mapping;

  // One event as what the link sends; throws when the event cannot be encoded.
  const encode = (
    event: CloudEventLike,
    options: ToAmqpMessageOptions,
    fields: Readonly<Record<string, unknown>> | undefined,
  ): Encoded => {
    // null, as undefined: no fields (as before they were checked).
    if (fields !== undefined && fields !== null) {
      checkFields(what, fields);
      const built = toAmqpMessage(event, options);
      for (const key of Object.keys(fields)) {
        built[key] = fields[key];
      }
      if (built.durable === undefined) built.durable = durable;
      // Encoded here, not when the link has credit: what rhea cannot write fails this call, not
      // a socket callback later.
      try {
        return {
          message: (codec as unknown as MessageEncoder).message.encode(built),
          pooled: undefined,
        };
      } catch (err) {
        throw new PosthornError(
          "NotSupported",
          `${what}: rhea could not encode the message with these fields: ${(err as Error)?.message ?? String(err)}`,
          { attribute: "fields", cause: err },
        );
      }
    }
    // The common case skips rhea's generic encoder: the binding writes the bytes itself, large
    // messages into a buffer of the pool.
    const { bytes, pooled } = encodeWithPool(event, options, pool, durable);
    return { message: bytes, pooled };
  };

  // Why nothing can be sent now, or `undefined`.
  const refusal = (opts: AmqpPublishOptions): PosthornError | undefined => {
    if (closing) return new PosthornError("Closed", "the publisher is closed");
    if (failure) return failure;
    if (opts.abortSignal?.aborted) return new PosthornError("Aborted", `${what} was aborted`);
    if (opts.timeoutMs !== undefined) {
      try {
        checkTimeOption("timeoutMs", opts.timeoutMs);
      } catch (err) {
        return err as PosthornError;
      }
    }
    // A limit of 0 is over before the peer could settle anything: Timeout with nothing sent, as
    // over HTTP, rather than a transfer sent that the caller was told failed.
    if ((opts.timeoutMs ?? defaultTimeoutMs) === 0) {
      return new PosthornError("Timeout", `${what}: timeoutMs is 0, nothing was sent`);
    }
    return undefined;
  };

  /**
   * Takes `jobs` out of the queue and the in-flight map, in one pass over each (an aborted array
   * may hold thousands), and rejects them `Aborted`; then sends what may go now.
   */
  const abort = (jobs: ReadonlySet<Job>): void => {
    let kept = queueHead;
    for (let i = queueHead; i < queue.length; i++) {
      const job = queue[i] as Job;
      if (!jobs.has(job)) queue[kept++] = job;
    }
    queue.length = kept;
    for (const job of jobs) inFlight.delete(job);
    for (const job of [...jobs]) {
      finish(job);
      job.reject(new PosthornError("Aborted", `${what} was aborted`));
    }
    pump();
    checkDrained();
  };

  /**
   * How many publishes may be added now: those the link can send at once (attached, nothing
   * waiting, credit and in-flight room) and the room left in the queue.
   */
  const room = (): number => {
    const waiting = queue.length - queueHead;
    const credit = (sender as unknown as { credit?: number }).credit ?? 0;
    const now =
      attached && waiting === 0 && sender.sendable()
        ? Math.max(0, Math.min(credit, maxInFlight - inFlight.size))
        : 0;
    return maxQueued - waiting + now;
  };

  /**
   * Queues one message. With `group` (the jobs of one array publish, which the caller made room
   * for), the caller listens for the abort once for all of them: a listener per message would pass
   * Node's limit of ten per signal, and it warns of a leak.
   */
  const enqueue = (
    { message, pooled }: Encoded,
    opts: AmqpPublishOptions,
    group?: Set<Job>,
  ): Promise<void> => {
    if (
      group === undefined &&
      queue.length - queueHead >= maxQueued &&
      // Nothing waits and the link can take it now: it goes out without waiting (maxQueued 0).
      !(attached && queueHead === queue.length && inFlight.size < maxInFlight && sender.sendable())
    ) {
      return Promise.reject(
        new PosthornError(
          "PublishRejected",
          `${what}: ${maxQueued} publishes already wait for link credit`,
          { retryable: true },
        ),
      );
    }
    const signal = opts.abortSignal;
    return new Promise<void>((resolve, reject) => {
      const timeoutMs = opts.timeoutMs ?? defaultTimeoutMs;
      const finite = Number.isFinite(timeoutMs);
      const job: Job = {
        message,
        pooled,
        resolve,
        reject,
        deadline: finite ? Date.now() + timeoutMs : Number.POSITIVE_INFINITY,
        timeoutMs,
        cleanup: undefined,
        slot: -1,
      };
      if (finite) armSweeper(job.deadline);
      if (group) {
        group.add(job);
      } else if (signal) {
        const onAbort = (): void => abort(new Set([job]));
        signal.addEventListener("abort", onAbort, { once: true });
        job.cleanup = () => signal.removeEventListener("abort", onAbort);
      }
      queue.push(job);
      pump();
    });
  };

  return {
    address,
    ready,
    publish(events, opts = {}) {
      const refused = refusal(opts);
      if (refused) return Promise.reject(refused);
      const options = mappingOf(opts);
      const fields = opts.fields;
      if (!Array.isArray(events)) {
        let encoded: Encoded;
        try {
          encoded = encode(events as CloudEventLike, options, fields);
        } catch (err) {
          return Promise.reject(err);
        }
        return enqueue(encoded, opts);
      }
      // Every event is encoded before any is queued: one that cannot be encoded fails the call
      // with nothing sent.
      const list = events as readonly CloudEventLike[];
      const n = list.length;
      const encoded: Encoded[] = new Array(n);
      try {
        for (let i = 0; i < n; i++) encoded[i] = encode(list[i] as CloudEventLike, options, fields);
      } catch (err) {
        return Promise.reject(err);
      }
      // The array is queued whole or not at all. Refused part-way, the events before the refusal
      // went out while the call failed retryable, and a retry sent them twice.
      const free = room();
      if (n > 0 && n > free) {
        return Promise.reject(
          new PosthornError(
            "PublishRejected",
            `${what}: an array of ${n} events does not fit, room for ${Math.max(free, 0)} (maxQueued ${maxQueued}, ${queue.length - queueHead} publishes already wait for link credit); nothing was sent`,
            { retryable: true },
          ),
        );
      }
      const signal = opts.abortSignal;
      const group = new Set<Job>();
      const sends: Promise<void>[] = new Array(n);
      for (let i = 0; i < n; i++) {
        sends[i] = enqueue(encoded[i] as Encoded, opts, group);
      }
      if (signal && group.size > 0) {
        const onAbort = (): void => abort(group);
        signal.addEventListener("abort", onAbort, { once: true });
        // A job leaves the group when it settles, however; the last one takes the listener away.
        const leave = (job: Job) => () => {
          group.delete(job);
          if (group.size === 0) signal.removeEventListener("abort", onAbort);
        };
        for (const job of group) job.cleanup = leave(job);
      }
      return Promise.all(sends).then(() => undefined);
    },
    close() {
      if (closing) return closing;
      // A close before the link attached: `ready` would never settle otherwise (a no-op once it
      // has).
      readyReject(
        new PosthornError("Closed", "the AMQP publisher was closed before its link attached"),
      );
      closing = (async () => {
        // A lost link or connection fails what is waiting, which ends the wait as well.
        await drain.wait(closeTimeoutMs, idle);
        const unsettled = inFlight.size + queue.length - queueHead;
        if (unsettled > 0) {
          // Nothing may stay pending once the link is detached: no disposition can come then.
          failAll(
            new PosthornError(
              "Timeout",
              `${what}: no disposition within closeTimeoutMs (${closeTimeoutMs} ms) of close(); the peer may or may not have the message`,
            ),
            true,
          );
        }
        for (const stop of stopObserving) stop();
        stopSweeper();
        pool.clear();
        await closeLinkAndSession(connection, session, sender);
        if (unsettled > 0) {
          throw new PosthornError(
            "Timeout",
            `${unsettled} publishes to ${address} were still unsettled after closeTimeoutMs (${closeTimeoutMs} ms); each was rejected with Timeout`,
          );
        }
      })();
      return closing;
    },
  };
}
