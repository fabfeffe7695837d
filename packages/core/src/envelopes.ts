import type { PosthornError } from "./errors.js";
import type { CloudEvent, CloudEventLike } from "./event.js";

/** How an event is laid onto a transport message (the CloudEvents binding specs' "content modes"). */
export type ContentMode = "binary" | "structured" | "batch";

/** A value a transport property or header can hold after mapping. */
export type PropertyValue = string | number | boolean | bigint | Uint8Array | Date | null;

/**
 * A transport message reduced to what every transport has: a body, its content type, and
 * application properties (HTTP and Kafka headers, AMQP application properties, MQTT user
 * properties, NATS headers). Non-CloudEvents traffic arrives as a `Message`.
 */
export interface Message<T = Uint8Array> {
  /** The payload. */
  readonly body: T;
  /** The content type, when the transport carried one. */
  readonly contentType?: string;
  /** Properties or headers by name, as the transport delivered them (names as received). */
  readonly properties: Readonly<Record<string, PropertyValue | readonly PropertyValue[]>>;
  /** Transport-specific addressing and metadata (topic, subject, key, partition, offset, ...). */
  readonly metadata?: Readonly<Record<string, unknown>>;
}

/** Options for {@link Delivery.release}. */
export interface ReleaseOptions {
  /** Ask the transport to redeliver no sooner than this. Only where `capabilities.releaseDelay`. */
  delayMs?: number;
}

/** How a transport supports each settlement, read from one table per binding. */
export interface SettlementCapabilities {
  /** `native`: the transport redelivers; `emulated`: the binding does (seek, withheld ack); `none`. */
  readonly release: "native" | "emulated" | "none";
  /** Whether `release({ delayMs })` is honoured. */
  readonly releaseDelay: boolean;
  /** `native`: the broker dead-letters; `dead-letter-topic`: the binding publishes to one; `none`. */
  readonly reject: "native" | "dead-letter-topic" | "none";
  /** Whether `inProgress()` extends the time the consumer owns the delivery. */
  readonly inProgress: boolean;
  /** Where the delivery count comes from. */
  readonly deliveryCount: "native" | "attribute" | "none";
}

/**
 * One received message or event, owned by the consumer until settled. A delivery always has the
 * raw `message`; `event` is set when it decoded as a CloudEvent, `error` when it claimed to be one
 * but could not be decoded (reject it, or inspect the message).
 */
export interface Delivery<T = unknown> {
  /** The transport message as received. */
  readonly message: Message;
  /** The decoded event, when the message is a valid CloudEvent. */
  readonly event: CloudEvent<T> | undefined;
  /** Why a message that looked like a CloudEvent could not be decoded. */
  readonly error: PosthornError | undefined;
  /** How many times this message has been delivered, counting this one (1 on first delivery). */
  readonly deliveryCount: number;
  /** What settlement this transport can do. */
  readonly capabilities: SettlementCapabilities;
  /** Whether accept, release or reject has been called. */
  readonly settled: boolean;
  /** Done with it: the transport forgets it (ack, commit, 2xx). */
  accept(): Promise<void>;
  /**
   * Not done: deliver it again, to this or another consumer.
   *
   * @throws {@link PosthornError} `NotSupported` where the transport cannot redeliver
   */
  release(options?: ReleaseOptions): Promise<void>;
  /**
   * Cannot be done: dead-letter it.
   *
   * @throws {@link PosthornError} `NotSupported` where the transport has no dead-letter path
   */
  reject(reason?: string | Error): Promise<void>;
  /**
   * Still working on it: extend the consumer's ownership (JetStream `working`).
   *
   * @throws {@link PosthornError} `NotSupported` where the transport cannot
   */
  inProgress(): Promise<void>;
}

/**
 * A job: a delivery of a CloudEvent that exactly one of several competing consumers owns and
 * settles. `attempt` is the delivery count, from the transport's own counter where it has one.
 */
export interface Job<T = unknown> extends Delivery<T> {
  /** The decoded event; a job always has one. */
  readonly event: CloudEvent<T>;
  /** 1 on the first attempt. */
  readonly attempt: number;
}

