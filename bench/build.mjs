// Bundles the benchmark runner and every suite into bench/.build/ (git-ignored) before a run, so
// that Posthorn's TypeScript sources run compiled the way the published packages are (tsup,
// esbuild, no `keepNames`). Running them through tsx instead would wrap every named function
// expression in a `__name()` call (tsx compiles with keepNames on): closures created per event
// then cost 10-30x more, and the baselines, plain JavaScript from node_modules, would not pay it.
// `@posthorn/*` imports resolve to packages/*/src through the root tsconfig paths and are bundled;
// every other package stays an import of node_modules.
import { readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, ".build");
rmSync(out, { recursive: true, force: true });
const suites = readdirSync(join(here, "suites")).filter((f) => f.endsWith(".bench.ts"));
const probes = readdirSync(join(here, "probes")).filter((f) => f.endsWith(".ts"));
await build({
  entryPoints: [
    { in: join(here, "run.ts"), out: "run" },
    { in: join(here, "profile.ts"), out: "profile" },
    ...suites.map((f) => ({
      in: join(here, "suites", f),
      out: `suites/${f.replace(/\.ts$/, "")}`,
    })),
    ...probes.map((f) => ({
      in: join(here, "probes", f),
      out: `probes/${f.replace(/\.ts$/, "")}`,
    })),
  ],
  outdir: out,
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  packages: "external",
  tsconfig: join(here, "..", "tsconfig.json"),
  sourcemap: "linked",
  logLevel: "warning",
});
