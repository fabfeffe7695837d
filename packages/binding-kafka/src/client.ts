/**
 * The parts of a Kafka client the I/O layer uses, written structurally so that kafkajs objects
 * and the KafkaJS-compatible API of `@confluentinc/kafka-javascript` both fit without either
 * library's types leaking into Posthorn's API.
 */

/** A header value a producer can send. */
export type KafkaSendHeaderValue =
  | Uint8Array
  | string
  | readonly (Uint8Array | string)[]
  | undefined;

/** One record as a producer's `send` takes it. */
export interface KafkaSendMessage {
  /** The record key; `null` or absent for none. */
  key?: Uint8Array | string | null;
  /** The record value; `null` is a tombstone. */
  value: Uint8Array | string | null;
  /** The partition to write to; the producer's partitioner chooses when absent. */
  partition?: number;
  /** Record headers by name; an array sends the name once per value. */
  headers?: Record<string, KafkaSendHeaderValue>;
  /** The record's timestamp, in epoch milliseconds as a decimal string. */
  timestamp?: string;
}

/** What `send` takes: a topic and its records. */
export interface KafkaSendRecord {
  /** The topic written to. */
  topic: string;
  /** The records, in order. */
  messages: KafkaSendMessage[];
  /** Acknowledgements required: -1 all in-sync replicas, 1 the leader, 0 none. */
  acks?: number;
  /** How long the broker may wait for the acknowledgements, in milliseconds. */
  timeout?: number;
}

/** A kafkajs `Producer` (or a compatible one), connected by its owner. */
export interface KafkaProducerLike {
  /** Writes records to one topic; resolves when the broker acknowledged them as `acks` asks. */
  send(record: KafkaSendRecord): Promise<unknown>;
}

/** One record as a consumer delivers it (kafkajs' `KafkaMessage`). */
export interface KafkaConsumedRecord {
  /** The record key; `null` or `undefined` for none. */
  readonly key: Uint8Array | string | null | undefined;
  /** The record value; `null` is a tombstone. */
  readonly value: Uint8Array | string | null | undefined;
  /** Record headers by name; an array when the name was repeated. */
  readonly headers?:
    | Readonly<Record<string, Uint8Array | string | readonly (Uint8Array | string)[] | undefined>>
    | undefined;
  /** The record's timestamp, in epoch milliseconds as a decimal string. */
  readonly timestamp?: string;
  /** The record's offset in its partition, as a decimal string. */
  readonly offset: string;
}

/** What a consumer passes to `eachBatch` (kafkajs' `EachBatchPayload`). */
export interface KafkaBatchPayload {
  /** The records fetched from one partition. */
  readonly batch: {
    /** Their topic. */
    readonly topic: string;
    /** Their partition. */
    readonly partition: number;
    /** The records, in offset order. */
    readonly messages: readonly KafkaConsumedRecord[];
  };
  /** Marks a record as processed: the partition's next fetch starts after it. */
  resolveOffset(offset: string): void;
  /** Whether the consumer is still running; false once it is stopping. */
  isRunning?(): boolean;
  /** Whether the batch is out of date (after a seek or a rebalance) and should be dropped. */
  isStale?(): boolean;
}

/** A topic and, optionally, some of its partitions. */
export interface KafkaTopicPartitions {
  /** The topic. */
  topic: string;
  /** Some of its partitions; all of them when absent. */
  partitions?: number[];
}

/** A partition's offset to commit or seek to. */
export interface KafkaTopicPartitionOffset {
  /** The topic. */
  topic: string;
  /** The partition. */
  partition: number;
  /** The offset as a decimal string: to commit, the next one to read; to seek, where to go. */
  offset: string;
}

/** A kafkajs `Consumer` (or a compatible one), connected by its owner and not yet running. */
export interface KafkaConsumerLike {
  /** Subscribes to topics before `run`. */
  subscribe(subscription: {
    /** Topic names, or patterns that match them. */
    topics: (string | RegExp)[];
    /** Where a group with no committed offset starts: the earliest offset when true. */
    fromBeginning?: boolean;
  }): Promise<void>;
  /** Starts fetching; the subscriber passes its own `eachBatch` and commits offsets itself. */
  run(config: {
    /** Called with each fetched batch; the next batch of the partition waits for it. */
    eachBatch: (payload: KafkaBatchPayload) => Promise<void>;
    /** Whether every record of a batch counts as processed once `eachBatch` returns. */
    eachBatchAutoResolve?: boolean;
    /** Whether the consumer commits offsets on its own. */
    autoCommit?: boolean;
    /** How many partitions' batches are handled at once. */
    partitionsConsumedConcurrently?: number;
  }): Promise<void>;
  /** Commits offsets for the group. */
  commitOffsets(offsets: KafkaTopicPartitionOffset[]): Promise<void>;
  /** Makes the next fetch of a partition start at an offset. */
  seek(offset: KafkaTopicPartitionOffset): void;
  /** Stops fetching from these partitions until `resume`. */
  pause(topics: KafkaTopicPartitions[]): void;
  /** Fetches again from paused partitions. */
  resume(topics: KafkaTopicPartitions[]): void;
  /** Stops fetching, leaving the consumer connected. */
  stop(): Promise<void>;
  /**
   * Instrumentation events (kafkajs); used to follow rebalances and crashes, and to tell when the
   * start offsets are known, when present.
   */
  on?(eventName: never, listener: never): unknown;
  /** The names of the instrumentation events, to pass to `on`. */
  readonly events?: {
    /** Emitted when the consumer joined its group, with its new assignment. */
    readonly GROUP_JOIN?: string;
    /** Emitted when the consumer crashed. */
    readonly CRASH?: string;
    /** Emitted when the consumer stopped (its owner's `stop()`, or before a crash report). */
    readonly STOP?: string;
    /** Emitted when the consumer disconnected (its owner's `disconnect()`, or a crash). */
    readonly DISCONNECT?: string;
    /** Emitted when a fetch from one broker (`payload.nodeId`) starts. */
    readonly FETCH_START?: string;
    /** Emitted when a fetch from one broker (`payload.nodeId`) has returned. */
    readonly FETCH?: string;
  };
}
