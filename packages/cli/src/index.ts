export type {
  EndpointDriver,
  EndpointOptions,
  EndpointSubscriber,
  EndpointTlsOptions,
  ModeSupport,
  ResolvedEndpoint,
  TransportTraits,
} from "./driver.js";
export {
  createPublisher,
  createSubscriber,
  type Endpoint,
  listeningDisplay,
  listTransports,
  loadDriver,
  openEndpoint,
} from "./endpoint.js";
export {
  FORMAT_NAMES,
  type FormatName,
  type HostPort,
  hidePassword,
  MODE_NAMES,
  type ParsedEndpointUrl,
  parseEndpointUrl,
} from "./endpoint-url.js";
export { type BuildEventOptions, buildEvent, parseEventsText } from "./input.js";
export { describeError, redact, registerSecret } from "./redact.js";
