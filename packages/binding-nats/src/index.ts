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
  decodeHeaderValue,
  encodeHeaderValue,
  NatsHeaders,
} from "./headers.js";
export {
  CE_HEADER_PREFIX,
  CONTENT_TYPE_HEADER,
  type NatsContentMode,
  type NatsEncodeOptions,
  type NatsMessage,
  toNatsMessage,
} from "./to-message.js";
