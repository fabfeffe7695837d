import { Bench } from "tinybench";

/** What every benchmark suite gets from the runner. */
export interface BenchContext {
  /** Quick mode (`npm run bench -- --quick`, CI smoke runs): fewer iterations, smaller sweeps. */
  readonly quick: boolean;
}

/** One measured side of a comparison. */
export interface Measurement {
  /** What ran, e.g. `posthorn` or `cloudevents HTTP.toEvent` or `raw mqtt.js`. */
  readonly label: string;
  /** Operations (events) per second of wall-clock time (median over rounds). */
  readonly opsPerSec: number;
  /**
   * Operations per second of CPU time used by this process (user + system, all threads, so GC
   * helper threads count too). Less disturbed than wall time when other processes share the cores.
   */
  readonly cpuOpsPerSec?: number;
  /** Extra figures (bytes on the wire, p50/p99 latency in ms, heap bytes per event, ...). */
  readonly extra?: Readonly<Record<string, number>>;
}

/**
 * One row of results: Posthorn against a baseline (the `cloudevents` package, the raw client
 * library, or another format), measured in the same run. `ratio` is ours / baseline.
 */
export interface Row {
  /** The table this row belongs in, e.g. `codec: HTTP` or `throughput: MQTT`. */
  readonly group: string;
  /** What is measured, e.g. `decode binary` or `publish QoS 1, 1 KiB`. */
  readonly name: string;
  readonly ours: Measurement;
  readonly baseline?: Measurement;
  /**
   * ours / baseline: the median of the per-round ratios (each round runs both sides back to back,
   * so a slow moment on a shared machine hits both).
   */
  readonly ratio?: number;
  /** The same ratio by CPU time, where measured. */
  readonly cpuRatio?: number;
  /** The lowest and highest per-round ratio: how much the figure moved between rounds. */
  readonly ratioRange?: readonly [number, number];
  /** Rounds measured. */
  readonly rounds?: number;
  /** The ratio the issue asks for, e.g. 5 for decode, 0.9 for throughput. */
  readonly goal?: number;
  /** A caveat printed with the row (for example: the baseline does less work). */
  readonly note?: string;
}

/** A benchmark suite: a file in bench/suites/ exporting `suite`. */
export interface BenchSuite {
  readonly name: string;
  run(ctx: BenchContext): Promise<Row[]>;
}

// Results of benchmarked functions go here so the optimiser cannot drop the calls.
// biome-ignore lint/correctness/noUnusedVariables: only written, so the calls cannot be dropped
let sink: unknown;
/** Keeps a value alive (for benchmark loops written by hand). */
export function blackhole(value: unknown): void {
  sink = value;
}

function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

interface Side {
  readonly label: string;
  readonly fn: () => unknown;
}

interface SideResult {
  wallNs: number;
  cpuNs: number;
}

/**
 * Calls `fn` in batches sized so one batch takes about 0.5 ms: per-call timing of a sub-microsecond
 * function measures the timer more than the function and pulls every ratio towards 1.
 */
function batchSize(fn: () => unknown): number {
  let n = 1;
  for (;;) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) sink = fn();
    const ns = Number(process.hrtime.bigint() - t);
    if (ns > 500_000 || n >= 1 << 20)
      return Math.max(1, Math.round((n * 500_000) / Math.max(ns, 1)));
    n *= 2;
  }
}

