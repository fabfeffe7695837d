import { bridge } from "./bridge.js";

const [from, to] = process.argv.slice(2);
if (!from || !to) {
  console.error("usage: main.ts <from-url> <to-url>");
  process.exit(2);
}
const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
try {
  const counts = await bridge(from, to, {
    signal: stop.signal,
    onReady: (port) =>
      console.error(
        `bridging ${from}${port === undefined ? "" : ` (listening on port ${port})`} -> ${to}; Ctrl-C to stop`,
      ),
  });
  console.log(counts);
} catch (err) {
  // A PosthornError says what failed and where (an unreachable broker, a bad URL).
  console.error(`bridge failed: ${(err as Error).message}`);
  process.exitCode = 1;
}
