import { defineConfig } from "tsup";
import { packageBuild } from "../../tsup.shared.ts";

// The root holds the vitest suites; the subpaths need no vitest: `vectors` (event vectors),
// `brokers` (launchers and port helpers) and `kafka` (the Kafka-protocol test broker).
export default {
  ...defineConfig(
    packageBuild({
      index: "src/index.ts",
      vectors: "src/vectors.ts",
      brokers: "src/brokers.ts",
      kafka: "src/kafka.ts",
    }),
  ),
  platform: "node",
};
