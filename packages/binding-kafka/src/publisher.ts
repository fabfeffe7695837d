import {
  type CloudEventLike,
  checkChoiceOption,
  checkCountOption,
  checkTimeOption,
  DEFAULT_CLOSE_TIMEOUT_MS,
  Drain,
  type EventFormat,
  PosthornError,
  type Publisher,
  type PublishOptions,
  settleWithin,
} from "@posthorn/core";
import type { KafkaProducerLike, KafkaSendMessage, KafkaSendRecord } from "./client.js";
import { checkTopicName, fromKafkaError } from "./errors.js";
import type { KafkaContentMode, KafkaEncodeOptions, KeyMapper } from "./record.js";
import { toKafkaRecord } from "./to-record.js";

/** Options for {@link kafkaPublisher}. */
export interface KafkaPublisherOptions {
  /** The topic every event goes to, unless a call names another. */
  topic: string;
  /** `binary` (default) or `structured`. */
  mode?: KafkaContentMode;
  /** The event format for structured mode. */
  format?: EventFormat;
  /**
   * Computes each record's key from its event (opt in; Kafka binding 3.1). Without it, the key
   * is the one passed to `publish`, or none. One that throws fails the call with nothing sent:
   * with `InvalidEvent` (`attribute` `key`, what it threw as `cause`), or with the
   * `PosthornError` it threw.
   */
  keyMapper?: KeyMapper;
  /**
   * Acknowledgements to wait for: -1 or `"all"` (the same: all in-sync replicas, kafkajs'
   * default), 1 the leader, 0 none; any other value is refused with `NotSupported` when the
   * publisher is made. An idempotent producer takes only -1 or `"all"`. With
   * `@confluentinc/kafka-javascript`, acks are producer configuration: any value here is refused
   * with `NotSupported` when the publisher is made (that client's `send` throws on it).
   */
  acks?: KafkaAcks;
  /**
   * Default for {@link PublishOptions.timeoutMs}: give up waiting for the acknowledgement
   * (`Timeout`). 0 fails every publish at once with `Timeout` and nothing sent; `Infinity` is no
   * limit. Default: none, as long as kafkajs waits.
   */
  timeoutMs?: number;
  /**
   * How long `close()` waits for the sends still in the producer's hands, those of publishes
   * that already ended with `Timeout` or `Aborted` included (kafkajs goes on sending and retrying
   * them). Past it `close()` rejects with `Timeout` saying how many were left: the producer keeps
   * them, so they may still be written, and a publish still waiting for one settles when the
   * producer answers. `Infinity` waits as long as the producer does; 0 does not wait. Default
   * {@link DEFAULT_CLOSE_TIMEOUT_MS}, as the other bindings' publishers.
   */
  closeTimeoutMs?: number;
}

export { DEFAULT_CLOSE_TIMEOUT_MS };

/**
 * The acknowledgements a Kafka produce request can ask for: -1 or `"all"` (every in-sync
 * replica), 1 (the partition leader) or 0 (none: the broker does not answer).
 */
export type KafkaAcks = -1 | "all" | 0 | 1;

/**
 * Whether `producer` is `@confluentinc/kafka-javascript`'s KafkaJS-compatible producer: it has
 * `dependentAdmin()` and `flush()`, which a kafkajs producer has not.
 */
function isConfluentProducer(producer: KafkaProducerLike): boolean {
  const p = producer as unknown as Record<string, unknown>;
  return typeof p.dependentAdmin === "function" && typeof p.flush === "function";
}

/** The values of {@link KafkaAcks}, as the publisher checks them. */
const ACKS: readonly KafkaAcks[] = [-1, "all", 0, 1];

/** Per-call options of a Kafka publisher. */
export interface KafkaPublishOptions extends PublishOptions {
  /** The record key the caller provides, for every event of the call (Kafka binding 3.1). */
  key?: Uint8Array | string | null;
  /**
   * A partition to write to, instead of the producer's partitioner: a whole number, 0 or more
   * (`NotSupported` otherwise, nothing sent). A partition the topic does not have fails the call
   * with `PublishRejected` (`attribute` `partition`), nothing written: kafkajs drops such records
   * unsent. With `acks` 0 the client reports nothing back, and that loss goes unseen.
   */
  partition?: number;
  /** Another topic for this call. */
  topic?: string;
}

/** A publisher of events to a Kafka topic. */
export type KafkaPublisher = Publisher<KafkaPublishOptions>;

