export { createFetchHandler, readRequestBody, toResponse } from "./fetch-handler.js";
export {
  DEFAULT_MAX_BATCH_EVENTS,
  DEFAULT_MAX_BODY_BYTES,
  type DetectedMode,
  detectMode,
  type FromHttpMessageOptions,
  fromHttpMessage,
  type HttpHeadersInput,
  type ReceivedHttpMessage,
} from "./from-message.js";
export {
  createNodeHandler,
  handleNodeRequest,
  type NodeRequestLike,
  type NodeResponseLike,
  readNodeBody,
} from "./node-handler.js";
export {
  HttpPublisher,
  type HttpPublisherOptions,
  type HttpPublishOptions,
  httpPublisher,
  parseRetryAfter,
  type RetryOptions,
} from "./publisher.js";
export {
  type AuthorizeContext,
  type ClientSignal,
  HTTP_CAPABILITIES,
  type HttpDelivery,
  HttpReceiver,
  type HttpReceiverOptions,
  type HttpReceiverRequest,
  type HttpReply,
  httpReceiver,
  type ReceiverOrOptions,
} from "./receiver.js";
export {
  formatContentType,
  HEADER_PREFIX,
  type HttpMessage,
  type ToHttpMessageOptions,
  toHttpMessage,
} from "./to-message.js";
export {
  answerWebhookValidation,
  confirmWebhookCallback,
  readWebhookApproval,
  readWebhookGrant,
  WEBHOOK_HEADERS,
  type WebhookApproval,
  type WebhookCallbackRequest,
  type WebhookConfirmOptions,
  type WebhookGrant,
  type WebhookPermission,
  type WebhookReceiverOptions,
  type WebhookSenderOptions,
} from "./webhook.js";
