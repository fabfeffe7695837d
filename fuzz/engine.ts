/**
 * Runs fuzz targets for a time budget, each in a worker thread (so a hang can be stopped and an
 * out-of-memory input seen) or in-process (for the harness's own test), and reports findings.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { describeInput, type FindingReport, fuzzLoop, type LoopResult, signature } from "./loop.js";
import type { Note } from "./oracle.js";
import type { Target } from "./target.js";

/** Options of a fuzzing run. */
export interface FuzzOptions {
  /** The targets, by name, in order. */
  readonly targets: readonly string[];
  /** Total wall-clock budget in seconds, split evenly over the targets. */
  readonly seconds: number;
  /** The seed; the same seed makes the same inputs in the same order. */
  readonly seed: number;
  /** Run exactly this many inputs per target instead of a time budget. */
  readonly runs?: number | undefined;
  /** Run only this input (with `targets` naming one target), and show it. */
  readonly replay?: number | undefined;
  /** Longest time one input may take, in ms (default 1000). */
  readonly hangMs?: number;
  /** Each target in a worker thread (default) or all in this thread. */
  readonly isolate?: boolean;
  /** Targets run at once, in workers (default 1). */
  readonly jobs?: number;
  /** PosthornErrors wrapping engine errors from Posthorn code are findings too. */
  readonly strict?: boolean;
  /** Distinct findings after which a target stops (default 5; recorded ones do not count). */
  readonly maxFindings?: number;
  /** Recorded findings (known.ts) count as findings too. */
  readonly includeKnown?: boolean;
  /** Heap limit of each worker in MiB (default 2048). */
  readonly memoryMb?: number;
  /** Where each finding's full input is written as JSON; none when left out. */
  readonly outDir?: string | undefined;
  /** Where progress lines go (default: nowhere). */
  readonly log?: (line: string) => void;
  /** The targets to choose from (default: every target in targets/index.ts). */
  readonly registry?: ReadonlyMap<string, Target>;
}

/** What happened to one target. */
export interface TargetReport {
  readonly target: string;
  iterations: number;
  elapsedMs: number;
  findings: FindingReport[];
  notes: Note[];
  outcomes: Record<string, number>;
  /** Workers started again after a hang, a crash or running out of memory. */
  restarts: number;
  stopped?: string | undefined;
}

/** What a run found. */
export interface FuzzReport {
  readonly seed: number;
  readonly targets: TargetReport[];
  /** Distinct findings over all targets that fail the run (recorded ones only with `includeKnown`). */
  readonly findings: number;
  /** Distinct recorded findings seen (fuzz/findings.md). */
  readonly known: number;
}

interface Resolved {
  readonly seed: number;
  readonly hangMs: number;
  readonly strict: boolean;
  readonly maxFindings: number;
  readonly memoryMb: number;
  readonly log: (line: string) => void;
}

/** Messages from a worker. */
type WorkerMessage =
  | { type: "finding"; finding: FindingReport }
  | { type: "done"; result: LoopResult }
  | { type: "described"; input: unknown }
  | { type: "failed"; error: string };

/** What a worker is told (see worker.ts). */
export interface WorkerData {
  readonly mode: "fuzz" | "describe";
  readonly target: string;
  readonly seed: number;
  readonly from: number;
  /**
   * The target's share of the run's time, setup included, counted from `startedAt` (Infinity with
   * `until`); fuzzing goes on for at least {@link MIN_FUZZ_MS} after setup whatever it says.
   */
  readonly budgetMs: number;
  /** `Date.now()` when the worker was started. */
  readonly startedAt: number;
  readonly until?: number | undefined;
  readonly hangMs: number;
  readonly strict: boolean;
  readonly maxFindings: number;
  /** [0]: the input running (-1: none), [1]: inputs started. */
  readonly shared: SharedArrayBuffer;
}

const WORKER_URL = new URL("./worker.mjs", import.meta.url);

/** Fuzzing time a target always gets after its setup, however small its share. */
export const MIN_FUZZ_MS = 1000;

