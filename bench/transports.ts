// Every end-to-end transport, by the short name the probes take on their command line, in the
// order the end-to-end suite runs them.

import {
  type E2eTransport,
  jetStreamTransport,
  kafkaTransport,
  mqttTransport,
  natsCoreTransport,
} from "./e2e.ts";
import { amqpTransport, webSocketTransport } from "./e2e-more.ts";

export const e2eTransports: Readonly<Record<string, () => E2eTransport>> = {
  mqtt: mqttTransport,
  nats: natsCoreTransport,
  js: jetStreamTransport,
  kafka: kafkaTransport,
  amqp: amqpTransport,
  ws: webSocketTransport,
};
