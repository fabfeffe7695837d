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
export { JSON_EVENT_CONTENT_TYPE, toMqttMessage } from "./to-message.js";
