import type { CorkableStream } from "@posthorn/core";
import type { NatsHeadersLike } from "./from-message.js";
import type { NatsHeaders } from "./headers.js";

// The few members of nats.js this binding uses, written as structural types so that both the
// `nats` v2 package and the modular v3 clients (`@nats-io/transport-node`, `@nats-io/jetstream`)
// fit, and no client type appears in the public API.

/** The server `INFO` fields the binding reads. */
export interface NatsServerInfoLike {
  /** The largest message the server accepts, in bytes. */
  readonly max_payload: number;
  /** The server's version, e.g. `2.10.22`. */
  readonly version?: string;
  /** Whether the server supports message headers. */
  readonly headers?: boolean;
}

/** A received core NATS message (nats.js `Msg`). */
export interface NatsMsgLike {
  /** The subject it was published to. */
  readonly subject: string;
  /** The subject to answer on, for a request. */
  readonly reply?: string | undefined;
  /** The payload. */
  readonly data: Uint8Array;
  /** The headers, when the message has any. */
  readonly headers?: NatsHeadersLike | undefined;
}

/** A core NATS subscription (nats.js `Subscription`). */
export interface NatsSubscriptionLike {
  /** Ends the subscription at once (or after `max` messages in all). */
  unsubscribe(max?: number): void;
  /** Ends the subscription after the messages already received are handled. */
  drain(): Promise<void>;
  /** Settles when the subscription has ended, for whatever reason. */
  readonly closed: Promise<unknown>;
}

/** Options this binding passes to `subscribe()`. */
export interface NatsSubscribeOptionsLike {
  /** The queue group: each message goes to one member of the group. */
  queue?: string;
  /** Receives each message (or an error) as it arrives, instead of an iterator. */
  callback?: (err: Error | null, msg: NatsMsgLike) => void;
}

/** A connection made with nats.js (`NatsConnection` of `nats` v2 or `@nats-io/transport-node` v3). */
export interface NatsConnectionLike {
  /** The server's `INFO`, once connected. */
  readonly info?: NatsServerInfoLike | undefined;
  /** Queues a message for sending; there is no acknowledgement. */
  publish(
    subject: string,
    payload?: Uint8Array,
    options?: {
      /** The message headers. */
      headers?: NatsHeaders;
    },
  ): void;
  /** Subscribes to a subject (wildcards allowed). */
  subscribe(subject: string, options?: NatsSubscribeOptionsLike): NatsSubscriptionLike;
  /** Resolves when the server has seen everything sent so far. */
  flush(): Promise<void>;
  /** Whether the connection is closed for good. */
  isClosed(): boolean;
}

/** The acknowledgement of a JetStream publish (nats.js `PubAck`). */
export interface PubAckLike {
  /** The stream that stored the message. */
  readonly stream: string;
  /** Its sequence number in the stream. */
  readonly seq: number;
  /** Whether the stream had already stored a message with the same message ID. */
  readonly duplicate: boolean;
}

/** Delivery metadata of a JetStream message (nats.js `DeliveryInfo`). */
export interface JsDeliveryInfoLike {
  /** The stream the message is stored in. */
  readonly stream: string;
  /** The consumer that delivered it. */
  readonly consumer: string;
  /** How many times it has been delivered, this time included. */
  readonly deliveryCount: number;
  /** Its sequence number in the stream. */
  readonly streamSequence: number;
  /** The consumer's count of deliveries, redeliveries included. */
  readonly deliverySequence: number;
  /** How many messages the consumer has yet to deliver. */
  readonly pending: number;
  /** When the message was stored, in nanoseconds since the epoch. */
  readonly timestampNanos: number;
}