/** One tinybench run of both sides (in the given order), nanoseconds per call of each. */
async function oneRound(sides: readonly Side[], timeMs: number): Promise<SideResult[]> {
  const bench = new Bench({ time: timeMs, warmupTime: Math.max(20, timeMs / 4) });
  const calls = new Map<string, { batch: number; count: number; cpuStart: number; cpu: number }>();
  for (const side of sides) {
    const state = { batch: batchSize(side.fn), count: 0, cpuStart: 0, cpu: 0 };
    calls.set(side.label, state);
    const { fn } = side;
    bench.add(
      side.label,
      () => {
        const n = state.batch;
        for (let i = 0; i < n; i++) sink = fn();
        state.count += n;
      },
      {
        beforeAll(mode) {
          if (mode === "run") {
            state.count = 0;
            state.cpuStart = cpuMicros();
          }
        },
        afterAll(mode) {
          if (mode === "run") state.cpu = cpuMicros() - state.cpuStart;
        },
      },
    );
  }
  await bench.run();
  return sides.map((side) => {
    const task = bench.getTask(side.label);
    const result = task?.result as { period?: number; latency?: { p50?: number } } | undefined;
    const state = calls.get(side.label) as { batch: number; count: number; cpu: number };
    // The median batch time: robust against batches the scheduler interrupted.
    const perBatchMs = result?.latency?.p50 ?? result?.period;
    if (!perBatchMs || state.count === 0)
      throw new Error(`benchmark task ${side.label} produced no result`);
    return { wallNs: (perBatchMs * 1e6) / state.batch, cpuNs: (state.cpu * 1000) / state.count };
  });
}

/**
 * Measures several functions side by side: `rounds` tinybench runs, alternating the order of the
 * sides, each function called in batches. Returns, per side, the median over rounds of the
 * nanoseconds per call (wall and CPU), and the per-round values.
 */
export async function measureSides(
  sides: readonly Side[],
  ctx: BenchContext,
  options: { rounds?: number; timeMs?: number } = {},
): Promise<{ wallNs: number[]; cpuNs: number[]; perRound: SideResult[][] }> {
  const rounds = options.rounds ?? (ctx.quick ? 3 : 7);
  const timeMs = options.timeMs ?? (ctx.quick ? 80 : 300);
  const perRound: SideResult[][] = [];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? sides : [...sides].reverse();
    const results = await oneRound(order, timeMs);
    perRound.push(sides.map((s) => results[order.indexOf(s)] as SideResult));
  }
  return {
    wallNs: sides.map((_, i) => median(perRound.map((r) => (r[i] as SideResult).wallNs))),
    cpuNs: sides.map((_, i) => median(perRound.map((r) => (r[i] as SideResult).cpuNs))),
    perRound,
  };
}

/**
 * Runs two functions side by side (see {@link measureSides}) and returns the comparison row.
 * Each function does one operation (encode one event, decode one message).
 */
export async function compare(options: {
  group: string;
  name: string;
  ours: { label?: string; fn: () => unknown };
  baseline: { label: string; fn: () => unknown };
  goal?: number;
  note?: string;
  ctx: BenchContext;
  rounds?: number;
}): Promise<Row> {
  const oursLabel = options.ours.label ?? "posthorn";
  const baseLabel =
    options.baseline.label === oursLabel ? `${oursLabel} (baseline)` : options.baseline.label;
  const m = await measureSides(
    [
      { label: oursLabel, fn: options.ours.fn },
      { label: baseLabel, fn: options.baseline.fn },
    ],
    options.ctx,
    options.rounds === undefined ? {} : { rounds: options.rounds },
  );
  const ratios = m.perRound.map((r) => (r[1] as SideResult).wallNs / (r[0] as SideResult).wallNs);
  const cpuRatios = m.perRound.map((r) => (r[1] as SideResult).cpuNs / (r[0] as SideResult).cpuNs);
  return {
    group: options.group,
    name: options.name,
    ours: {
      label: oursLabel,
      opsPerSec: 1e9 / (m.wallNs[0] as number),
      cpuOpsPerSec: 1e9 / (m.cpuNs[0] as number),
    },
    baseline: {
      label: options.baseline.label,
      opsPerSec: 1e9 / (m.wallNs[1] as number),
      cpuOpsPerSec: 1e9 / (m.cpuNs[1] as number),
    },
    ratio: median(ratios),
    cpuRatio: median(cpuRatios),
    ratioRange: [Math.min(...ratios), Math.max(...ratios)],
    rounds: ratios.length,
    ...(options.goal === undefined ? {} : { goal: options.goal }),
    ...(options.note === undefined ? {} : { note: options.note }),
  };
}

/** Runs one function alone (no baseline) and returns its rate. */
export async function measure(
  label: string,
  fn: () => unknown,
  ctx: BenchContext,
): Promise<Measurement> {
  const m = await measureSides([{ label, fn }], ctx);
  return {
    label,
    opsPerSec: 1e9 / (m.wallNs[0] as number),
    cpuOpsPerSec: 1e9 / (m.cpuNs[0] as number),
  };
}

