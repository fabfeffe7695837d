import type { NatsHeadersLike } from "./from-message.js";
import type { NatsHeaders } from "./headers.js";

// The few members of nats.js this binding uses, written as structural types so that both the
// `nats` v2 package and the modular v3 clients (`@nats-io/transport-node`, `@nats-io/jetstream`)
// fit, and no client type appears in the public API.

/** The server `INFO` fields the binding reads. */
export interface NatsServerInfoLike {
  readonly max_payload: number;
  readonly version?: string;
  readonly headers?: boolean;
}

/** A received core NATS message (nats.js `Msg`). */
export interface NatsMsgLike {
  readonly subject: string;
  readonly reply?: string | undefined;
  readonly data: Uint8Array;
  readonly headers?: NatsHeadersLike | undefined;
}

/** A core NATS subscription (nats.js `Subscription`). */
export interface NatsSubscriptionLike {
  unsubscribe(max?: number): void;
  drain(): Promise<void>;
  readonly closed: Promise<unknown>;
}

/** Options this binding passes to `subscribe()`. */
export interface NatsSubscribeOptionsLike {
  queue?: string;
  callback?: (err: Error | null, msg: NatsMsgLike) => void;
}

/** A connection made with nats.js (`NatsConnection` of `nats` v2 or `@nats-io/transport-node` v3). */
export interface NatsConnectionLike {
  readonly info?: NatsServerInfoLike | undefined;
  publish(subject: string, payload?: Uint8Array, options?: { headers?: NatsHeaders }): void;
  subscribe(subject: string, options?: NatsSubscribeOptionsLike): NatsSubscriptionLike;
  flush(): Promise<void>;
  isClosed(): boolean;
}

/** The acknowledgement of a JetStream publish (nats.js `PubAck`). */
export interface PubAckLike {
  readonly stream: string;
  readonly seq: number;
  readonly duplicate: boolean;
}

/** Delivery metadata of a JetStream message (nats.js `DeliveryInfo`). */
export interface JsDeliveryInfoLike {
  readonly stream: string;
  readonly consumer: string;
  readonly deliveryCount: number;
  readonly streamSequence: number;
  readonly deliverySequence: number;
  readonly pending: number;
  readonly timestampNanos: number;
}

/** A message from a JetStream consumer (nats.js `JsMsg`). */
export interface JsMsgLike {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers?: NatsHeadersLike | undefined;
  readonly info: JsDeliveryInfoLike;
  ack(): void;
  nak(millis?: number): void;
  working(): void;
  term(reason?: string): void;
  ackAck(opts?: { expect?: number; timeout?: number }): Promise<boolean>;
}

/** What `consume()` returns (nats.js `ConsumerMessages`). */
export interface ConsumerMessagesLike extends AsyncIterable<JsMsgLike> {
  stop(err?: Error): void;
  close(): Promise<unknown>;
}

/** A JetStream consumer (nats.js `Consumer`). */
export interface ConsumerLike {
  consume(options?: { max_messages?: number; expires?: number }): Promise<ConsumerMessagesLike>;
}

/** A JetStream client (`nc.jetstream()` in `nats` v2, `jetstream(nc)` in `@nats-io/jetstream`). */
export interface JetStreamClientLike {
  publish(
    subject: string,
    payload?: Uint8Array,
    options?: { msgID?: string; headers?: NatsHeaders; timeout?: number },
  ): Promise<PubAckLike>;
  readonly consumers: { get(stream: string, name?: string): Promise<ConsumerLike> };
}

/** The connection behind a JetStream client, where the client exposes it (both versions do). */
export function connectionOf(js: JetStreamClientLike): NatsConnectionLike | undefined {
  const nc = (js as { nc?: unknown }).nc;
  return typeof nc === "object" && nc !== null ? (nc as NatsConnectionLike) : undefined;
}
