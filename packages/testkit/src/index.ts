export {
  type BindingHarness,
  type BindingPath,
  describeBindingConformance,
  pathLabel,
} from "./binding-suite.js";
export {
  amqpProtocolAnswer,
  type BrokerName,
  brokerUrl,
  freePort,
  hostPort,
  inCi,
  type LaunchedBroker,
  type MosquittoOptions,
  type NatsServerOptions,
  portOpen,
  requireBroker,
  startMosquitto,
  startNatsServer,
  waitForPort,
} from "./brokers.js";
export {
  baselineHandles,
  countSocketWrites,
  DeliveryLedger,
  expectNoLeakedHandles,
  type FaultBroker,
  forEachConcurrently,
  type LedgerCounts,
  type OpenHandles,
  openHandles,
  type PublishRetryOptions,
  publishWithRetry,
  type SocketWriteCount,
  startPersistentMosquitto,
} from "./faults.js";
export {
  corruptions,
  describeFormatConformance,
  detectableInvalidVectors,
  expectEquivalent,
  expectTypedError,
  type FormatConformanceOptions,
} from "./format-suite.js";
export {
  type KafkaTestBroker,
  type KafkaTestBrokerOptions,
  startKafkaBroker,
} from "./kafka/broker.js";
export {
  type ArbitraryEventOptions,
  arbitraryEvent,
  arbitraryHeaders,
  describeFormatProperties,
  describeMappingProperties,
  expectEventOrTypedError,
  type MappingPropertyHarness,
  propertyRuns,
} from "./properties.js";
export {
  type Detectability,
  type EventVector,
  type InvalidVector,
  invalidEvent,
  invalidVectors,
  type VectorTag,
  validVectors,
  vector,
} from "./vectors.js";