/**
 * Times an end-to-end run: `run(count)` must send (and, where it measures both ends, receive)
 * `count` events and resolve when done. Returns events per second, by wall clock and by this
 * process's CPU time.
 */
export async function throughput(
  label: string,
  count: number,
  run: (count: number) => Promise<void>,
): Promise<Measurement> {
  const cpu = cpuMicros();
  const started = process.hrtime.bigint();
  await run(count);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpuSeconds = (cpuMicros() - cpu) / 1e6;
  return { label, opsPerSec: count / seconds, cpuOpsPerSec: count / Math.max(cpuSeconds, 1e-9) };
}

/**
 * Runs ours and the raw baseline alternately `rounds` times (so drift on a shared machine hits
 * both; the side that goes first alternates too), and returns the row built from the median rate
 * of each and the median of the per-round ratios. With `warmup`, each side first runs that many
 * operations unmeasured, so neither side's first round pays for JIT compilation, connection
 * set-up or buffer growth that the other side's first round then profits from.
 */
export async function compareThroughput(options: {
  group: string;
  name: string;
  count: number;
  rounds?: number;
  /** Operations each side runs unmeasured before the first round. Default 0. */
  warmup?: number;
  ours: { label?: string; run: (count: number) => Promise<void> };
  baseline: { label: string; run: (count: number) => Promise<void> };
  goal?: number;
  note?: string;
  /** Extra figures for ours (bytes, ...), added to the measured ones. */
  extra?: Readonly<Record<string, number>>;
}): Promise<Row> {
  const rounds = options.rounds ?? 3;
  const ours: Measurement[] = [];
  const base: Measurement[] = [];
  const oursLabel = options.ours.label ?? "posthorn";
  if (options.warmup !== undefined && options.warmup > 0) {
    await options.baseline.run(options.warmup);
    await options.ours.run(options.warmup);
  }
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) {
      base.push(await throughput(options.baseline.label, options.count, options.baseline.run));
      ours.push(await throughput(oursLabel, options.count, options.ours.run));
    } else {
      ours.push(await throughput(oursLabel, options.count, options.ours.run));
      base.push(await throughput(options.baseline.label, options.count, options.baseline.run));
    }
  }
  const ratios = ours.map((o, i) => o.opsPerSec / (base[i] as Measurement).opsPerSec);
  const cpuRatios = ours.map(
    (o, i) => (o.cpuOpsPerSec as number) / ((base[i] as Measurement).cpuOpsPerSec as number),
  );
  return {
    group: options.group,
    name: options.name,
    ours: {
      label: oursLabel,
      opsPerSec: median(ours.map((m) => m.opsPerSec)),
      cpuOpsPerSec: median(ours.map((m) => m.cpuOpsPerSec as number)),
      ...(options.extra ? { extra: options.extra } : {}),
    },
    baseline: {
      label: options.baseline.label,
      opsPerSec: median(base.map((m) => m.opsPerSec)),
      cpuOpsPerSec: median(base.map((m) => m.cpuOpsPerSec as number)),
    },
    ratio: median(ratios),
    cpuRatio: median(cpuRatios),
    ratioRange: [Math.min(...ratios), Math.max(...ratios)],
    rounds,
    ...(options.goal === undefined ? {} : { goal: options.goal }),
    ...(options.note === undefined ? {} : { note: options.note }),
  };
}

/**
 * The fastest of five rounds of `calls` calls to `fn`, in microseconds per call: for the probes,
 * which compare two ways of doing one thing on a busy machine.
 */
export function bestMicros(fn: () => unknown, calls: number): number {
  let best = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 5; round++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) fn();
    best = Math.min(best, Number(process.hrtime.bigint() - started) / calls / 1000);
  }
  return best;
}

/** The median of some numbers. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** The p-th percentile (0-100) of some numbers. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? Number.NaN;
}

/** Forces a full garbage collection when node runs with `--expose-gc` (the runner sets it). */
export function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