/**
 * Views a delivery as a job when it carries a valid event. The job settles the delivery itself
 * (it reads and calls through to it), and `attempt` is its `deliveryCount`.
 *
 * @param delivery - a delivery from any subscriber
 * @returns the job, or `undefined` when the delivery has no event
 */
export function asJob<T>(delivery: Delivery<T>): Job<T> | undefined {
  if (delivery.event === undefined) return undefined;
  return Object.assign(Object.create(delivery) as Delivery<T>, {
    attempt: delivery.deliveryCount,
  }) as Job<T>;
}

/** Options every publisher accepts per call. */
export interface PublishOptions {
  /** Content mode for this call; defaults to the publisher's. */
  mode?: ContentMode;
  /** Cancels waiting for the acknowledgement. */
  abortSignal?: AbortSignal;
  /**
   * The longest the whole `publish()` call may take, retries and backoff included. When it
   * passes, the call rejects with `Timeout`. The message may still be delivered: a timeout says
   * nothing about whether the broker got it.
   *
   * The same meaning holds on every transport; each binding documents its default (some have
   * none, and then wait as long as their client does). A transport without acknowledgement (core
   * NATS) settles once it has handed over the bytes, and so acts only on 0. `Infinity` (or
   * anything past `MAX_TIMER_MS`, about 24.8 days) sets no limit, here and in every binding's
   * other time limits. 0 is a limit already over: the call rejects with `Timeout` at once, with
   * nothing sent, on every binding. `NaN`, a negative number or anything not a number fails the call with
   * `NotSupported` before anything is sent, as such a value of any numeric option fails the
   * factory that takes it (core's `checkTimeOption` and `checkCountOption`).
   */
  timeoutMs?: number;
}

/** Sends events (or batches) over one transport destination. */
export interface Publisher<O extends PublishOptions = PublishOptions> {
  /**
   * Sends one event or a batch and resolves when the transport acknowledged it at the promised
   * level (broker ack, HTTP 2xx, ...).
   *
   * An array is validated whole first: every event is encoded before any is sent, so an event
   * that cannot be encoded (`InvalidEvent`, ...) fails the call with nothing sent. Past that, an
   * array is not atomic unless the transport makes it one message (an HTTP batch): when a send
   * fails, others of the array may have been sent, and the call rejects with the first failure.
   *
   * @throws {@link PosthornError} `PublishRejected`, `ConnectionFailed`, `Timeout`, `Closed`,
   *   `InvalidEvent`, `NotSupported` (an option the transport cannot honour), ...
   */
  publish(events: CloudEventLike | readonly CloudEventLike[], options?: O): Promise<void>;
  /** Waits for in-flight publishes, then releases the publisher's resources. Idempotent. */
  close(): Promise<void>;
}

/**
 * Receives deliveries from one transport source, as an async iterable.
 *
 * Leaving iteration (`break`, `return` or a throw out of a `for await` loop, or calling the
 * iterator's `return()`) closes the subscriber, as `close()` does, and the loop goes on only once
 * it is closed. A subscriber is iterated once: to stop for a while and go on later, pull with
 * the iterator's `next()` instead of a loop.
 */
export interface Subscriber<T = unknown> extends AsyncIterable<Delivery<T>> {
  /** What settlement this subscriber's deliveries support. */
  readonly capabilities: SettlementCapabilities;
  /**
   * Resolves once the subscription is in place on the broker: a message published after it
   * resolves is delivered to this subscriber (on a queue shared by several consumers, to one of
   * them). Rejects with a {@link PosthornError} (`ConnectionFailed`, `Closed`, ...) when the
   * subscription cannot be made; iteration then fails with the same error. Already resolved where
   * nothing needs to be set up (a subscriber that is only returned once subscribed, an HTTP
   * receiver, an open WebSocket). The one await that works on every transport:
   *
   * @example
   * ```ts
   * const subscriber = natsSubscriber(nc, { subject: "orders.>" });
   * await subscriber.ready;
   * await publisher.publish(event); // delivered to subscriber
   * ```
   */
  readonly ready: Promise<void>;
  /**
   * Stops receiving; unsettled deliveries are released where the transport can, and iteration
   * ends. Idempotent: a second call (or leaving iteration after it) waits for the same close.
   */
  close(): Promise<void>;
}