type BufferCtor = {
  isBuffer(v: unknown): boolean;
  from(buffer: ArrayBufferLike, byteOffset: number, length: number): Uint8Array;
};
const NodeBuffer = (globalThis as { Buffer?: BufferCtor }).Buffer;

// kafkajs writes any value that is not a Buffer as String(value): a plain Uint8Array must become
// a Buffer view (no copy) before it is handed over.
function asBuffer<T>(value: T): T {
  if (NodeBuffer && value instanceof Uint8Array && !NodeBuffer.isBuffer(value)) {
    return NodeBuffer.from(value.buffer, value.byteOffset, value.byteLength) as T;
  }
  return value;
}

/**
 * A publisher over a kafkajs `Producer` the caller made and connected (or the KafkaJS-compatible
 * producer of `@confluentinc/kafka-javascript`). `publish` of an array sends all its records in
 * one `send` and resolves when the broker acknowledged them; it works with the idempotent
 * producer. `close()` waits up to `closeTimeoutMs` for every send still in the producer's hands
 * (also those whose publish already ended with `Timeout` or `Aborted`); the producer stays the
 * caller's to disconnect.
 *
 * @param producer - a connected producer
 * @param options - topic, content mode, format, key mapper, acks
 * @throws {@link PosthornError} `NotSupported` for structured mode without a format, an `acks`
 *   other than -1, `"all"`, 0 or 1 (or any `acks` with `@confluentinc/kafka-javascript`), or a
 *   `timeoutMs` or `closeTimeoutMs` that is not a number of 0 or more (a per-call `timeoutMs` is
 *   checked likewise, and the call rejects with nothing sent, as for a per-call `partition` that
 *   is not a whole number of 0 or more)
 * @example
 * ```ts
 * const producer = kafka.producer({ idempotent: true });
 * await producer.connect();
 * const publisher = kafkaPublisher(producer, { topic: "orders", keyMapper: partitionKeyMapper });
 * await publisher.publish(event);
 * ```
 */
