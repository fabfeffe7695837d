import { defineConfig } from "tsup";
import { packageBuild } from "../../tsup.shared.ts";

// The library (index) and the command (bin); the command runs on Node, so it is built for it.
export default defineConfig([
  packageBuild({ index: "src/index.ts" }),
  {
    ...packageBuild({ bin: "src/bin.ts" }),
    format: ["esm"],
    dts: false,
    platform: "node",
    clean: false,
  },
]);
