/**
 * The fuzzing loop of one target, the same in a worker thread and in-process: make input `i`,
 * run it, check the prototypes, time it, report what breaks the oracle.
 */

import { knownAs } from "./known.js";
import {
  checkPrototypes,
  clip,
  Finding,
  type FindingKind,
  type Note,
  recordPrototypes,
  setIteration,
  setStrict,
  takeNotes,
  takeOutcomes,
} from "./oracle.js";
import { inputRng } from "./rng.js";
import { type Target, toRepro } from "./target.js";

/** A finding as reported: where, which input, what, and the input itself. */
export interface FindingReport {
  readonly target: string;
  readonly seed: number;
  readonly iteration: number;
  readonly kind: FindingKind | "crash";
  readonly message: string;
  /** The stack of what was thrown (the decoder's error, not the harness's). */
  readonly stack?: string | undefined;
  /** The input as JSON (see `toRepro`), bytes as hex. */
  readonly input?: unknown;
  /** How many more inputs gave the same finding. */
  duplicates: number;
  /** The id in fuzz/findings.md when this is a recorded finding (see known.ts). */
  readonly known?: string | undefined;
}

/** What one target's loop did. */
export interface LoopResult {
  /** Inputs run. */
  iterations: number;
  /** The next input's number. */
  next: number;
  findings: FindingReport[];
  notes: Note[];
  outcomes: Record<string, number>;
  /** Why the loop stopped early, when it did (prototype pollution, too many findings). */
  stopped?: string;
}

/** What a loop is told to do. */
export interface LoopParams {
  readonly seed: number;
  /** The first input's number. */
  readonly from: number;
  /** `Date.now()` past which no new input starts. */
  readonly deadline: number;
  /** Stop before this input number, when given (`--runs`, `--replay`). */
  readonly until?: number | undefined;
  /** Longest time one input may take. */
  readonly hangMs: number;
  /** Whether PosthornErrors wrapping engine errors are findings. */
  readonly strict: boolean;
  /** Distinct findings after which the target stops. */
  readonly maxFindings: number;
  /** Called as each input starts (the worker's watchdog reads it). */
  readonly onInput?: (iteration: number) => void;
  /** Called with each new finding as it is found. */
  readonly onFinding?: (finding: FindingReport) => void;
}

/**
 * A finding's signature, so that repeats are counted once: its kind and the start of its message,
 * up to the first quoted (input-made) text, numbers blanked.
 */
export function signature(kind: string, message: string): string {
  // An oversized message is one defect per call and code, whatever the text it echoes.
  const cut = kind === "oversized-error" ? message.indexOf(" with a ") : -1;
  const head = cut !== -1 ? message.slice(0, cut) : (message.split('"')[0] ?? "").slice(0, 110);
  return `${kind} ${head.replace(/\d+/g, "#")}`;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const TIMED_OUT = Symbol("timed out");

/** Runs one input once; returns how long it took, or throws what the oracle threw. */
async function runOnce<I>(target: Target<I>, input: I, hangMs: number): Promise<number> {
  const started = performance.now();
  const result = target.run(input);
  if (result instanceof Promise) {
    const settled = await withTimeout(result, hangMs * 5);
    if (settled === TIMED_OUT) {
      throw new Finding("hang", `the input did not settle within ${hangMs * 5} ms`);
    }
  }
  checkPrototypes();
  return performance.now() - started;
}

function stackOf(err: unknown): string | undefined {
  const cause = err instanceof Finding ? err.cause : err;
  if (!(cause instanceof Error)) return undefined;
  // Each line cut short: the first holds the message, which can be megabytes long.
  const lines = (stack: string | undefined): string =>
    (stack ?? "")
      .split("\n")
      .slice(0, 14)
      .map((l) => clip(l, 300))
      .join("\n");
  let stack = lines(cause.stack);
  let inner: unknown = cause.cause;
  for (let d = 0; d < 3 && inner instanceof Error; d++) {
    stack += `\nCaused by: ${lines(inner.stack ?? inner.message)}`;
    inner = inner.cause;
  }
  return stack;
}

/**
 * Fuzzes one target from input `params.from` until the deadline (or `params.until`).
 *
 * @param target - the target, its `setup` already done
 * @param params - seed, range, limits and callbacks
 */
export async function fuzzLoop<I>(target: Target<I>, params: LoopParams): Promise<LoopResult> {
  setStrict(params.strict);
  takeNotes();
  takeOutcomes();
  recordPrototypes();
  const findings = new Map<string, FindingReport>();
  let i = params.from;
  let stopped: string | undefined;
  for (; ; i++) {
    if (params.until !== undefined ? i >= params.until : Date.now() >= params.deadline) break;
    if (params.until !== undefined && Date.now() >= params.deadline) break;
    params.onInput?.(i);
    setIteration(i);
    const input = target.generate(inputRng(params.seed, target.name, i));
    let finding: Finding | undefined;
    try {
      const took = await runOnce(target, input, params.hangMs);
      if (took > params.hangMs) {
        // Once more, so a pause of the machine (GC, a busy CI runner) is not a finding.
        const again = await runOnce(target, input, params.hangMs);
        if (again > params.hangMs) {
          finding = new Finding(
            "hang",
            `one input took ${Math.round(took)} ms, and ${Math.round(again)} ms again (limit ${params.hangMs} ms)`,
          );
        }
      }
    } catch (err) {
      finding =
        err instanceof Finding
          ? err
          : new Finding(
              "untyped-error",
              `uncaught by the target: ${(err as Error)?.name}: ${(err as Error)?.message ?? String(err)}`,
              err,
            );
    }
    if (finding === undefined) continue;
    const key = signature(finding.kind, finding.message);
    const seen = findings.get(key);
    if (seen) {
      seen.duplicates++;
    } else {
      const known = knownAs(target.name, finding.kind, finding.message);
      const report: FindingReport = {
        target: target.name,
        seed: params.seed,
        iteration: i,
        kind: finding.kind,
        message: finding.message,
        stack: stackOf(finding),
        input: toRepro(input),
        duplicates: 0,
        ...(known === undefined ? {} : { known }),
      };
      findings.set(key, report);
      params.onFinding?.(report);
    }
    if (finding.kind === "prototype-pollution") {
      stopped = "a prototype was polluted; the rest of this process cannot be trusted";
      i++;
      break;
    }
    const fresh = [...findings.values()].filter((f) => f.known === undefined).length;
    if (fresh >= params.maxFindings) {
      stopped = `${fresh} distinct findings`;
      i++;
      break;
    }
  }
  return {
    iterations: i - params.from,
    next: i,
    findings: [...findings.values()],
    notes: takeNotes(),
    outcomes: takeOutcomes(),
    ...(stopped === undefined ? {} : { stopped }),
  };
}

/** The input of one iteration as JSON, without running it (for a hang or a crash). */
export function describeInput<I>(target: Target<I>, seed: number, iteration: number): unknown {
  return toRepro(target.generate(inputRng(seed, target.name, iteration)));
}
