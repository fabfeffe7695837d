import { type E2eSession, latencyRun, payloadEvents, runSide } from "../e2e.ts";
import { type BenchSuite, compareThroughput, median, percentile, type Row } from "../lib.ts";
import { e2eTransports } from "../transports.ts";

// End to end, per transport: events per second through Posthorn's publisher AND subscriber
// (every delivery accepted), next to the raw client sending and receiving the same bytes,
// pre-encoded; payload sizes and batch sizes swept; then latency percentiles at a fixed rate.
// HTTP is measured by its own suite (request per event); every other transport is here.
const transports = Object.values(e2eTransports);

const KiB = 1024;
const sizeLabel = (n: number) =>
  n >= 1 << 20 ? `${n >> 20} MiB` : n >= KiB ? `${n / KiB} KiB` : `${n} B`;

export const suite: BenchSuite = {
  name: "End to end: publisher and subscriber vs the raw clients, payload and batch sweeps, latency",
  async run(ctx) {
    const rows: Row[] = [];
    // (payload bytes, batch size); quick mode keeps one middle case.
    const cases: [number, number][] = ctx.quick
      ? [[KiB, 10]]
      : [
          [100, 10],
          [KiB, 10],
          [64 * KiB, 10],
          [1 << 20, 10],
          [KiB, 1],
          [KiB, 100],
        ];
    // BENCH_E2E=amqp,mqtt runs only the transports whose names contain one of those words.
    const only = process.env.BENCH_E2E?.toLowerCase().split(",").filter(Boolean);
    for (const make of transports) {
      const transport = make();
      if (only && !only.some((word) => transport.name.toLowerCase().includes(word))) continue;
      let session: E2eSession;
      try {
        session = await transport.open();
      } catch (err) {
        console.warn(`${transport.name}: cannot start (${(err as Error).message}); skipped`);
        continue;
      }
      try {
        for (const [size, batch] of cases) {
          if (size > transport.maxPayloadBytes) continue;
          const events = payloadEvents(size, 64);
          const sides = session.prepare(events);
          // Budget: about 16 MiB (quick) or 64 MiB (full) of data per run, fewer for batches of 1.
          const budget = (ctx.quick ? 16 : 64) << 20;
          const cap = batch === 1 ? (ctx.quick ? 500 : 2_000) : ctx.quick ? 3_000 : 20_000;
          const count = Math.max(batch * 4, Math.min(cap, Math.floor(budget / size)));
          // Warm-up: connections, JIT, broker-side state.
          await runSide(sides.raw, Math.min(count, 200), batch);
          await runSide(sides.ours, Math.min(count, 200), batch);
          rows.push(
            await compareThroughput({
              group: `end to end: ${transport.name}`,
              name: `${sizeLabel(size)} events, batches of ${batch}`,
              count,
              rounds: ctx.quick ? 3 : 5,
              goal: 0.9,
              ours: {
                label: "posthorn publisher + subscriber",
                run: (n) => runSide(sides.ours, n, batch),
              },
              baseline: { label: transport.rawLabel, run: (n) => runSide(sides.raw, n, batch) },
              extra: { count, payloadBytes: size, batch },
            }),
          );
        }
        // Latency at a fixed rate, 1 KiB events sent one by one.
        const rate = ctx.quick ? 500 : 1000;
        const durationMs = ctx.quick ? 1000 : 4000;
        const sides = session.prepare(payloadEvents(KiB, 64));
        const ours: number[][] = [];
        const raw: number[][] = [];
        for (let r = 0; r < (ctx.quick ? 1 : 3); r++) {
          raw.push(await latencyRun(sides.raw, rate, durationMs));
          ours.push(await latencyRun(sides.ours, rate, durationMs));
        }
        const summary = (runs: number[][]) => ({
          p50Ms: median(runs.map((l) => percentile(l, 50))),
          p99Ms: median(runs.map((l) => percentile(l, 99))),
        });
        const o = summary(ours);
        const b = summary(raw);
        rows.push({
          group: `latency: ${transport.name}`,
          name: `1 KiB events at ${rate}/s`,
          ours: { label: "posthorn", opsPerSec: rate, extra: o },
          baseline: { label: transport.rawLabel, opsPerSec: rate, extra: b },
          rounds: ours.length,
        });
      } finally {
        await session.close().catch((err) => console.warn(`${transport.name}: close failed`, err));
      }
    }
    return rows;
  },
};