/** A message from a JetStream consumer (nats.js `JsMsg`). */
export interface JsMsgLike {
  /** The subject it was published to. */
  readonly subject: string;
  /** The payload. */
  readonly data: Uint8Array;
  /** The headers, when the message has any. */
  readonly headers?: NatsHeadersLike | undefined;
  /** Where it comes from and how often it was delivered. */
  readonly info: JsDeliveryInfoLike;
  /** Acknowledges it: the consumer will not deliver it again. */
  ack(): void;
  /** Asks for redelivery, after `millis` milliseconds when given. */
  nak(millis?: number): void;
  /** Tells the server work goes on, restarting the ack wait. */
  working(): void;
  /** Stops redelivery for good, with an optional reason (servers from 2.11 take it). */
  term(reason?: string): void;
  /** Acknowledges it and resolves with whether the server confirmed the acknowledgement. */
  ackAck(opts?: {
    /** Read by neither `nats` v2 nor `@nats-io/jetstream` v3; the binding never sets it. */
    expect?: number;
    /** How long to wait for the confirmation, in milliseconds. */
    timeout?: number;
  }): Promise<boolean>;
}

/** What `consume()` returns (nats.js `ConsumerMessages`). */
export interface ConsumerMessagesLike extends AsyncIterable<JsMsgLike> {
  /** Stops pulling messages; iteration ends, or fails with `err` when given. */
  stop(err?: Error): void;
  /** Stops pulling messages and resolves once the pull requests are done. */
  close(): Promise<unknown>;
}

/** A JetStream consumer (nats.js `Consumer`). */
export interface ConsumerLike {
  /**
   * The consumer's configuration as the server has it (`cached`: the copy read when the consumer
   * was looked up). Both nats.js lines have it; the binding reads it only where it is there.
   */
  info?(cached?: boolean): Promise<{
    /** The consumer's configuration. */
    readonly config: {
      /** `explicit`, `all` or `none`. */
      readonly ack_policy?: string;
      /** The most deliveries of a message; -1 or 0 for no limit. */
      readonly max_deliver?: number;
      /** How long the server waits for a delivery's acknowledgement, in nanoseconds. */
      readonly ack_wait?: number;
    };
  }>;
  /** Starts pulling messages, which arrive through the returned iterable. */
  consume(options?: {
    /** The most messages fetched ahead, not yet handled. */
    max_messages?: number;
    /** How long one pull request lasts on the server, in milliseconds. */
    expires?: number;
    /** Whether iteration fails when the stream or consumer is deleted, rather than waiting. */
    abort_on_missing_resource?: boolean;
  }): Promise<ConsumerMessagesLike>;
}

/** A JetStream client (`nc.jetstream()` in `nats` v2, `jetstream(nc)` in `@nats-io/jetstream`). */
export interface JetStreamClientLike {
  /** Publishes to a stream's subject; resolves with the stream's acknowledgement. */
  publish(
    subject: string,
    payload?: Uint8Array,
    options?: {
      /** The message ID the stream deduplicates on. */
      msgID?: string;
      /** The message headers. */
      headers?: NatsHeaders;
      /** How long to wait for the acknowledgement, in milliseconds. */
      timeout?: number;
    },
  ): Promise<PubAckLike>;
  /** Looks up consumers. */
  readonly consumers: {
    /** The consumer `name` of `stream` (an ordered consumer when `name` is left out). */
    get(stream: string, name?: string): Promise<ConsumerLike>;
  };
}

/** The connection behind a JetStream client, where the client exposes it (both versions do). */
export function connectionOf(js: JetStreamClientLike): NatsConnectionLike | undefined {
  const nc = (js as { nc?: unknown }).nc;
  return typeof nc === "object" && nc !== null ? (nc as NatsConnectionLike) : undefined;
}

/**
 * What the connection's `closed()` resolves with once it closes (an `Error` when it closed on
 * one), or `undefined` where the client has no `closed()` (both nats.js v2 and v3 have it).
 */
export function whenClosed(nc: NatsConnectionLike | undefined): Promise<unknown> | undefined {
  return (nc as { closed?: () => Promise<unknown> } | undefined)?.closed?.();
}

/**
 * Whether the connection is closed or closing for good: closed, or draining (`isDraining()` of
 * v2 and v3, read only when it is there), which ends with the connection closed.
 */