type WorkerEnd =
  | { ended: "done"; result: LoopResult }
  | {
      ended: "died";
      kind: "hang" | "memory" | "crash";
      message: string;
      iteration: number;
    };

function startWorker(
  data: Omit<WorkerData, "shared" | "startedAt">,
  r: Resolved,
  onFinding: (f: FindingReport) => void,
): Promise<WorkerEnd> {
  const shared = new SharedArrayBuffer(8);
  const view = new Int32Array(shared);
  view[0] = -1;
  const worker = new Worker(WORKER_URL, {
    workerData: { ...data, shared, startedAt: Date.now() } satisfies WorkerData,
    resourceLimits: { maxOldGenerationSizeMb: r.memoryMb },
  });
  // Finite slow inputs are timed in the worker; this catches inputs that never finish.
  const watchdogMs = r.hangMs * 5 + 2000;
  return new Promise((resolve, reject) => {
    let result: LoopResult | undefined;
    let failure: string | undefined;
    let death:
      | { kind: "hang" | "memory" | "crash"; message: string; iteration: number }
      | undefined;
    let lastTick = -1;
    let lastChange = Date.now();
    const timer = setInterval(() => {
      const tick = Atomics.load(view, 1);
      const running = Atomics.load(view, 0);
      if (tick !== lastTick || running < 0) {
        lastTick = tick;
        lastChange = Date.now();
        return;
      }
      if (Date.now() - lastChange > watchdogMs && death === undefined) {
        death = {
          kind: "hang",
          message: `one input ran for more than ${watchdogMs} ms; the worker was stopped`,
          iteration: running,
        };
        void worker.terminate();
      }
    }, 100);
    worker.on("message", (m: WorkerMessage) => {
      if (m.type === "finding") onFinding(m.finding);
      else if (m.type === "done") {
        result = m.result;
        // Everything is in the message; a handle a target left open must not keep it running.
        void worker.terminate();
      } else if (m.type === "failed") failure = m.error;
    });
    worker.on("error", (err: Error & { code?: string }) => {
      if (death !== undefined) return;
      const iteration = Atomics.load(view, 0);
      death =
        err.code === "ERR_WORKER_OUT_OF_MEMORY"
          ? {
              kind: "memory",
              message: `the worker ran out of its ${r.memoryMb} MiB heap`,
              iteration,
            }
          : {
              kind: "crash",
              message: `uncaught in the worker: ${err.stack ?? err.message}`,
              iteration,
            };
    });
    worker.on("exit", () => {
      clearInterval(timer);
      if (failure !== undefined) {
        reject(new Error(`the ${data.target} worker failed: ${failure}`));
        return;
      }
      if (result !== undefined) resolve({ ended: "done", result });
      else {
        resolve({
          ended: "died",
          ...(death ?? {
            kind: "crash",
            message: "the worker exited early",
            iteration: Atomics.load(view, 0),
          }),
        });
      }
    });
  });
}

function describeInWorker(
  target: string,
  seed: number,
  iteration: number,
  r: Resolved,
): Promise<unknown> {
  const worker = new Worker(WORKER_URL, {
    workerData: {
      mode: "describe",
      target,
      seed,
      from: iteration,
      budgetMs: 0,
      startedAt: Date.now(),
      hangMs: r.hangMs,
      strict: r.strict,
      maxFindings: 1,
      shared: new SharedArrayBuffer(8),
    } satisfies WorkerData,
  });
  return new Promise((resolve) => {
    let input: unknown = "(the input could not be made again)";
    worker.on("message", (m: WorkerMessage) => {
      if (m.type === "described") input = m.input;
    });
    worker.on("error", () => undefined);
    worker.on("exit", () => resolve(input));
  });
}

