// End-to-end latency of one transport at a fixed rate, both sides alternating, with the slow
// events listed by index (a stall hits a run of consecutive events). Bundled by bench/build.mjs:
//
//   node bench/.build/probes/latency.mjs kafka        # after a short warm-up
//   node bench/.build/probes/latency.mjs kafka sweep  # after 20,000 events per side first, as
//                                                     # the full suite measures after its sweeps

import { latencyRun, payloadEvents, runSide } from "../e2e.ts";
import { percentile } from "../lib.ts";
import { e2eTransports as transports } from "../transports.ts";

const [name = "", mode = ""] = process.argv.slice(2);
const make = transports[name];
if (make === undefined) {
  console.error(`usage: latency.mjs <${Object.keys(transports).join("|")}> [sweep]`);
  process.exit(2);
}
const session = await make().open();
const sides = session.prepare(payloadEvents(1024, 64));
if (mode === "sweep") {
  await runSide(sides.raw, 20_000, 10);
  await runSide(sides.ours, 20_000, 10);
}
await runSide(sides.raw, 500, 10);
await runSide(sides.ours, 500, 10);
for (let round = 0; round < 3; round++) {
  for (const side of ["raw", "ours"] as const) {
    const l = await latencyRun(sides[side], 1000, 3000);
    const slow = l.flatMap((ms, i) => (ms > 10 ? [`${i}:${ms.toFixed(0)}`] : []));
    console.log(
      `${side}: p50 ${percentile(l, 50).toFixed(2)} ms, p99 ${percentile(l, 99).toFixed(2)} ms, ` +
        `max ${Math.max(...l).toFixed(1)} ms, ${slow.length} over 10 ms ${slow.slice(0, 12).join(" ")}`,
    );
  }
}
await session.close();
