export { ByteWriter, reusedWriter, varintSize } from "./byte-buffer.js";
export {
  asciiText,
  base64Decode,
  base64DecodeBytes,
  base64Encode,
  bytesEqual,
  inputBytes,
  isBase64,
  isBytes,
  lastIndexOfAscii,
  toUint8Array,
  utf8Decode,
  utf8Encode,
  utf8EncodeSpliced,
  utf8Length,
} from "./bytes.js";
export {
  type ContentType,
  isJsonContentType,
  isMediaType,
  isTextContentType,
  parseContentType,
  sameMediaType,
} from "./content-type.js";
export { type CorkableStream, corkForThisTick } from "./cork.js";
export {
  binaryContentType,
  DEFAULT_MAX_JSON_DEPTH,
  decodeData,
  effectiveContentType,
  encodeData,
  type JsonLimits,
  jsonDepthExceeds,
  jsonText,
  parseJson,
  withFormerMaxDepth,
} from "./data.js";
export { DEAD_LETTER_ORIGINAL_TOPIC, DEAD_LETTER_REASON } from "./dead-letter.js";
export {
  AsyncQueue,
  closeOnReturn,
  createDelivery,
  type DeliveryInit,
  Drain,
  limitTimer,
  MAX_TIMER_MS,
  settleWithin,
  type UnsupportedSettlements,
  type WaitBounds,
} from "./delivery.js";
export {
  asJob,
  type ContentMode,
  type Delivery,
  type Job,
  type Message,
  type PropertyValue,
  type Publisher,
  type PublishOptions,
  type ReleaseOptions,
  type SettlementCapabilities,
  type Subscriber,
} from "./envelopes.js";
export {
  type CanonicalData,
  type CanonicalEvent,
  canonicalize,
  canonicalMediaType,
  deepEqual,
  differences,
  type EquivalenceOptions,
  equivalent,
} from "./equivalence.js";
export {
  asDecodeError,
  type ErrorCode,
  invalidEvent,
  isCertificateErrorCode,
  isPosthornError,
  malformed,
  overLimit,
  PosthornError,
  type PosthornErrorOptions,
  quoted,
  thrownFor,
} from "./errors.js";
export {
  CloudEvent,
  type CloudEventAttributes,
  type CloudEventCreateInit,
  type CloudEventInit,
  type CloudEventLike,
  type CreateEventOptions,
  createUncheckedEvent,
  isCloudEvent,
  jsonMembers,
} from "./event.js";
export {
  CONTEXT_ATTRIBUTE_TYPES,
  declareExtension,
  type ExtensionDeclaration,
  ExtensionRegistry,
  extensions,
  isAttributeName,
  isContextAttribute,
  SPEC_EXTENSIONS,
} from "./extensions.js";
export {
  type BatchEventFormat,
  batchOf,
  type DataCodec,
  type EventFormat,
  type FormatMatch,
  findFormat,
  formatsGiven,
  formatWithRegistry,
  isCloudEventsContentType,
  noFormatFor,
} from "./format.js";
export { decodeHeaderValue, encodeHeaderValue, prefixedName } from "./header-value.js";
export { toCloudEventV1 } from "./interop.js";
export { NameIndex } from "./name-index.js";
export {
  checkChoiceOption,
  checkCountOption,
  checkTimeOption,
  DEFAULT_CLOSE_TIMEOUT_MS,
} from "./options.js";
export { type MessageProperties, ReceivedMessage } from "./received-message.js";
export {
  EventRouter,
  type EventRouterOptions,
  type FallbackReason,
  type InferOutput,
  type RouteHandler,
  type RouteMatch,
  type RouterFallback,
  type RouterRunOptions,
  type StandardIssue,
  type StandardResult,
  type StandardSchemaV1,
} from "./router.js";
export { SlotSet, type Slotted } from "./slot-set.js";
export {
  type AttributeType,
  type AttributeValue,
  asDeclaredType,
  canonicalString,
  canonicalTimestamp,
  checkValue,
  dateToTimestamp,
  formatInstant,
  type Instant,
  isAbsoluteUri,
  isInteger,
  isTimestamp,
  isUriReference,
  isValidString,
  parseCanonical,
  parseTimestamp,
  typeOfValue,
} from "./types.js";
export { decodeKey, decodeText, type TextSource } from "./wire-text.js";
