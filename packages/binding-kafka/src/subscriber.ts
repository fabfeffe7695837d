import {
  AsyncQueue,
  checkCountOption,
  checkTimeOption,
  closeOnReturn,
  createDelivery,
  DEAD_LETTER_ORIGINAL_TOPIC,
  DEAD_LETTER_REASON,
  type Delivery,
  Drain,
  isPosthornError,
  MAX_TIMER_MS,
  PosthornError,
  type SettlementCapabilities,
  type Subscriber,
  settleWithin,
  type UnsupportedSettlements,
} from "@posthorn/core";
import type {
  KafkaBatchPayload,
  KafkaConsumedRecord,
  KafkaConsumerLike,
  KafkaProducerLike,
  KafkaSendHeaderValue,
} from "./client.js";
import { checkTopicName, fromKafkaError, shownTopics } from "./errors.js";
import { readKafkaRecord } from "./from-record.js";
import { DELIVERY_COUNT_HEADER, type KafkaDecodeOptions } from "./record.js";

/**
 * Headers Posthorn adds to a record it writes to the dead-letter topic. The reason and topic
 * names are core's `DEAD_LETTER_REASON` and `DEAD_LETTER_ORIGINAL_TOPIC`, which the MQTT binding
 * writes as user properties too.
 */
export const DEAD_LETTER_HEADERS = Object.freeze({
  reason: DEAD_LETTER_REASON,
  topic: DEAD_LETTER_ORIGINAL_TOPIC,
  partition: "posthorn-original-partition",
  offset: "posthorn-original-offset",
});

/** Options for {@link kafkaSubscriber}. */
export interface KafkaSubscriberOptions extends KafkaDecodeOptions {
  /** Topics (or patterns) to subscribe to: at least one (`NotSupported` otherwise). */
  topics: readonly (string | RegExp)[];
  /**
   * Where a group without committed offsets starts: the earliest record (`true`) or new records
   * only (default). With `@confluentinc/kafka-javascript` this is consumer configuration instead.
   */
  fromBeginning?: boolean;
  /** The topic `reject()` writes records to. Without it, `reject()` is `NotSupported`. */
  deadLetterTopic?: string;
  /** The producer that writes to the dead-letter topic. Required with `deadLetterTopic`. */
  producer?: KafkaProducerLike;
  /**
   * How long `reject()` waits for the dead-letter write to be acknowledged, in milliseconds.
   * Default {@link DEFAULT_DEAD_LETTER_TIMEOUT_MS} (30 s); `Infinity` waits as long as the
   * producer retries. Past it, or when the write fails, `reject()` rejects with a retryable
   * `SettlementFailed` (its `cause` a `Timeout`, or the producer's error) and the record is not
   * done: nothing is committed past it and it is delivered again. A write that timed out is not
   * recalled: if it completes later, the dead-letter topic holds a copy of a record that also
   * comes again (at-least-once). `close()` ends the wait sooner: see
   * {@link KafkaSubscriberOptions.drainTimeoutMs}. A number of 1 or more (`NotSupported`
   * otherwise).
   */
  deadLetterTimeoutMs?: number;
  /**
   * Most records handed out and not yet settled; once that many are, the subscriber pauses the
   * partitions that deliver, and resumes them when half have been settled (and when a rebalance
   * takes one away, so that it is read again if it comes back). Default 1000.
   */
  maxInFlight?: number;
  /**
   * Wait this long after an accept before committing, so that one commit covers the accepts of
   * that interval. Default {@link DEFAULT_COMMIT_INTERVAL_MS} (100 ms). Committing after every
   * accept instead (0) sends commits back to back under load, and those requests slow the
   * consumer's own fetches: measured on the test broker, p50 latency at 1,000 events/s went from
   * 10-150 ms to 1.2 ms with 100. A crash redelivers what was accepted in the last interval
   * (at-least-once duplicates, never a loss); `close()` commits at once.
   */
  commitIntervalMs?: number;
  /**
   * On `close()`, wait up to this long for deliveries in the application's hands to settle, a
   * `reject()` still writing its dead-letter copy included. Default 0. A `reject()` still writing
   * when it ends fails at once with `SettlementFailed` (its `cause` a `Closed` error): the record
   * is not committed and comes again on the next start, and the write is not recalled (if it
   * completes, the dead-letter topic holds a copy too).
   */
  drainTimeoutMs?: number;
  /** Passed to the consumer's `run`. Default 1. */
  partitionsConsumedConcurrently?: number;
  /**
   * Which API the consumer speaks. `kafkajs` (default) passes `autoCommit: false` to `run` and
   * `fromBeginning` to `subscribe`; `confluent` (`@confluentinc/kafka-javascript`'s KafkaJS API)
   * passes neither, since that client takes them as consumer configuration: create its consumer
   * with `{ kafkaJS: { groupId, autoCommit: false, fromBeginning } }`. Detected from the
   * consumer's `assignment()` method when not given.
   *
   * With `confluent`, `ready` keeps a weaker promise: that client's `run()` returns before the
   * consumer joined its group, and it reports neither the join nor its start offsets, so `ready`
   * resolves once `run()` returned. A new group that reads from the end can then miss records
   * published right after `ready` (on the test broker it missed every one); a group with
   * committed offsets, or one created with `fromBeginning: true`, does not.
   */
  client?: "kafkajs" | "confluent";
  /**
   * Called with errors that have no caller to go to (a background commit that failed). What it
   * throws is dropped, having no caller either.
   */
  onError?: (error: PosthornError) => void;
}

