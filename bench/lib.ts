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
  /** Operations (events) per second. */
  readonly opsPerSec: number;
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
  /** ours.opsPerSec / baseline.opsPerSec. */
  readonly ratio?: number;
  /** The ratio the issue asks for, e.g. 5 for decode, 0.9 for throughput. */
  readonly goal?: number;
}

/** A benchmark suite: a file in bench/suites/ exporting `suite`. */
export interface BenchSuite {
  readonly name: string;
  run(ctx: BenchContext): Promise<Row[]>;
}

/**
 * Runs two functions in one tinybench run, interleaved, and returns the comparison row.
 * Each function does one operation (encode one event, decode one message).
 */
export async function compare(options: {
  group: string;
  name: string;
  ours: { label?: string; fn: () => unknown };
  baseline: { label: string; fn: () => unknown };
  goal?: number;
  ctx: BenchContext;
}): Promise<Row> {
  const bench = new Bench({
    time: options.ctx.quick ? 150 : 1000,
    warmupTime: options.ctx.quick ? 50 : 250,
  });
  const oursLabel = options.ours.label ?? "posthorn";
  bench.add(oursLabel, options.ours.fn).add(options.baseline.label, options.baseline.fn);
  await bench.run();
  const hz = (name: string): number => {
    const task = bench.getTask(name);
    const result = task?.result as { throughput?: { mean?: number }; hz?: number } | undefined;
    const value = result?.throughput?.mean ?? result?.hz;
    if (!value) throw new Error(`benchmark task ${name} produced no result`);
    return value;
  };
  const ours = hz(oursLabel);
  const base = hz(options.baseline.label);
  return {
    group: options.group,
    name: options.name,
    ours: { label: oursLabel, opsPerSec: ours },
    baseline: { label: options.baseline.label, opsPerSec: base },
    ratio: ours / base,
    ...(options.goal === undefined ? {} : { goal: options.goal }),
  };
}

/** Runs one function alone (no baseline) and returns its rate. */
export async function measure(
  label: string,
  fn: () => unknown,
  ctx: BenchContext,
): Promise<Measurement> {
  const bench = new Bench({ time: ctx.quick ? 150 : 1000, warmupTime: ctx.quick ? 50 : 250 });
  bench.add(label, fn);
  await bench.run();
  const result = bench.getTask(label)?.result as
    | { throughput?: { mean?: number }; hz?: number }
    | undefined;
  return { label, opsPerSec: result?.throughput?.mean ?? result?.hz ?? 0 };
}

/**
 * Times an end-to-end run: `run(count)` must send (and, where it measures both ends, receive)
 * `count` events and resolve when done. Returns events per second.
 */
export async function throughput(
  label: string,
  count: number,
  run: (count: number) => Promise<void>,
): Promise<Measurement> {
  const started = process.hrtime.bigint();
  await run(count);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { label, opsPerSec: count / seconds };
}

/**
 * Runs ours and the raw baseline alternately `rounds` times (so drift on a shared machine hits
 * both), and returns the row built from the median rate of each.
 */
export async function compareThroughput(options: {
  group: string;
  name: string;
  count: number;
  rounds?: number;
  ours: { label?: string; run: (count: number) => Promise<void> };
  baseline: { label: string; run: (count: number) => Promise<void> };
  goal?: number;
}): Promise<Row> {
  const rounds = options.rounds ?? 3;
  const oursRates: number[] = [];
  const baseRates: number[] = [];
  const oursLabel = options.ours.label ?? "posthorn";
  for (let i = 0; i < rounds; i++) {
    baseRates.push(
      (await throughput(options.baseline.label, options.count, options.baseline.run)).opsPerSec,
    );
    oursRates.push((await throughput(oursLabel, options.count, options.ours.run)).opsPerSec);
  }
  const ours = median(oursRates);
  const base = median(baseRates);
  return {
    group: options.group,
    name: options.name,
    ours: { label: oursLabel, opsPerSec: ours },
    baseline: { label: options.baseline.label, opsPerSec: base },
    ratio: ours / base,
    ...(options.goal === undefined ? {} : { goal: options.goal }),
  };
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
