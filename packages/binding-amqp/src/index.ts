export {
  AMQP_PREFIX,
  type AmqpCodec,
  type AmqpIntegerType,
  type AmqpMessage,
  type AmqpPrefix,
  DATA_SECTION_TYPECODE,
  SEQUENCE_SECTION_TYPECODE,
} from "./amqp-message.js";
export { type EncodeAmqpMessageOptions, encodeAmqpMessage } from "./encode-message.js";
export {
  AMQP_ERROR_TABLE,
  type AmqpErrorContext,
  conditionOf,
  translateAmqpError,
} from "./errors.js";
export {
  type AmqpGuardOptions,
  DEFAULT_GUARD_MAX_FRAME_BYTES,
  DEFAULT_GUARD_MAX_MESSAGE_BYTES,
  FrameGuard,
  type GuardedListenOptions,
  guardedConnect,
  guardedListen,
  guardSocket,
  type RheaConnect,
  type RheaContainerLike,
  withFrameGuard,
} from "./frame-guard.js";
export {
  type AmqpDecoded,
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_MAX_PROPERTIES,
  decodeAmqpMessage,
  type FromAmqpMessageOptions,
  fromAmqpMessage,
  readAmqpMessage,
} from "./from-message.js";
export {
  type AmqpPublisher,
  type AmqpPublisherOptions,
  type AmqpPublishOptions,
  amqpPublisher,
  DEFAULT_CLOSE_TIMEOUT_MS,
} from "./publisher.js";
export {
  AMQP_SETTLEMENT_CAPABILITIES,
  type AmqpSubscriber,
  type AmqpSubscriberOptions,
  amqpSubscriber,
  deliveryCountOf,
} from "./subscriber.js";
export { type ToAmqpMessageOptions, toAmqpMessage } from "./to-message.js";
export {
  checkAmqpMessage,
  DEFAULT_GUARD_MAX_DEPTH,
  DEFAULT_GUARD_MAX_VALUES,
  UNDECODABLE_ANNOTATION,
} from "./wire-check.js";
