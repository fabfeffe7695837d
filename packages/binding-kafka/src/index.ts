export type {
  KafkaBatchPayload,
  KafkaConsumedRecord,
  KafkaConsumerLike,
  KafkaProducerLike,
  KafkaSendHeaderValue,
  KafkaSendMessage,
  KafkaSendRecord,
  KafkaTopicPartitionOffset,
  KafkaTopicPartitions,
} from "./client.js";
export { fromKafkaError } from "./errors.js";
export {
  contentModeOf,
  fromKafkaRecord,
  type KafkaReadResult,
  kafkaRecordToMessage,
  readKafkaRecord,
} from "./from-record.js";
export { declaredKeyMapper, partitionKeyMapper } from "./key-mappers.js";
export {
  DEFAULT_CLOSE_TIMEOUT_MS,
  type KafkaAcks,
  type KafkaPublisher,
  type KafkaPublisherOptions,
  type KafkaPublishOptions,
  kafkaPublisher,
} from "./publisher.js";
export {
  ATTRIBUTE_PREFIX,
  CONTENT_TYPE_HEADER,
  DEFAULT_MAX_HEADERS,
  DEFAULT_MAX_VALUE_BYTES,
  DELIVERY_COUNT_HEADER,
  type KafkaContentMode,
  type KafkaDecodeOptions,
  type KafkaEncodeOptions,
  type KafkaHeaders,
  type KafkaHeaderValue,
  type KafkaRecord,
  type KeyMapper,
  type OutgoingKafkaRecord,
} from "./record.js";
export {
  DEAD_LETTER_HEADERS,
  DEFAULT_COMMIT_INTERVAL_MS,
  DEFAULT_DEAD_LETTER_TIMEOUT_MS,
  type KafkaSubscriber,
  type KafkaSubscriberOptions,
  kafkaCapabilities,
  kafkaSubscriber,
} from "./subscriber.js";
export { structuredContentType, toKafkaRecord } from "./to-record.js";
