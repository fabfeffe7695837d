import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const root = fileURLToPath(new URL(".", import.meta.url));

// Tests run on source: every @posthorn/* import resolves to the package's src/, so no build is
// needed before `npm test`. The built output is checked separately by `npm run check:packages`.
export default defineConfig({
  resolve: {
    alias: [
      // The HTTP binding's Node entry point (its `node` export condition), as Node resolves it.
      {
        find: /^@posthorn\/binding-http$/,
        replacement: `${root}packages/binding-http/src/index.node.ts`,
      },
      { find: /^@posthorn\/([a-z0-9-]+)$/, replacement: `${root}packages/$1/src/index.ts` },
      {
        find: /^@posthorn\/([a-z0-9-]+)\/([a-z0-9-]+)$/,
        replacement: `${root}packages/$1/src/$2.ts`,
      },
      { find: /^posthorn$/, replacement: `${root}packages/cli/src/index.ts` },
    ],
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "examples/*/test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ["default"],
  },
});