/** The default `commitIntervalMs` of {@link kafkaSubscriber}. */
export const DEFAULT_COMMIT_INTERVAL_MS = 100;

/** The default `deadLetterTimeoutMs` of {@link kafkaSubscriber}: 30 seconds. */
export const DEFAULT_DEAD_LETTER_TIMEOUT_MS = 30_000;

/** A subscriber over a Kafka consumer group. */
export interface KafkaSubscriber extends Subscriber {
  /**
   * Resolves once the consumer joined its group, received its partitions, and the offset each of
   * them starts from is fixed: a record published after it resolves is delivered (to the member
   * that owns its partition). A partition with no committed offset that starts from the end
   * (`fromBeginning` false) learns where that end is at the consumer's first fetch after joining,
   * so with kafkajs `ready` waits for that fetch to return: when there is nothing to read, that is
   * after the consumer's `maxWaitTimeInMs` (kafkajs' default 5000 ms). With `fromBeginning: true`,
   * or a member given no partitions, it resolves at the join.
   *
   * Rejects when the consumer could not start, or crashed before it was ready and will not
   * restart (iteration then fails with the same error), and with `Closed` when the subscriber is
   * closed first or its owner stops or disconnects the consumer first. With `client: "confluent"` it resolves sooner and promises less (see
   * {@link KafkaSubscriberOptions.client}); with a consumer that has no kafkajs instrumentation
   * events, it resolves once `run()` returned.
   *
   * A later rebalance is Kafka's: a partition that moves to another member before anything was
   * committed on it starts from the end again, at its new owner's first fetch.
   */
  readonly ready: Promise<void>;
}

/** What a Kafka delivery's `NotSupported` settlements say. */
const KAFKA_UNSUPPORTED: UnsupportedSettlements = Object.freeze({
  releaseDelay:
    "Kafka has no delayed redelivery: release() seeks back at once (a retry topic read later can delay)",
  reject:
    "this kafkaSubscriber has no dead-letter topic: give it deadLetterTopic and producer (a kafkajs producer that writes rejected records there)",
  inProgress: "Kafka has no per-record acknowledgement whose wait could be extended",
});

/**
 * What a Kafka subscriber can do: accept commits a checkpoint; release seeks back so the record
 * comes again (emulated, no delay); reject writes to a dead-letter topic when one is configured;
 * the delivery count is counted here and carried in the `posthorn-delivery-count` header across
 * dead-letter and retry topics, since Kafka has no counter of its own.
 *
 * @param deadLetter - whether a dead-letter topic is configured
 */
export function kafkaCapabilities(deadLetter: boolean): SettlementCapabilities {
  return {
    release: "emulated",
    releaseDelay: false,
    reject: deadLetter ? "dead-letter-topic" : "none",
    inProgress: false,
    deliveryCount: "attribute",
  };
}

type EntryState = "inflight" | "released" | "done";

interface Entry {
  readonly offset: bigint;
  state: EntryState;
  deliveries: number;
}

/**
 * The checkpoint of one partition: every record handed out, in offset order, until it and all
 * before it are settled. The committed offset is the lowest record not yet done (or one past the
 * last done), so nothing past a record in flight is ever committed.
 */
class PartitionTrack {
  // In offset order, strictly increasing: a record fetched again is found by binary search, not
  // in a Map by offset (one set and one delete per record made V8 promote settled records).
  readonly #entries: Entry[] = [];
  #head = 0;
  /** One past the highest offset popped as done. */
  #floor = -1n;
  /** The offset last committed by this subscriber. */
  committed = -1n;
  dropped = false;

  constructor(
    readonly topic: string,
    readonly partition: number,
  ) {}

  /** Registers a fetched record; returns its entry when it is to be delivered now. */
  receive(offsetText: string): Entry | undefined {
    const offset = BigInt(offsetText);
    const last = this.#entries[this.#entries.length - 1];
    if (last !== undefined && offset <= last.offset) {
      // Fetched before: delivered again only when released (not in hand, not done).
      const known = this.#find(offset);
      if (known === undefined || known.state !== "released") return undefined;
      known.state = "inflight";
      known.deliveries++;
      return known;
    }
    if (offset < this.#floor) return undefined;
    const entry: Entry = { offset, state: "inflight", deliveries: 1 };
    this.#entries.push(entry);
    return entry;
  }

  /** The entry of `offset` among those not yet popped as done. */
  #find(offset: bigint): Entry | undefined {
    const entries = this.#entries;
    let low = this.#head;
    let high = entries.length - 1;
    while (low <= high) {
      const mid = (low + high) >>> 1;
      const entry = entries[mid] as Entry;
      if (entry.offset === offset) return entry;
      if (entry.offset < offset) low = mid + 1;
      else high = mid - 1;
    }
    return undefined;
  }

