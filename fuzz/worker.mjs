// A worker thread runs TypeScript through tsx, which a worker does not inherit from `--import`
// on Node 20: register it here, with the repository's tsconfig (its paths map @posthorn/* to the
// packages' sources), then load the worker itself.
import { fileURLToPath } from "node:url";
import { register } from "tsx/esm/api";

register({ tsconfig: fileURLToPath(new URL("../tsconfig.json", import.meta.url)) });
await import("./worker.ts");