async function fuzzIsolated(
  name: string,
  budgetMs: number,
  from: number,
  until: number | undefined,
  r: Resolved,
  onFinding: (f: FindingReport) => void,
): Promise<TargetReport> {
  const started = Date.now();
  // The target's share of the run, setup included; a restarted worker gets what is left.
  const end = until === undefined ? started + budgetMs : Number.POSITIVE_INFINITY;
  const report: TargetReport = {
    target: name,
    iterations: 0,
    elapsedMs: 0,
    findings: [],
    notes: [],
    outcomes: {},
    restarts: 0,
  };
  const seen = new Map<string, FindingReport>();
  // Findings stream in as they are found; the loop's result lists them again with their counts.
  const add = (f: FindingReport, fromResult = false): void => {
    const key = signature(f.kind, f.message);
    const known = seen.get(key);
    if (known) {
      known.duplicates += (fromResult ? 0 : 1) + f.duplicates;
      return;
    }
    seen.set(key, f);
    report.findings.push(f);
    onFinding(f);
  };
  let next = from;
  for (;;) {
    const ended = await startWorker(
      {
        mode: "fuzz",
        target: name,
        seed: r.seed,
        from: next,
        budgetMs: end - Date.now(),
        until,
        hangMs: r.hangMs,
        strict: r.strict,
        maxFindings: r.maxFindings - report.findings.filter((f) => f.known === undefined).length,
      },
      r,
      (f) => add(f),
    );
    if (ended.ended === "done") {
      for (const f of ended.result.findings) add(f, true);
      report.iterations += ended.result.iterations;
      mergeNotes(report.notes, ended.result.notes);
      mergeCounts(report.outcomes, ended.result.outcomes);
      report.stopped = ended.result.stopped;
      break;
    }
    const iteration = Math.max(ended.iteration, next);
    report.iterations += iteration - next + 1;
    add({
      target: name,
      seed: r.seed,
      iteration,
      kind: ended.kind,
      message: ended.message,
      input: await describeInWorker(name, r.seed, iteration, r),
      duplicates: 0,
    });
    report.restarts++;
    next = iteration + 1;
    if (Date.now() >= end || (until !== undefined && next >= until)) break;
    const fresh = report.findings.filter((f) => f.known === undefined).length;
    if (fresh >= r.maxFindings) {
      report.stopped = `${fresh} distinct findings`;
      break;
    }
  }
  report.elapsedMs = Date.now() - started;
  return report;
}

async function fuzzInProcess(
  target: Target,
  budgetMs: number,
  from: number,
  until: number | undefined,
  r: Resolved,
  onFinding: (f: FindingReport) => void,
): Promise<TargetReport> {
  const started = Date.now();
  await target.setup?.(r.seed);
  try {
    const result = await fuzzLoop(target, {
      seed: r.seed,
      from,
      deadline:
        until === undefined
          ? Math.max(started + budgetMs, Date.now() + MIN_FUZZ_MS)
          : Number.POSITIVE_INFINITY,
      until,
      hangMs: r.hangMs,
      strict: r.strict,
      maxFindings: r.maxFindings,
      onFinding,
    });
    return {
      target: target.name,
      iterations: result.iterations,
      elapsedMs: Date.now() - started,
      findings: result.findings,
      notes: result.notes,
      outcomes: result.outcomes,
      restarts: 0,
      stopped: result.stopped,
    };
  } finally {
    await target.teardown?.();
  }
}

function mergeNotes(into: Note[], more: readonly Note[]): void {
  for (const n of more) {
    const same = into.find((x) => x.site === n.site && x.error === n.error);
    if (same) same.count += n.count;
    else into.push({ ...n });
  }
}

function mergeCounts(into: Record<string, number>, more: Record<string, number>): void {
  for (const [k, v] of Object.entries(more)) into[k] = (into[k] ?? 0) + v;
}

/** How to reproduce one finding from the command line. */
export function replayCommand(f: Pick<FindingReport, "target" | "seed" | "iteration">): string {
  return `npm run fuzz -- --target ${f.target} --seed ${f.seed} --replay ${f.iteration}`;
}

const CONSOLE_INPUT_CHARS = 6000;

