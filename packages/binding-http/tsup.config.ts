import { defineConfig } from "tsup";
import { packageBuild } from "../../tsup.shared.ts";

export default defineConfig(
  packageBuild({
    index: "src/index.ts",
    "index.node": "src/index.node.ts",
    express: "src/express.ts",
    fastify: "src/fastify.ts",
  }),
);
