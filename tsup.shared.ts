import type { Options } from "tsup";

/**
 * The build every package shares: ESM and CommonJS with declarations for both, so `publint` and
 * `attw` pass. A package passes its entry points (more than one for subpath exports).
 */
export function packageBuild(entry: Record<string, string> = { index: "src/index.ts" }): Options {
  return {
    entry,
    format: ["esm", "cjs"],
    dts: true,
    sourcemap: true,
    clean: true,
    target: "es2022",
    platform: "neutral",
    treeshake: true,
    splitting: false,
    tsconfig: "tsconfig.json",
  };
}
