/** One target's fuzzing loop in a worker thread (see engine.ts for the other side). */
import { parentPort, workerData } from "node:worker_threads";
import { MIN_FUZZ_MS, type WorkerData } from "./engine.js";
import { describeInput, fuzzLoop } from "./loop.js";
import { TARGETS } from "./targets/index.js";

const data = workerData as WorkerData;
const port = parentPort;
if (port === null) throw new Error("worker.ts runs in a worker thread");
const view = new Int32Array(data.shared);

try {
  const target = TARGETS.get(data.target);
  if (target === undefined) throw new Error(`no fuzz target named ${data.target}`);
  if (data.mode === "describe") {
    await target.setup?.(data.seed);
    port.postMessage({ type: "described", input: describeInput(target, data.seed, data.from) });
    await target.teardown?.();
  } else {
    await target.setup?.(data.seed);
    const result = await fuzzLoop(target, {
      seed: data.seed,
      from: data.from,
      // The share counts from the worker's start (compiling, the corpus), with a floor after setup.
      deadline: Math.max(data.startedAt + data.budgetMs, Date.now() + MIN_FUZZ_MS),
      until: data.until,
      hangMs: data.hangMs,
      strict: data.strict,
      maxFindings: data.maxFindings,
      onInput: (i) => {
        Atomics.store(view, 0, i);
        Atomics.add(view, 1, 1);
      },
      onFinding: (finding) => port.postMessage({ type: "finding", finding }),
    });
    Atomics.store(view, 0, -1);
    await target.teardown?.();
    port.postMessage({ type: "done", result });
  }
} catch (err) {
  port.postMessage({ type: "failed", error: (err as Error)?.stack ?? String(err) });
}