  /** Marks a record done. */
  done(entry: Entry): void {
    entry.state = "done";
    while (this.#head < this.#entries.length) {
      const first = this.#entries[this.#head] as Entry;
      if (first.state !== "done") break;
      this.#floor = first.offset + 1n;
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries.splice(0, this.#head);
      this.#head = 0;
    }
  }

  /** The lowest offset released and waiting to be fetched again. */
  lowestReleased(): bigint | undefined {
    for (let i = this.#head; i < this.#entries.length; i++) {
      const e = this.#entries[i] as Entry;
      if (e.state === "released") return e.offset;
    }
    return undefined;
  }

  /** The offset to commit: the lowest record not done, or one past the last done. */
  watermark(): bigint {
    const first = this.#entries[this.#head];
    return first === undefined ? this.#floor : first.offset;
  }
}

/**
 * A subscriber over a kafkajs `Consumer` the caller made and connected (its group id, session
 * and retry settings are the caller's), as an async iterable of deliveries with checkpoint
 * semantics:
 *
 * - `accept()` marks the record done; offsets are committed only up to the lowest record not yet
 *   done in each partition, so a crash loses nothing (records after it are delivered again);
 * - `release()` seeks the partition back so the record is delivered again (records after it that
 *   are in flight or done are not handed out twice);
 * - `reject()` writes the record, with its headers and the reason, to the dead-letter topic,
 *   then counts as done; a write that fails, or is not acknowledged within
 *   `deadLetterTimeoutMs`, rejects with a retryable `SettlementFailed` and the record is
 *   delivered again (never committed as done);
 * - `close()` waits up to `drainTimeoutMs` (default 0) for deliveries in hand, then fails the
 *   `reject()`s still writing to the dead-letter topic with `SettlementFailed`, commits what was
 *   accepted, stops the consumer, and leaves what was not settled to be delivered again
 *   (settling it later is `SettlementFailed`); the consumer stays the caller's to disconnect.
 *   Leaving a `for await` loop closes the subscriber the same way;
 * - when the consumer crashes and kafkajs will not restart it, iteration fails with the error,
 *   settling is `SettlementFailed` (nothing can be committed), and `close()` does not wait; the
 *   same, with a `Closed` error, when its owner stops or disconnects the consumer before closing
 *   the subscriber (the subscriber watches the consumer's `stop` and `disconnect` methods while it
 *   runs, to tell those calls from kafkajs's own stop of a crashed consumer it will restart)
 *
 * @param consumer - a connected consumer that is not running yet (the subscriber subscribes and
 *   runs it; once the subscriber is closed, a kafkajs consumer may be given to another)
 * @param options - topics, dead-letter topic and producer, decoding options
 * @throws {@link PosthornError} `NotSupported` for `topics` that is not a non-empty array of
 *   topic names and patterns, an empty `deadLetterTopic`, a dead-letter topic without a producer, a
 *   `maxInFlight` or `partitionsConsumedConcurrently` that is not a whole number of 1 or more
 *   (`maxInFlight` may be `Infinity`), a `commitIntervalMs` outside 0 to `MAX_TIMER_MS`, a
 *   `drainTimeoutMs` that is not a number of 0 or more, a `deadLetterTimeoutMs` that is not a
 *   number of 1 or more, a decoding limit that is not a whole
 *   number of 0 or more, or a consumer that has a subscriber not yet closed (one the application
 *   runs itself rejects `ready` with `NotSupported`, and `close()` then leaves it running)
 * @example
 * ```ts
 * const consumer = kafka.consumer({ groupId: "billing" });
 * await consumer.connect();
 * const subscriber = kafkaSubscriber(consumer, {
 *   topics: ["orders"], formats: [json], deadLetterTopic: "orders.dlq", producer,
 * });
 * for await (const delivery of subscriber) {
 *   if (delivery.event) { await handle(delivery.event); await delivery.accept(); }
 *   else await delivery.reject(delivery.error);
 * }
 * ```
 */
export function kafkaSubscriber(
  consumer: KafkaConsumerLike,
  options: KafkaSubscriberOptions,
): KafkaSubscriber {
  return new KafkaSubscriberImpl(consumer, options);
}

class KafkaSubscriberImpl implements KafkaSubscriber {
  readonly capabilities: SettlementCapabilities;
  readonly ready: Promise<void>;
  readonly #consumer: KafkaConsumerLike;
  readonly #options: KafkaSubscriberOptions;
  readonly #queue = new AsyncQueue<Delivery>();
  readonly #tracks = new Map<string, PartitionTrack>();
  readonly #paused = new Map<string, PartitionTrack>();
  readonly #dirty = new Set<PartitionTrack>();
  readonly #maxInFlight: number;
  readonly #confluent: boolean;
  readonly #removers: Array<() => void> = [];
  #inFlight = 0;
  #flushing: Promise<void> | undefined;
  #closed = false;
  /**
   * Why the consumer stopped for good: it crashed and kafkajs will not restart it, or its owner
   * stopped or disconnected it under this subscriber.
   */
  #crashed: PosthornError | undefined;
  /** What settling says once {@link #crashed} is set: why nothing can be committed any more. */
  #crashedWhy = "";
  /** Crashes kafkajs reported: a stop that no crash follows is the owner's. */
  #crashes = 0;
  /** Set from a stop this subscriber did not make until the crash that may explain it. */
  #ownerStopTimer: ReturnType<typeof setTimeout> | undefined;
  /** Whether the consumer's own `stop()` or `disconnect()` was called while this subscriber ran. */
  #ownerCalled = false;
  #stopping = false;
  /**
   * The dead-letter writes of reject()s still waiting, one controller each (many listeners on one
   * shared signal make Node warn of a leak past ten). Aborted when settlements still running can
   * no longer count: at close() once the drain is over, or when the consumer stops for good. Such
   * a reject() then stops waiting (its timer cleared) and fails, and a write that completes
   * later commits nothing.
   */
  readonly #deadLettering = new Set<AbortController>();
  /** Why settlements still running were ended (see {@link #deadLettering}), once they were. */
  #settlingEnded: PosthornError | undefined;
  /** The same, as a reject() that failed for it says. */
  #settlingEndedWhy = "";
  #closing: Promise<void> | undefined;
  // What close() waits on for the deliveries in hand.
  readonly #drain = new Drain();
  /** Subscribing and `run()`: settled once the consumer runs (or could not start). */
  readonly #running: Promise<void>;
  /** Whether this subscriber's `run()` started the consumer: only then is it this one's to stop. */
  #ran = false;
  /** Settled once every assigned partition's start offset is fixed (or it never will be). */
  readonly #startOffsets: Promise<void>;
  /** Resolves or rejects {@link #startOffsets}, once (a later call does nothing). */
  #settleStart!: (error?: PosthornError) => void;
  #startSettled = false;
  /**
   * The brokers (node ids) a fetch started from since the consumer last joined its group;
   * `undefined` while it has not joined since it (re)started.
   */
  #fetchingSinceJoin: Set<unknown> | undefined;
  /** Removes the listeners that follow fetches until the start offsets are known. */
  readonly #startRemovers: Array<() => void> = [];

