/**
 * `npm run fuzz`: a time-bounded fuzzing run over every public decoder Posthorn exposes to
 * untrusted input. See docs/security.md ("Fuzzing") for what it checks.
 *
 *   npm run fuzz                                   # about 60 s over every target
 *   npm run fuzz -- --seconds 60 --target nats     # one target for 60 s
 *   npm run fuzz -- --target json --seed 7 --replay 4711
 *
 * Exits 1 when anything broke the oracle, 2 on a usage error.
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { formatFinding, fuzz, summaryLine } from "./engine.js";
import { TARGETS } from "./targets/index.js";

const USAGE = `usage: npm run fuzz -- [options]
  --seconds N        total time budget, split over the targets (default 60)
  --target NAME      a target to run; repeat or comma-separate for several (default: all)
  --seed N           the seed (default: random, printed); the same seed makes the same inputs
  --runs N           exactly N inputs per target instead of a time budget
  --replay N         run input N only (one --target and its --seed), and show it
  --hang-ms N        longest time one input may take (default 1000)
  --jobs N           targets fuzzed at once, each in its own worker (default 1)
  --strict           PosthornErrors that wrap a TypeError/RangeError thrown by Posthorn code are findings
  --max-findings N   distinct findings after which a target stops (default 5)
  --include-known    fail on the findings fuzz/findings.md records too (they are shown either way)
  --in-process       run in this thread, without workers (no hang watchdog)
  --out DIR          where each finding's input is written as JSON (default fuzz/out)
  --list             list the targets and what they call
targets: ${[...TARGETS.keys()].join(", ")}`;

function usage(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

function int(name: string, text: string | undefined, min = 0): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min)
    usage(`--${name} takes a whole number of at least ${min}`);
  return n;
}

let args: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    options: {
      seconds: { type: "string" },
      target: { type: "string", multiple: true },
      seed: { type: "string" },
      runs: { type: "string" },
      replay: { type: "string" },
      "hang-ms": { type: "string" },
      jobs: { type: "string" },
      strict: { type: "boolean" },
      "max-findings": { type: "string" },
      "include-known": { type: "boolean" },
      "in-process": { type: "boolean" },
      out: { type: "string" },
      list: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
}
try {
  args = parse();
} catch (err) {
  usage((err as Error).message);
}
const v = args.values;
if (v.help) {
  console.log(USAGE);
  process.exit(0);
}
if (v.list) {
  for (const t of TARGETS.values()) console.log(`${t.name.padEnd(14)} ${t.covers.join(", ")}`);
  process.exit(0);
}

const targets = (v.target ?? [...TARGETS.keys()]).flatMap((t) => t.split(",")).filter(Boolean);
for (const t of targets) if (!TARGETS.has(t)) usage(`no target named ${t}`);
const replay = int("replay", v.replay);
if (replay !== undefined && (targets.length !== 1 || v.seed === undefined)) {
  usage("--replay needs exactly one --target and the --seed of the run");
}
const seed = int("seed", v.seed) ?? Math.floor(Math.random() * 2 ** 31);
const seconds = int("seconds", v.seconds, 1) ?? 60;
const outDir = v.out ?? fileURLToPath(new URL("./out", import.meta.url));

console.log(
  `fuzz: seed ${seed}, ${replay !== undefined ? `input ${replay} of` : `${seconds} s over`} ${targets.length} target(s): ${targets.join(", ")}`,
);
const report = await fuzz({
  targets,
  seconds,
  seed,
  runs: int("runs", v.runs, 1),
  replay,
  hangMs: int("hang-ms", v["hang-ms"], 1) ?? 1000,
  jobs: int("jobs", v.jobs, 1) ?? 1,
  strict: v.strict ?? false,
  maxFindings: int("max-findings", v["max-findings"], 1) ?? 5,
  includeKnown: v["include-known"] ?? false,
  isolate: !v["in-process"],
  outDir,
  log: (line) => console.log(line),
});

if (replay !== undefined) {
  const t = report.targets[0];
  if (t && t.findings.length === 0) {
    const { describeInput } = await import("./loop.js");
    const target = TARGETS.get(targets[0] as string);
    if (target) {
      await target.setup?.(seed);
      const input = JSON.stringify(describeInput(target, seed, replay)) ?? "undefined";
      const shown =
        input.length > 20_000 ? `${input.slice(0, 20_000)}... (${input.length} characters)` : input;
      console.log(`input ${replay}: ${shown}`);
      await target.teardown?.();
    }
    console.log(
      "no finding: the input decoded to an equivalent event or was refused with a typed error",
    );
  }
}

console.log("");
console.log(`fuzz summary (seed ${seed}):`);
for (const t of report.targets) {
  console.log(`  ${summaryLine(t)}`);
  const outcomes = Object.entries(t.outcomes)
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
  if (outcomes) console.log(`    outcomes: ${outcomes}`);
  for (const n of t.notes) {
    console.log(
      `    note: ${n.count} input(s) were refused with an error wrapping ${n.error} thrown at ${n.site} (first: input ${n.iteration}; --strict makes it a finding)`,
    );
  }
}
const listed = report.targets.flatMap((t) => t.findings);
if (listed.length > 0) {
  console.log("");
  for (const f of listed) {
    console.log(formatFinding(f).slice(0, 3).join("\n"));
    if (f.duplicates > 0) console.log(`  (and ${f.duplicates} more input(s) like it)`);
  }
}
console.log("");
if (report.findings > 0) {
  console.log(`${report.findings} finding(s); the inputs are in ${outDir}`);
  process.exitCode = 1;
} else {
  console.log(
    report.known > 0
      ? `no new findings (${report.known} recorded in fuzz/findings.md seen again; --include-known fails on them)`
      : "no findings",
  );
}