export function kafkaPublisher(
  producer: KafkaProducerLike,
  options: KafkaPublisherOptions,
): KafkaPublisher {
  checkTimeOption("timeoutMs", options.timeoutMs);
  checkTimeOption("closeTimeoutMs", options.closeTimeoutMs);
  // Kafka's produce request has -1, 0 and 1; kafkajs sends any number, and NaN or a fraction
  // left the publish waiting for an answer that never came. Its Int16 encoder writes a string
  // such as "all" as 0 while waiting for an answer, so "all" goes to it as -1.
  checkChoiceOption("acks", options.acks, ACKS);
  const acks = options.acks === "all" ? -1 : options.acks;
  // That client's send() throws on any `acks` in the request, so every publish would fail: say
  // so once, when the publisher is made.
  if (acks !== undefined && isConfluentProducer(producer)) {
    throw new PosthornError(
      "NotSupported",
      "acks is producer configuration with @confluentinc/kafka-javascript: set it where the producer is made (kafka.producer({ kafkaJS: { acks } })) and leave the publisher's unset",
    );
  }
  checkTopicName("topic", options.topic);
  const defaultMode = options.mode ?? "binary";
  if (defaultMode === "structured" && options.format === undefined) {
    throw new PosthornError("NotSupported", "a structured-mode Kafka publisher needs a format");
  }
  const closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
  // Every send the producer has not answered yet, whether or not its publish still waits: a
  // timeout or an abort ends the wait, not the send (kafkajs goes on retrying it).
  const inFlight = new Set<Promise<unknown>>();
  const drain = new Drain();
  const answered = (sent: Promise<unknown>) => (): void => {
    inFlight.delete(sent);
    drain.wake();
  };
  let closed = false;
  let closing: Promise<void> | undefined;

  const publish = async (
    events: CloudEventLike | readonly CloudEventLike[],
    call: KafkaPublishOptions = {},
  ): Promise<void> => {
    if (closed) throw new PosthornError("Closed", "the Kafka publisher is closed");
    if (call.timeoutMs !== undefined) checkTimeOption("timeoutMs", call.timeoutMs);
    // kafkajs groups records by partition and drops, unsent, those of a partition it has no
    // metadata for (-1, NaN, a fraction, one past the topic's count), and still resolves.
    checkCountOption("partition", call.partition, 0, false);
    if (call.topic !== undefined) checkTopicName("topic", call.topic);
    const topic = call.topic ?? options.topic;
    // Aborted before the call: nothing is sent (waitFor only stops waiting for what was).
    if (call.abortSignal?.aborted) {
      throw new PosthornError("Aborted", `publish to ${topic} was aborted`);
    }
    const mode = call.mode ?? defaultMode;
    if (mode === "batch") {
      throw new PosthornError(
        "NotSupported",
        "the Kafka binding has no batch mode (Kafka binding 1.3); an array is sent as one request of several records",
      );
    }
    const list = Array.isArray(events) ? events : [events as CloudEventLike];
    const messages: KafkaSendMessage[] = new Array(list.length);
    // One options object for the whole call, built member by member (spreads after other
    // members take V8's slow path).
    const mapping: KafkaEncodeOptions = { mode };
    if (options.format !== undefined) mapping.format = options.format;
    if (call.key !== undefined) mapping.key = call.key;
    if (options.keyMapper !== undefined) mapping.keyMapper = options.keyMapper;
    for (let i = 0; i < list.length; i++) {
      const record = toKafkaRecord(list[i] as CloudEventLike, mapping);
      const message: KafkaSendMessage = {
        key: asBuffer(record.key),
        value: asBuffer(record.value),
        headers: record.headers,
      };
      if (call.partition !== undefined) message.partition = call.partition;
      messages[i] = message;
    }
    if (messages.length === 0) return;
    const timeoutMs = call.timeoutMs ?? options.timeoutMs;
    // A time limit of 0 is over before anything could be acknowledged: Timeout with nothing
    // sent, as over HTTP, rather than records sent that the caller was told failed.
    if (timeoutMs === 0) {
      throw new PosthornError("Timeout", `timeoutMs is 0: nothing was sent to ${topic}`);
    }
    const request: KafkaSendRecord = { topic, messages };
    if (acks !== undefined) request.acks = acks;
    let sent: Promise<unknown>;
    try {
      sent = producer.send(request);
    } catch (err) {
      // Typed as a rejection of the same send would be: thrown as it was, it reached the caller
      // untyped.
      throw fromKafkaError(err, `publish to ${topic}`);
    }
    inFlight.add(sent);
    const forget = answered(sent);
    sent.then(forget, forget);
    let result: unknown;
    try {
      result = await waitFor(sent, call.abortSignal, timeoutMs, topic);
    } catch (err) {
      throw fromKafkaError(err, `publish to ${topic}`);
    }
    if (call.partition !== undefined && acks !== 0 && !wrote(result, call.partition)) {
      throw new PosthornError(
        "PublishRejected",
        `publish to ${topic} wrote nothing: the topic has no partition ${call.partition} (the client dropped the records unsent); give a partition below the topic's partition count`,
        { attribute: "partition" },
      );
    }
  };

  return {
    publish,
    close() {
      closed = true;
      closing ??= (async () => {
        const idle = () => inFlight.size === 0;
        await drain.wait(closeTimeoutMs, idle);
        if (!idle()) {
          const n = inFlight.size;
          throw new PosthornError(
            "Timeout",
            `${n} send${n === 1 ? "" : "s"} to Kafka still unanswered after closeTimeoutMs (${closeTimeoutMs} ms); the producer keeps ${n === 1 ? "it" : "them"} until it answers or is disconnected, so ${n === 1 ? "it" : "they"} may still be written`,
          );
        }
      })();
      return closing;
    },
  };
}

/**
 * Whether a send's result (kafkajs' `RecordMetadata[]`, one entry per partition written) shows
 * `partition` written. A result of another shape is taken as written; with `acks` 0 there is
 * nothing to read (kafkajs gives `[]`).
 */
function wrote(result: unknown, partition: number): boolean {
  if (!Array.isArray(result)) return true;
  const partitions = result.map((r) => (r as { partition?: unknown } | null)?.partition);
  if (!partitions.every((p) => typeof p === "number")) return true;
  return partitions.includes(partition);
}

/** Waits for a send, giving up on abort or after `timeoutMs` (the send itself is not recalled). */
function waitFor(
  sent: Promise<unknown>,
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
  topic: string,
): Promise<unknown> {
  return settleWithin(sent, {
    timeoutMs,
    signal,
    timedOut: () =>
      new PosthornError("Timeout", `no acknowledgement from ${topic} within ${timeoutMs} ms`),
    aborted: () => new PosthornError("Aborted", `publish to ${topic} was aborted`),
  });
}