  constructor(consumer: KafkaConsumerLike, options: KafkaSubscriberOptions) {
    // kafkajs subscribes to an empty list, and to each letter of a string spread into one, and
    // the subscriber then waits for records that never come.
    const topics = options.topics as unknown;
    if (
      !Array.isArray(topics) ||
      topics.length === 0 ||
      !topics.every((t) => (typeof t === "string" && t.length > 0) || t instanceof RegExp)
    ) {
      throw new PosthornError(
        "NotSupported",
        `topics must be a non-empty array of topic names or RegExp patterns, got ${shownTopics(topics)}`,
        { attribute: "topics" },
      );
    }
    if (options.deadLetterTopic !== undefined) {
      checkTopicName("deadLetterTopic", options.deadLetterTopic);
    }
    if (options.deadLetterTopic !== undefined && options.producer === undefined) {
      throw new PosthornError(
        "NotSupported",
        "a dead-letter topic needs a producer to write to it (options.producer)",
      );
    }
    checkCountOption("maxInFlight", options.maxInFlight);
    checkCountOption(
      "partitionsConsumedConcurrently",
      options.partitionsConsumedConcurrently,
      1,
      false,
    );
    // An interval, not a limit: a setTimeout of more than MAX_TIMER_MS fires after 1 ms.
    checkTimeOption("commitIntervalMs", options.commitIntervalMs, 0, MAX_TIMER_MS);
    checkTimeOption("drainTimeoutMs", options.drainTimeoutMs);
    // 0 would fail every reject before the write could be acknowledged.
    checkTimeOption("deadLetterTimeoutMs", options.deadLetterTimeoutMs, 1);
    checkCountOption("maxPayloadBytes", options.maxPayloadBytes, 0);
    checkCountOption("maxValueBytes", options.maxValueBytes, 0);
    checkCountOption("maxHeaders", options.maxHeaders, 0);
    checkCountOption("json.maxDepth", options.json?.maxDepth, 0);
    // A consumer subscribes and runs once: kafkajs refused the second subscriber's subscribe()
    // only once it started, with "Cannot subscribe to topic while consumer is running".
    if (consumersInUse.has(consumer)) {
      throw new PosthornError(
        "NotSupported",
        "this consumer already has a kafkaSubscriber that is not closed: a consumer runs once, so give one subscriber every topic (topics: [...]), or make a consumer for each subscriber",
      );
    }
    consumersInUse.add(consumer);
    this.#consumer = consumer;
    this.#options = options;
    this.#maxInFlight = options.maxInFlight ?? 1000;
    this.#confluent =
      (options.client ??
        (typeof (consumer as { assignment?: unknown }).assignment === "function"
          ? "confluent"
          : "kafkajs")) === "confluent";
    this.capabilities = kafkaCapabilities(options.deadLetterTopic !== undefined);
    this.#startOffsets = new Promise<void>((resolve, reject) => {
      this.#settleStart = (error) => {
        if (this.#startSettled) return;
        this.#startSettled = true;
        for (const remove of this.#startRemovers.splice(0)) remove();
        if (error === undefined) resolve();
        else reject(error);
      };
    });
    // Awaited only once run() returned; a close or a crash can reject it before that.
    this.#startOffsets.catch(() => {});
    // Before run(): kafkajs emits the join (and may start fetching) before run() returns.
    this.#listen();
    this.#running = this.#run();
    this.ready = this.#start();
    // The failure also ends iteration; `ready` rejecting unobserved must not crash the process.
    this.ready.catch(() => {});
  }