export function connectionEnding(nc: NatsConnectionLike | undefined): boolean {
  if (nc === undefined) return false;
  if (nc.isClosed()) return true;
  const draining = (nc as { isDraining?: () => boolean }).isDraining;
  return typeof draining === "function" && draining.call(nc) === true;
}

/**
 * Whether nats.js is between connections, reconnecting (`protocol.connected` of v2 and v3, read
 * only when it is there). It empties its outbound buffer on every reconnection attempt, so what
 * is published meanwhile is dropped after the call returned.
 */
export function isReconnecting(nc: NatsConnectionLike | undefined): boolean {
  const protocol = (nc as { protocol?: { connected?: unknown } } | undefined)?.protocol;
  return protocol?.connected === false && nc?.isClosed() === false;
}

/**
 * The socket under a nats.js connection in Node (`nc.protocol.transport.socket` in v2 and v3),
 * for core's `corkForThisTick`, which does nothing for `undefined` or a stream without `cork` (a
 * WebSocket transport, a browser). nats.js writes its outbound buffer a microtask after the first
 * command, so acknowledgements made one per delivery, each after an `await`, left in one system
 * call each. Read at each use: a reconnect replaces the socket.
 */
export function socketOf(nc: NatsConnectionLike | undefined): CorkableStream | undefined {
  return (nc as { protocol?: { transport?: { socket?: CorkableStream } } } | undefined)?.protocol
    ?.transport?.socket;
}

/** The `status()` iterator of nats.js v2 and v3: events with a `type`, and `stop()` to end it. */
interface NatsStatusIteratorLike extends AsyncIterable<{ readonly type: string }> {
  stop?(): void;
}

/**
 * Waits until `nc`, which dropped, is connected again (a `reconnect` event on `nc.status()`, v2
 * and v3, which nats.js dispatches after it re-sent every subscription on the new connection), or
 * closed for good.
 *
 * @param nc - the connection
 * @returns `true` once connected again (at once when it is not reconnecting), `false` once closed
 *   or draining, or when the client has no `status()` to tell
 */
export async function reconnected(nc: NatsConnectionLike): Promise<boolean> {
  const status = (nc as { status?: () => NatsStatusIteratorLike }).status?.();
  if (status === undefined) return false;
  try {
    // Asked after the watch started, so that a reconnection between the two is not missed.
    if (connectionEnding(nc)) return false;
    if (!isReconnecting(nc)) return true;
    const closed = whenClosed(nc)?.then(
      () => false,
      () => false,
    );
    const back = (async () => {
      for await (const s of status) if (s.type === "reconnect") return true;
      return false;
    })().catch(() => false);
    return await (closed === undefined ? back : Promise.race([back, closed]));
  } finally {
    status.stop?.();
  }
}

/** How many times a connection dropped, as far as nats.js reported it so far. */
export interface DropCount {
  readonly count: number;
}

const dropCounts = new WeakMap<object, { count: number }>();

/**
 * How many times `nc` dropped (a `disconnect` event on `nc.status()`, the same in v2 and v3, read
 * only when it is there; nats.js dispatches it in the tick the socket closed, before it dials
 * again). One watcher per connection, started on first use and ended by nats.js when the
 * connection closes: every publisher reads the same count, so one made per event (as
 * `natsPublisher(nc, options).publish(event)` does) adds no iterator of its own.
 *
 * @param nc - the connection
 * @returns the count, which goes up as drops are reported (0 for ever without `status()`)
 */
export function dropsOf(nc: NatsConnectionLike): DropCount {
  let drops = dropCounts.get(nc);
  if (drops === undefined) {
    const counter = { count: 0 };
    drops = counter;
    dropCounts.set(nc, counter);
    const status = (nc as { status?: () => NatsStatusIteratorLike }).status?.();
    if (status) {
      void (async () => {
        try {
          for await (const s of status) if (s.type === "disconnect") counter.count++;
        } catch {
          // The iterator failed: nats.js reports nothing more on it.
        }
      })();
    }
  }
  return drops;
}
