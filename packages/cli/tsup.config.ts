import { defineConfig } from "tsup";
import { packageBuild } from "../../tsup.shared.ts";

// ESM: the library and the command, code-split so that a driver (and its client library) loads
// only when its scheme is used. CJS: the library only; esbuild's lazy module wrappers keep the
// drivers' requires inside the dynamic imports there.
export default defineConfig([
  {
    ...packageBuild({ index: "src/index.ts", bin: "src/bin.ts" }),
    format: ["esm"],
    splitting: true,
    platform: "node",
    // The two builds run at once: neither cleans, or one would delete the other's output
    // (the build script empties dist/ first).
    clean: false,
  },
  { ...packageBuild({ index: "src/index.ts" }), format: ["cjs"], platform: "node", clean: false },
]);
