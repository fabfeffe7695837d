export {
  DEFAULT_MAX_BODY_BYTES,
  type DetectedMode,
  detectMode,
  type FromHttpMessageOptions,
  fromHttpMessage,
  type HttpHeadersInput,
  type ReceivedHttpMessage,
} from "./from-message.js";
export { decodeHeaderValue, encodeHeaderValue } from "./header-value.js";
export {
  formatContentType,
  HEADER_PREFIX,
  type HttpMessage,
  type ToHttpMessageOptions,
  toHttpMessage,
} from "./to-message.js";