/** A finding as the lines the CLI prints. */
export function formatFinding(f: FindingReport, savedAs?: string): string[] {
  const input = JSON.stringify(f.input) ?? "undefined";
  const lines = [
    `${f.known ? `KNOWN FINDING ${f.known} (fuzz/findings.md)` : "FINDING"} [${f.target}] ${f.kind} at input ${f.iteration} (seed ${f.seed})`,
    `  ${f.message}`,
    `  replay: ${replayCommand(f)}`,
    `  input: ${input.length > CONSOLE_INPUT_CHARS ? `${input.slice(0, CONSOLE_INPUT_CHARS)}... (${input.length} characters)` : input}`,
  ];
  if (savedAs) lines.push(`  saved: ${savedAs}`);
  if (f.stack) {
    const stack = f.stack.split("\n").slice(0, 12);
    lines.push("  stack:", ...stack.map((l) => `    ${l.trim()}`));
  }
  return lines;
}

function save(f: FindingReport, outDir: string | undefined): string | undefined {
  if (outDir === undefined) return undefined;
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `${f.target}-seed${f.seed}-input${f.iteration}.json`);
  writeFileSync(file, `${JSON.stringify({ ...f, replay: replayCommand(f) }, null, 2)}\n`);
  return file;
}

/**
 * Fuzzes the named targets and reports what broke the oracle.
 *
 * @param options - targets, budget, seed and limits
 */
export async function fuzz(options: FuzzOptions): Promise<FuzzReport> {
  const registry = options.registry ?? (await import("./targets/index.js")).TARGETS;
  const r: Resolved = {
    seed: options.seed,
    hangMs: options.hangMs ?? 1000,
    strict: options.strict ?? false,
    maxFindings: options.maxFindings ?? 5,
    memoryMb: options.memoryMb ?? 2048,
    log: options.log ?? (() => undefined),
  };
  for (const name of options.targets) {
    if (!registry.has(name)) throw new Error(`no fuzz target named ${name}`);
  }
  const isolate = options.isolate ?? true;
  const jobs = isolate ? Math.max(1, Math.min(options.jobs ?? 1, options.targets.length)) : 1;
  const budgetMs = Math.max(
    1,
    (options.seconds * 1000 * jobs) / Math.max(1, options.targets.length),
  );
  const from = options.replay ?? 0;
  const until = options.replay !== undefined ? options.replay + 1 : options.runs;
  const onFinding = (f: FindingReport): void => {
    for (const line of formatFinding(f, save(f, options.outDir))) r.log(line);
  };
  const reports: TargetReport[] = new Array(options.targets.length);
  let cursor = 0;
  const lane = async (): Promise<void> => {
    for (;;) {
      const index = cursor++;
      const name = options.targets[index];
      if (name === undefined) return;
      const target = registry.get(name) as Target;
      const report = isolate
        ? await fuzzIsolated(name, budgetMs, from, until, r, onFinding)
        : await fuzzInProcess(target, budgetMs, from, until, r, onFinding);
      reports[index] = report;
      r.log(summaryLine(report));
    }
  };
  await Promise.all(Array.from({ length: jobs }, lane));
  const all = reports.flatMap((t) => t.findings);
  const known = all.filter((f) => f.known !== undefined).length;
  return {
    seed: options.seed,
    targets: reports,
    findings: options.includeKnown ? all.length : all.length - known,
    known,
  };
}

/** One line per target: inputs, rate, findings. */
export function summaryLine(t: TargetReport): string {
  const rate = t.elapsedMs > 0 ? Math.round((t.iterations * 1000) / t.elapsedMs) : 0;
  const known = t.findings.filter((f) => f.known !== undefined).length;
  const fresh = t.findings.length - known;
  const found = [
    fresh === 0 ? "no findings" : `${fresh} FINDING(S)`,
    known > 0
      ? `${known} known (${[...new Set(t.findings.map((f) => f.known).filter(Boolean))].join(", ")})`
      : "",
  ]
    .filter(Boolean)
    .join(", ");
  const extra = [
    t.restarts > 0 ? `${t.restarts} worker restart(s)` : "",
    t.notes.length > 0 ? `${t.notes.length} note(s)` : "",
    t.stopped ? `stopped: ${t.stopped}` : "",
  ].filter(Boolean);
  return `[${t.target}] ${t.iterations} inputs in ${(t.elapsedMs / 1000).toFixed(1)} s (${rate}/s): ${found}${extra.length > 0 ? `; ${extra.join("; ")}` : ""}`;
}

export { describeInput };
