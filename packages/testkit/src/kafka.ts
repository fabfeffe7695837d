// The Kafka-protocol test broker on its own subpath (`@posthorn/testkit/kafka`), for programs
// such as the posthorn demo that need it without the vitest suites of the package root.
export {
  type KafkaTestBroker,
  type KafkaTestBrokerOptions,
  startKafkaBroker,
} from "./kafka/broker.js";
