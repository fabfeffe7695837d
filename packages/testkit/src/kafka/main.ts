/**
 * Runs the Kafka-protocol test broker standalone: `npx tsx packages/testkit/src/kafka/main.ts [port]`
 * (default port 9092; 0 picks a free one). Stops on SIGINT or SIGTERM.
 */

import { startKafkaBroker } from "./broker.js";

const arg = process.argv[2] ?? "9092";
const port = Number(arg);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`usage: main.ts [port]  (got ${JSON.stringify(arg)})`);
  process.exit(2);
}
const partitions = process.env.KAFKA_TEST_BROKER_PARTITIONS;
const broker = await startKafkaBroker({
  port,
  ...(partitions ? { defaultPartitions: Number(partitions) } : {}),
  log: (line) => console.log(`[kafka-test-broker] ${line}`),
  traceRequests: process.env.KAFKA_TEST_BROKER_TRACE === "1",
});
console.log(
  `Kafka test broker listening on ${broker.brokers.join(",")} (in memory; Ctrl-C to stop)`,
);
const shutdown = () => {
  void broker.stop().then(() => process.exit(0));
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
