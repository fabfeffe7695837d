// The fuzzing harness of `npm run fuzz` (fuzz/ at the repository root), run briefly so that it
// cannot rot: two targets with a fixed seed find nothing new, a decoder planted to throw a
// TypeError is reported, and the same seed makes the same inputs.
import { describe, expect, it } from "vitest";
import { type FuzzOptions, fuzz } from "../../../fuzz/engine.js";
import { attempt } from "../../../fuzz/oracle.js";
import type { Target } from "../../../fuzz/target.js";

const SEED = 20261126;

/** A run in this thread (vitest compiles the sources), its log kept for a failure's message. */
async function run(options: Omit<FuzzOptions, "seed" | "seconds"> & { seed?: number }) {
  const log: string[] = [];
  const report = await fuzz({
    seed: SEED,
    seconds: 60,
    isolate: false,
    log: (line) => log.push(line),
    ...options,
  });
  return { report, log: log.join("\n") };
}

describe("fuzz harness", () => {
  it("finds nothing new in the JSON format and the HTTP binding (fixed seed, about 2 s)", async () => {
    // A fixed number of inputs rather than a time: the same inputs on every machine. Strict:
    // a TypeError a decoder wraps into a PosthornError is a finding here too.
    const { report, log } = await run({ targets: ["json", "http"], runs: 700, strict: true });
    expect(report.findings, log).toBe(0);
    for (const t of report.targets) {
      expect(t.iterations).toBe(700);
      // Not a degenerate run: some inputs decode, others are refused.
      const ok = Object.entries(t.outcomes)
        .filter(([k]) => k.endsWith(" ok"))
        .reduce((n, [, v]) => n + v, 0);
      const refused = Object.values(t.outcomes).reduce((n, v) => n + v, 0) - ok;
      expect(ok, `${t.target} decoded nothing`).toBeGreaterThan(50);
      expect(refused, `${t.target} refused nothing`).toBeGreaterThan(50);
    }
  }, 60_000);

  it("reports a decoder that throws a TypeError, with the seed and the input", async () => {
    const planted: Target<Uint8Array> = {
      name: "planted",
      covers: ["planted.decode"],
      generate: (rng) => new Uint8Array(Array.from({ length: rng.int(8) }, () => rng.int(256))),
      run: (bytes) => {
        attempt("planted.decode", () => {
          if (bytes.length > 2 && (bytes[0] as number) < 128) {
            throw new TypeError("Cannot read properties of undefined (reading 'length')");
          }
          throw new Error("not a PosthornError either");
        });
      },
    };
    const registry = new Map<string, Target>([["planted", planted as Target]]);
    const { report } = await run({ targets: ["planted"], runs: 200, registry });
    expect(report.findings).toBeGreaterThan(0);
    const finding = report.targets[0]?.findings[0];
    expect(finding?.kind).toBe("untyped-error");
    expect(finding?.seed).toBe(SEED);
    expect(finding?.input).toHaveProperty("$hex");

    // The same input again, alone, from the seed and its number.
    const again = await run({ targets: ["planted"], replay: finding?.iteration, registry });
    expect(again.report.targets[0]?.findings[0]?.input).toEqual(finding?.input);
  });

  it("makes the same inputs from the same seed", async () => {
    const a = await run({ targets: ["core"], runs: 300, seed: 7 });
    const b = await run({ targets: ["core"], runs: 300, seed: 7 });
    expect(a.report.targets[0]?.outcomes).toEqual(b.report.targets[0]?.outcomes);
  });

  it("runs a target in a worker thread, as npm run fuzz does", async () => {
    const { report, log } = await run({ targets: ["websocket"], runs: 100, isolate: true });
    expect(report.targets[0]?.iterations, log).toBe(100);
    expect(report.findings, log).toBe(0);
  }, 60_000);
});
