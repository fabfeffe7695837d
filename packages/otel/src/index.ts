export {
  eventAttributes,
  type InstrumentOptions,
  instrumentPublisher,
  instrumentSubscriber,
  type TracedDelivery,
} from "./instrument.js";
export {
  extractTraceContext,
  formatTraceparent,
  injectTraceContext,
  parseTraceparent,
} from "./trace-context.js";
