export { JETSTREAM_CAPABILITIES, NATS_CORE_CAPABILITIES } from "./capabilities.js";
export type {
  ConsumerLike,
  ConsumerMessagesLike,
  JetStreamClientLike,
  JsDeliveryInfoLike,
  JsMsgLike,
  NatsConnectionLike,
  NatsMsgLike,
  NatsServerInfoLike,
  NatsSubscribeOptionsLike,
  NatsSubscriptionLike,
  PubAckLike,
} from "./client.js";
export { type NatsOperation, translateNatsError } from "./errors.js";
export {
  DEFAULT_MAX_HEADERS,
  DEFAULT_MAX_PAYLOAD_BYTES,
  detectNatsMode,
  fromNatsMessage,
  type NatsDecodeOptions,
  type NatsHeadersLike,
  type NatsMessageLike,
  toMessageEnvelope,
} from "./from-message.js";
export {
  checkHeaderName,
  checkHeaderValue,
  decodeNatsHeaderValue,
  NatsHeaders,
} from "./headers.js";
export {
  DEFAULT_CLOSE_TIMEOUT_MS,
  type JetStreamPublisher,
  type JetStreamPublisherOptions,
  jetStreamPublisher,
  type NatsPublisher,
  type NatsPublisherOptions,
  type NatsPublishOptions,
  natsPublisher,
} from "./publisher.js";
export {
  DEFAULT_MAX_PENDING,
  DEFAULT_STOP_TIMEOUT_MS,
  type JetStreamSubscriber,
  type JetStreamSubscriberOptions,
  jetStreamSubscriber,
  type NatsSubscriber,
  type NatsSubscriberOptions,
  natsSubscriber,
} from "./subscriber.js";
export {
  CE_HEADER_PREFIX,
  CONTENT_TYPE_HEADER,
  type NatsContentMode,
  type NatsEncodeOptions,
  type NatsMessage,
  toNatsMessage,
} from "./to-message.js";
