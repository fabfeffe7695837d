// One side of an end-to-end transport in a loop, for profiling (`node --cpu-prof`) and for quick
// before/after comparisons outside the full suite. `node bench/build.mjs` bundles every file in
// bench/probes/ as it bundles the suites (never time them under tsx):
//
//   node bench/build.mjs
//   node bench/.build/probes/e2e-side.mjs amqp both 1024 10 20000
//   node --cpu-prof --cpu-prof-dir=/tmp/prof bench/.build/probes/e2e-side.mjs kafka ours 1024 10 30000
//
// Arguments: transport (amqp, ws, js, kafka, mqtt, nats), side (ours, raw or both), payload bytes,
// batch size, events per round. Prints events per second and CPU microseconds per event for
// three rounds of each side.
import { payloadEvents, runSide } from "../e2e.ts";
import { e2eTransports as transports } from "../transports.ts";

const [name = "", which = "both", size = "1024", batch = "10", count = "20000"] =
  process.argv.slice(2);
const make = transports[name];
if (make === undefined) {
  console.error(`usage: e2e-side.mjs <${Object.keys(transports).join("|")}> [ours|raw|both] ...`);
  process.exit(2);
}
const n = Number(count);
const b = Number(batch);
const session = await make().open();
const sides = session.prepare(payloadEvents(Number(size), 64));
await runSide(sides.raw, 500, b);
await runSide(sides.ours, 500, b);
const order = which === "both" ? (["raw", "ours"] as const) : ([which as "raw" | "ours"] as const);
for (let round = 0; round < 3; round++) {
  for (const side of order) {
    const cpu = process.cpuUsage();
    const started = performance.now();
    await runSide(sides[side], n, b);
    const ms = performance.now() - started;
    const used = process.cpuUsage(cpu);
    const cpuUs = (used.user + used.system) / n;
    console.log(`${side}: ${Math.round((n / ms) * 1000)}/s, ${cpuUs.toFixed(2)} µs CPU per event`);
  }
}
await session.close();