  async #start(): Promise<void> {
    await this.#running;
    await this.#startOffsets;
  }

  async #run(): Promise<void> {
    try {
      const topics = [...this.#options.topics];
      await this.#consumer.subscribe(
        this.#confluent
          ? { topics }
          : { topics, fromBeginning: this.#options.fromBeginning ?? false },
      );
      await this.#consumer.run({
        eachBatch: (payload) => this.#eachBatch(payload),
        eachBatchAutoResolve: false,
        ...(this.#confluent ? {} : { autoCommit: false }),
        partitionsConsumedConcurrently: this.#options.partitionsConsumedConcurrently ?? 1,
      });
      this.#ran = true;
    } catch (err) {
      const error = RUNNING.test(String((err as Error | undefined)?.message))
        ? new PosthornError(
            "NotSupported",
            "the consumer is already running (consumer.run() was called on it): give kafkaSubscriber a connected consumer that does not run yet; it subscribes and runs it",
            { cause: err },
          )
        : fromKafkaError(err, "starting the Kafka consumer");
      this.#queue.fail(error);
      throw error;
    }
  }

  #listen(): void {
    const consumer = this.#consumer as unknown as {
      on?: (name: string, listener: (event: { payload?: unknown }) => void) => unknown;
      events?: KafkaConsumerLike["events"];
    };
    // `@confluentinc/kafka-javascript`'s KafkaJS API has no instrumentation events: reading
    // `events` throws "Not implemented" there. Its rebalances are followed in #eachBatch.
    let events: KafkaConsumerLike["events"];
    try {
      events = consumer.events;
    } catch {
      events = undefined;
    }
    if (typeof consumer.on !== "function" || events === undefined) {
      // Nothing tells when the start offsets are known: `ready` is `run()` returning.
      this.#settleStart();
      return;
    }
    const add = (
      name: string | undefined,
      listener: (event: { payload?: unknown }) => void,
      removers = this.#removers,
    ) => {
      if (name === undefined) return;
      const remove = consumer.on?.(name, listener);
      if (typeof remove === "function") removers.push(remove as () => void);
    };
    // After a rebalance, partitions this member lost are forgotten: their unsettled records go
    // to the new owner from the last commit, and settling them here no longer commits anything.
    add(events.GROUP_JOIN, (event) => {
      const assignment = (event.payload as { memberAssignment?: Record<string, number[]> })
        ?.memberAssignment;
      if (assignment !== undefined) {
        this.#forgetLost((topic, partition) => assignment[topic]?.includes(partition) === true);
      }
      this.#joinedGroup(assignment);
    });
    add(events.CRASH, (event) => {
      const payload = event.payload as { error?: unknown; restart?: boolean } | undefined;
      this.#crashes++;
      clearTimeout(this.#ownerStopTimer);
      // A restart joins again, with new fetches.
      this.#fetchingSinceJoin = undefined;
      if (payload?.restart === false) {
        const error = fromKafkaError(payload.error, "the Kafka consumer");
        this.#halt(
          error,
          `the Kafka consumer stopped after a crash and will not restart (${error.message})`,
        );
      }
    });
    // kafkajs stops and disconnects a consumer that crashed before it reports the crash, which
    // comes only once its `retry.restartOnFailure` answered, however long that takes. The
    // owner's consumer.stop() or disconnect() while this subscriber runs is told apart by
    // watching those two methods (kafkajs's crash handling calls its own functions, not them):
    // iteration used to wait for ever then, and settling resolved with nothing committed. Where
    // the methods cannot be watched, a stop that no crash report follows within
    // OWNER_STOP_GRACE_MS is taken for the owner's.
    const watched = this.#watchOwnerCalls();
    const ownerStop = () => {
      if (this.#stopping || this.#crashed !== undefined) return;
      if (this.#ownerCalled) {
        clearTimeout(this.#ownerStopTimer);
        this.#haltByOwner();
        return;
      }
      // Watched and not called: kafkajs's own stop, whose crash report follows.
      if (watched) return;
      const crashes = this.#crashes;
      clearTimeout(this.#ownerStopTimer);
      this.#ownerStopTimer = setTimeout(() => {
        this.#ownerStopTimer = undefined;
        if (this.#stopping || this.#crashed !== undefined || this.#crashes !== crashes) return;
        this.#haltByOwner();
      }, OWNER_STOP_GRACE_MS);
      this.#ownerStopTimer.unref?.();
    };
    add(events.STOP, ownerStop);
    add(events.DISCONNECT, ownerStop);
    if (
      events.GROUP_JOIN === undefined ||
      events.FETCH_START === undefined ||
      events.FETCH === undefined
    ) {
      this.#settleStart();
      return;
    }
    // kafkajs looks up the start offsets of all its assigned partitions at the beginning of each
    // fetch, before it sends the Fetch request: once a fetch that started after the join has
    // returned, every start offset is fixed (a committed one, or the end or the beginning of the
    // log as it was then). A fetch that fails to look them up mostly rejoins (a new GROUP_JOIN,
    // which starts the wait again) or throws (no FETCH event); only a connection lost during the
    // lookup ends the fetch with neither, and then `ready` can come a fetch too early.
    const nodeOf = (event: { payload?: unknown }) =>
      (event.payload as { nodeId?: unknown })?.nodeId;
    add(
      events.FETCH_START,
      (event) => {
        this.#fetchingSinceJoin?.add(nodeOf(event));
      },
      this.#startRemovers,
    );
    add(
      events.FETCH,
      (event) => {
        if (this.#fetchingSinceJoin?.has(nodeOf(event))) this.#settleStart();
      },
      this.#startRemovers,
    );
  }

  /**
   * The consumer stopped for good: nothing can be committed or sought any more, so settling says
   * so (the records come again to the group's next member), iteration fails with `error`, and
   * close() no longer waits for deliveries to settle.
   */
  /** Ends the subscriber for a stop or disconnect of the consumer that its owner made. */
  #haltByOwner(): void {
    const error = new PosthornError(
      "Closed",
      "the Kafka consumer was stopped or disconnected while its kafkaSubscriber ran: close the subscriber first (it commits what was accepted), then disconnect the consumer",
    );
    this.#halt(error, "the Kafka consumer was stopped or disconnected by its owner");
  }

  /**
   * Replaces the consumer's `stop` and `disconnect` with functions that note the call, then call
   * the original, until the subscriber is closed (the originals are put back).
   *
   * @returns whether both could be replaced (not a frozen or read-only consumer)
   */
  #watchOwnerCalls(): boolean {
    const consumer = this.#consumer as unknown as Record<string, unknown>;
    // Calls from this subscriber's own close() come after the originals are put back.
    const note = (): void => {
      this.#ownerCalled = true;
    };
    let watched = true;
    for (const name of ["stop", "disconnect"]) {
      const original = consumer[name];
      if (typeof original !== "function") {
        watched = false;
        continue;
      }
      const own = Object.hasOwn(consumer, name);
      const noted = function (this: unknown, ...args: unknown[]): unknown {
        note();
        return original.apply(this, args);
      };
      try {
        consumer[name] = noted;
      } catch {
        // A frozen consumer, or one whose method is a getter only.
      }
      if (consumer[name] !== noted) {
        watched = false;
        continue;
      }
      this.#removers.push(() => {
        if (consumer[name] !== noted) return;
        if (own) consumer[name] = original;
        else delete consumer[name];
      });
    }
    return watched;
  }

  #halt(error: PosthornError, why: string): void {
    this.#crashed = error;
    this.#crashedWhy = why;
    this.#endSettlements(error, why);
    this.#queue.fail(error);
    this.#settleStart(error);
    this.#drain.wake();
  }

  /** Ends the waits of the reject()s still writing (the first reason stays). */
  #endSettlements(reason: PosthornError, why: string): void {
    if (this.#settlingEnded === undefined) {
      this.#settlingEnded = reason;
      this.#settlingEndedWhy = why;
    }
    for (const stop of this.#deadLettering) stop.abort(this.#settlingEnded);
    this.#deadLettering.clear();
  }

  /** After a join: whether the start offsets are known now, or at the next fetch. */
  #joinedGroup(assignment: Record<string, number[]> | undefined): void {
    if (this.#startSettled) return;
    this.#fetchingSinceJoin = new Set();
    // Only a partition with no committed offset that starts from the end has a start that moves
    // until the consumer looks it up: the beginning, or a committed offset, is behind every record
    // published from now on whenever it is looked up.
    const none = assignment !== undefined && Object.values(assignment).every((p) => p.length === 0);
    if (none || this.#options.fromBeginning === true) this.#settleStart();
  }

  #track(topic: string, partition: number): PartitionTrack {
    const key = `${partition}:${topic}`;
    let track = this.#tracks.get(key);
    if (track === undefined) {
      track = new PartitionTrack(topic, partition);
      this.#tracks.set(key, track);
    }
    return track;
  }

  /** Forgets the partitions this member no longer owns (after a rebalance). */
  #forgetLost(owned: (topic: string, partition: number) => boolean): void {
    for (const [key, track] of this.#tracks) {
      if (!owned(track.topic, track.partition)) {
        track.dropped = true;
        this.#tracks.delete(key);
        this.#dirty.delete(track);
        if (this.#paused.delete(key)) {
          // kafkajs keeps a pause across rebalances: left paused, a partition given back to this
          // member later would never be read again, since nothing here would resume it.
          try {
            this.#consumer.resume([{ topic: track.topic, partitions: [track.partition] }]);
          } catch {
            // A client that refuses to resume a partition it no longer has kept no pause for it.
          }
        }
      }
    }
  }

  /**
   * With the confluent client (no GROUP_JOIN event), the current assignment says what is owned.
   * It runs per batch, and that client's batches hold one record: a scan of the few partitions,
   * without building keys or a set.
   */
  #followAssignment(): void {
    const assignment = (
      this.#consumer as { assignment?: () => { topic: string; partition: number }[] }
    ).assignment?.();
    if (!Array.isArray(assignment)) return;
    this.#forgetLost((topic, partition) =>
      assignment.some((a) => a.partition === partition && a.topic === topic),
    );
  }

  async #eachBatch(payload: KafkaBatchPayload): Promise<void> {
    const { topic, partition, messages } = payload.batch;
    if (this.#confluent) this.#followAssignment();
    const track = this.#track(topic, partition);
    // Stop at close (nothing more is handed out or resolved: the next owner fetches it), and when
    // a seek made this batch stale. Asked once per batch: nothing in the loop below awaits, so no
    // close, stop or seek (a release runs in the application's code) comes between its records;
    // and kafkajs's isStale() builds a JSON key per call (0.5 µs of a record's ~85 µs end to end).
    if (this.#stopping || payload.isRunning?.() === false || payload.isStale?.() === true) return;
    for (const record of messages) {
      const entry = track.receive(record.offset);
      payload.resolveOffset(record.offset);
      if (entry !== undefined) {
        this.#inFlight++;
        this.#queue.push(this.#deliver(track, entry, record));
      }
    }
    if (this.#inFlight >= this.#maxInFlight && !this.#stopping) {
      this.#paused.set(`${partition}:${topic}`, track);
      this.#consumer.pause([{ topic, partitions: [partition] }]);
    }
  }

  #deliver(track: PartitionTrack, entry: Entry, record: KafkaConsumedRecord): Delivery {
    const { topic, partition } = track;
    const read = readKafkaRecord(
      {
        key: record.key,
        value: record.value,
        headers: record.headers,
        timestamp: record.timestamp,
      },
      this.#options,
      { topic, partition, offset: record.offset },
    );
    const deliveryCount = previousDeliveries(record) + entry.deliveries;
    const settle = (): void => this.#settled();
    return createDelivery({
      message: read.message,
      event: read.event,
      error: read.error,
      deliveryCount,
      capabilities: this.capabilities,
      unsupported: KAFKA_UNSUPPORTED,
      accept: () => {
        this.#checkOpen("accept");
        this.#done(track, entry);
        settle();
      },
      release: () => {
        this.#checkOpen("release");
        try {
          this.#release(track, entry);
        } finally {
          // Settled even when the seek fails: the record is released in this subscriber's
          // books, and comes again from the last commit after a restart or a rebalance.
          settle();
        }
      },
      reject: async (reason) => {
        this.#checkOpen("reject");
        if (track.dropped) {
          // The partition moved to another member in a rebalance, which gets this record from
          // the last commit and settles it there: a dead-letter copy written here would be a
          // second outcome for one record.
          settle();
          return;
        }
        try {
          await this.#deadLetter(record, topic, partition, deliveryCount, reason);
        } catch (err) {
          if (err !== undefined && err === this.#settlingEnded) {
            // Closed (past drainTimeoutMs) or stopped for good while the write ran: nothing can
            // be committed any more, so the record is not done and comes again on the next
            // start; no seek on a consumer that is stopping.
            settle();
            throw new PosthornError(
              "SettlementFailed",
              `reject failed: ${this.#settlingEndedWhy} before the dead-letter write to ${this.#options.deadLetterTopic} was acknowledged, so nothing is committed and the record will be delivered again; the write is not recalled: if it completes, the dead-letter topic holds a copy too`,
              { cause: err },
            );
          }
          // Not dead-lettered (or not known to be), so not done: nothing is committed past it,
          // and it is delivered again rather than lost.
          try {
            this.#release(track, entry);
          } catch {
            // No seek (the consumer stopped or crashed meanwhile): the record is still not done,
            // so it comes again from the last commit.
          } finally {
            settle();
          }
          const timedOut = isPosthornError(err) && err.code === "Timeout";
          throw new PosthornError(
            "SettlementFailed",
            timedOut
              ? `reject failed: the record was not written to ${this.#options.deadLetterTopic} within deadLetterTimeoutMs, so it will be delivered again`
              : `reject failed: the record could not be written to ${this.#options.deadLetterTopic}, so it will be delivered again`,
            { cause: fromKafkaError(err, "dead-letter publish"), retryable: true },
          );
        }
        this.#done(track, entry);
        settle();
      },
    });
  }

  #checkOpen(what: string): void {
    if (this.#crashed !== undefined) {
      throw new PosthornError(
        "SettlementFailed",
        `cannot ${what}: ${this.#crashedWhy}, so nothing more is committed; the record will be delivered again to the group's next member`,
        { cause: this.#crashed },
      );
    }
    if (this.#closed) {
      // SettlementFailed, as settling a delivery that can no longer be settled is in every
      // binding; the subscriber being closed is the reason.
      throw new PosthornError(
        "SettlementFailed",
        `cannot ${what}: the subscriber is closed, and the record will be delivered again`,
      );
    }
  }

  #done(track: PartitionTrack, entry: Entry): void {
    if (track.dropped) return;
    track.done(entry);
    if (track.watermark() > track.committed) this.#scheduleCommit(track);
  }

  #release(track: PartitionTrack, entry: Entry): void {
    if (track.dropped) return;
    entry.state = "released";
    // kafkajs keeps one pending seek per partition: always seek to the lowest released record.
    const offset = track.lowestReleased() ?? entry.offset;
    this.#consumer.seek({ topic: track.topic, partition: track.partition, offset: String(offset) });
  }

  async #deadLetter(
    record: KafkaConsumedRecord,
    topic: string,
    partition: number,
    deliveryCount: number,
    reason: string | undefined,
  ): Promise<void> {
    const producer = this.#options.producer as KafkaProducerLike;
    const headers: Record<string, KafkaSendHeaderValue> = { ...(record.headers ?? {}) };
    headers[DEAD_LETTER_HEADERS.reason] = reason ?? "";
    headers[DEAD_LETTER_HEADERS.topic] = topic;
    headers[DEAD_LETTER_HEADERS.partition] = String(partition);
    headers[DEAD_LETTER_HEADERS.offset] = record.offset;
    headers[DELIVERY_COUNT_HEADER] = String(deliveryCount);
    const deadLetterTopic = this.#options.deadLetterTopic as string;
    const sent = producer.send({
      topic: deadLetterTopic,
      messages: [{ key: record.key ?? null, value: record.value ?? null, headers }],
    });
    const limitMs = this.#options.deadLetterTimeoutMs ?? DEFAULT_DEAD_LETTER_TIMEOUT_MS;
    // kafkajs retries an unknown topic or a broker that does not answer for as long as its retry
    // settings allow (minutes by default), and the record holds its partition's checkpoint
    // meanwhile: the time limit bounds that wait. The send goes on unobserved past it.
    const stop = new AbortController();
    this.#deadLettering.add(stop);
    try {
      await settleWithin(sent, {
        timeoutMs: limitMs,
        signal: stop.signal,
        aborted: () => stop.signal.reason as PosthornError,
        timedOut: () =>
          new PosthornError(
            "Timeout",
            `no acknowledgement of the dead-letter write to ${deadLetterTopic} within ${limitMs} ms`,
          ),
      });
    } finally {
      this.#deadLettering.delete(stop);
    }
  }

  #settled(): void {
    this.#inFlight--;
    if (this.#paused.size > 0 && this.#inFlight <= this.#maxInFlight / 2 && !this.#closed) {
      const tracks = [...this.#paused.values()];
      this.#paused.clear();
      this.#consumer.resume(tracks.map((t) => ({ topic: t.topic, partitions: [t.partition] })));
    }
    this.#drain.wake();
  }

  #scheduleCommit(track: PartitionTrack): void {
    this.#dirty.add(track);
    this.#flushing ??= this.#flush();
  }

  async #flush(): Promise<void> {
    try {
      while (this.#dirty.size > 0) {
        const interval = this.#options.commitIntervalMs ?? DEFAULT_COMMIT_INTERVAL_MS;
        // Closing commits what is left at once.
        if (interval > 0 && !this.#closed) await new Promise((r) => setTimeout(r, interval));
        const tracks = [...this.#dirty].filter((t) => !t.dropped);
        this.#dirty.clear();
        // Each commit pairs a partition with the mark taken now: accepts that land while the
        // commit is in flight move the watermark on and are committed by the next round.
        const commits: { track: PartitionTrack; mark: bigint }[] = [];
        for (const track of tracks) {
          const mark = track.watermark();
          if (mark > track.committed) commits.push({ track, mark });
        }
        if (commits.length === 0) continue;
        try {
          await this.#consumer.commitOffsets(
            commits.map(({ track, mark }) => ({
              topic: track.topic,
              partition: track.partition,
              offset: String(mark),
            })),
          );
          for (const { track, mark } of commits) {
            if (mark > track.committed) track.committed = mark;
          }
        } catch (err) {
          // The next accept (or close) commits again; a commit that fails after a rebalance is
          // harmless: the new owner delivers from the last commit.
          this.#report(fromKafkaError(err, "commit offsets", "SettlementFailed"));
        }
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  /**
   * Hands an error that has no caller to `onError`. What that throws has nowhere to go either:
   * let out of the background commit, it was an unhandled rejection (which ends a Node process)
   * and the reason close() rejected.
   */
  #report(error: PosthornError): void {
    try {
      this.#options.onError?.(error);
    } catch {
      // Dropped: see above.
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    // Leaving a for-await loop closes the subscriber: a consumer left running would keep its
    // partitions and fetch records nobody settles, and their commits would stall.
    return closeOnReturn(this.#queue[Symbol.asyncIterator](), () => this.close());
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#ownerStopTimer);
    // Closed before the start offsets were known: `ready` says why (a no-op once it settled).
    this.#settleStart(
      new PosthornError("Closed", "the Kafka subscriber was closed before it was ready"),
    );
    // Deliveries not yet pulled are never handed out: they are neither done nor committed.
    const unpulled = this.#queue.drain();
    this.#inFlight -= unpulled.length;
    this.#queue.end();
    const drainMs = this.#options.drainTimeoutMs ?? 0;
    const drained = () => this.#inFlight === 0 || this.#crashed !== undefined;
    if (drainMs > 0 && !drained()) await this.#drain.wait(drainMs, drained);
    this.#closed = true;
    // A reject() still writing its dead-letter copy fails now, rather than keeping its timer
    // (up to deadLetterTimeoutMs) past close() and committing on a stopped consumer if the
    // write completed later.
    this.#endSettlements(
      new PosthornError("Closed", "the Kafka subscriber was closed while the settlement ran"),
      "the subscriber was closed",
    );
    // Commit what was accepted while the consumer still runs (kafkajs ignores commits after stop),
    // and stop it only once run() returned (a stop during kafkajs' join is ignored).
    await this.#running.catch(() => {});
    // A crashed consumer was disconnected by kafkajs: a commit would only fail.
    if (this.#crashed === undefined) {
      for (const track of this.#tracks.values()) {
        if (track.watermark() > track.committed) this.#dirty.add(track);
      }
    } else this.#dirty.clear();
    while (this.#flushing !== undefined || this.#dirty.size > 0) {
      this.#flushing ??= this.#flush();
      await this.#flushing;
    }
    for (const remove of this.#removers.splice(0)) remove();
    if (!this.#ran) {
      // It never ran the consumer (one the application runs itself, or a start that failed):
      // stopping or pausing it would end the application's own run.
      consumersInUse.delete(this.#consumer);
      return;
    }
    try {
      if (this.#confluent) {
        // Its KafkaJS API has no stop() ("Not implemented"): pausing every assigned partition
        // ends the fetching; disconnecting is the owner's.
        const assignment =
          (
            this.#consumer as { assignment?: () => { topic: string; partition: number }[] }
          ).assignment?.() ?? [];
        if (assignment.length > 0) {
          this.#consumer.pause(
            assignment.map((a) => ({ topic: a.topic, partitions: [a.partition] })),
          );
        }
      } else {
        await this.#consumer.stop();
        // Stopped, a kafkajs consumer can subscribe and run again: another subscriber may have it.
        consumersInUse.delete(this.#consumer);
      }
    } catch (err) {
      throw fromKafkaError(err, "stopping the Kafka consumer");
    }
  }
}

/**
 * How long a stop or disconnect of the consumer that the subscriber did not make may wait for the
 * crash report that explains it (kafkajs sends it once the consumer is disconnected and its
 * `restartOnFailure` answered) before it counts as the owner's.
 */
const OWNER_STOP_GRACE_MS = 1000;

/** The consumers a subscriber runs (until it is closed and the consumer stopped). */
const consumersInUse = new WeakSet<KafkaConsumerLike>();

/** kafkajs's refusal to subscribe a consumer that runs. */
const RUNNING = /while consumer is running/;

/** Deliveries a record had before it was written where it is now (dead-letter or retry topics). */
function previousDeliveries(record: KafkaConsumedRecord): number {
  let raw = record.headers?.[DELIVERY_COUNT_HEADER];
  if (Array.isArray(raw)) raw = raw[raw.length - 1];
  if (raw === undefined || raw === null || raw.length > 9) return 0;
  const text = typeof raw === "string" ? raw : String.fromCharCode(...(raw as Uint8Array));
  return COUNT.test(text) ? Number(text) : 0;
}

const COUNT = /^\d{1,9}$/;
