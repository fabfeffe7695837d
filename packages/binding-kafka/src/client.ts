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
  key?: Uint8Array | string | null;
  value: Uint8Array | string | null;
  partition?: number;
  headers?: Record<string, KafkaSendHeaderValue>;
  timestamp?: string;
}

/** What `send` takes: a topic and its records. */
export interface KafkaSendRecord {
  topic: string;
  messages: KafkaSendMessage[];
  acks?: number;
  timeout?: number;
}

/** A kafkajs `Producer` (or a compatible one), connected by its owner. */
export interface KafkaProducerLike {
  send(record: KafkaSendRecord): Promise<unknown>;
}

/** One record as a consumer delivers it (kafkajs' `KafkaMessage`). */
export interface KafkaConsumedRecord {
  readonly key: Uint8Array | string | null | undefined;
  readonly value: Uint8Array | string | null | undefined;
  readonly headers?:
    | Readonly<Record<string, Uint8Array | string | readonly (Uint8Array | string)[] | undefined>>
    | undefined;
  readonly timestamp?: string;
  readonly offset: string;
}

/** What a consumer passes to `eachBatch` (kafkajs' `EachBatchPayload`). */
export interface KafkaBatchPayload {
  readonly batch: {
    readonly topic: string;
    readonly partition: number;
    readonly messages: readonly KafkaConsumedRecord[];
  };
  resolveOffset(offset: string): void;
  isRunning?(): boolean;
  isStale?(): boolean;
}

/** A topic and, optionally, some of its partitions. */
export interface KafkaTopicPartitions {
  topic: string;
  partitions?: number[];
}

/** A partition's offset to commit or seek to. */
export interface KafkaTopicPartitionOffset {
  topic: string;
  partition: number;
  offset: string;
}

/** A kafkajs `Consumer` (or a compatible one), connected by its owner and not yet running. */
export interface KafkaConsumerLike {
  subscribe(subscription: { topics: (string | RegExp)[]; fromBeginning?: boolean }): Promise<void>;
  run(config: {
    eachBatch: (payload: KafkaBatchPayload) => Promise<void>;
    eachBatchAutoResolve?: boolean;
    autoCommit?: boolean;
    partitionsConsumedConcurrently?: number;
  }): Promise<void>;
  commitOffsets(offsets: KafkaTopicPartitionOffset[]): Promise<void>;
  seek(offset: KafkaTopicPartitionOffset): void;
  pause(topics: KafkaTopicPartitions[]): void;
  resume(topics: KafkaTopicPartitions[]): void;
  stop(): Promise<void>;
  /** Instrumentation events (kafkajs); used to follow rebalances and crashes when present. */
  on?(eventName: never, listener: never): unknown;
  readonly events?: { readonly GROUP_JOIN?: string; readonly CRASH?: string };
}
