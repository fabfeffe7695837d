export { fromMqttError } from "./errors.js";
export {
  classifyMqttMessage,
  fromMqttMessage,
  type MqttEventMode,
  toPlainMessage,
} from "./from-message.js";
export {
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_MAX_USER_PROPERTIES,
  type FromMqttMessageOptions,
  type MqttLimits,
  type MqttMessage,
  type MqttProtocolVersion,
  type ToMqttMessageOptions,
} from "./mqtt-message.js";
export {
  clientProtocolVersion,
  DEFAULT_CLOSE_TIMEOUT_MS,
  DEFAULT_MAX_QUEUED,
  type MqttPublisherOptions,
  type MqttPublishOptions,
  type MqttQos,
  mqttPublisher,
} from "./publisher.js";
export {
  DEFAULT_MAX_PENDING,
  type MqttSubscriber,
  type MqttSubscriberOptions,
  mqttSubscriber,
  topicMatches,
} from "./subscriber.js";
export { JSON_EVENT_CONTENT_TYPE, toMqttMessage } from "./to-message.js";
