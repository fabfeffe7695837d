// `npm run bench [-- --quick] [-- --only name,name]`: runs every suite in bench/suites/, prints one
// table per group with Posthorn's rate, the baseline's rate measured in the same run, the ratio and
// the goal, and writes bench/results/<suite>.json.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { latencyChart, ratioChart } from "./chart.ts";
import type { BenchSuite, Row } from "./lib.ts";

// This file runs from bench/ (tsx) or bundled from bench/.build/ (npm run bench, see build.mjs);
// results and charts go to bench/results and docs/benchmarks either way.
const here = fileURLToPath(new URL(".", import.meta.url));
const benchDir = basename(here.replace(/[/\\]$/, "")) === ".build" ? join(here, "..") : here;
const args = process.argv.slice(2);
const quick = args.includes("--quick") || process.env.BENCH_QUICK === "1";
const onlyArg =
  args.find((a) => a.startsWith("--only="))?.slice(7) ??
  (args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined);
const only = onlyArg ? onlyArg.split(",") : undefined;

function fmtRate(n: number): string {
  if (n === 0) return "-";
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M/s`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k/s`;
  return `${n.toFixed(0)} /s`;
}

function fmtRatio(r: number | undefined): string {
  return r === undefined ? "" : `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;
}

function printRows(rows: readonly Row[], heading = "##"): void {
  const groups = new Map<string, Row[]>();
  for (const row of rows) groups.set(row.group, [...(groups.get(row.group) ?? []), row]);
  for (const [group, list] of groups) {
    console.log(`\n${heading} ${group}\n`);
    console.log("| case | posthorn | baseline | ratio | ratio by CPU | range | goal |");
    console.log("| --- | --- | --- | --- | --- | --- | --- |");
    for (const r of list) {
      const baseExtra = r.baseline?.extra
        ? ` [${Object.entries(r.baseline.extra)
            .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(3)}`)
            .join(", ")}]`
        : "";
      const base = r.baseline
        ? `${fmtRate(r.baseline.opsPerSec)}${baseExtra} (${r.baseline.label})`
        : "";
      const goal =
        r.goal === undefined
          ? ""
          : `${r.goal}x ${r.ratio !== undefined && r.ratio >= r.goal ? "met" : "MISSED"}`;
      const extra = r.ours.extra
        ? ` [${Object.entries(r.ours.extra)
            .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(3)}`)
            .join(", ")}]`
        : "";
      const range = r.ratioRange ? `${fmtRatio(r.ratioRange[0])}-${fmtRatio(r.ratioRange[1])}` : "";
      const note = r.note ? ` (${r.note})` : "";
      console.log(
        `| ${r.name}${note} | ${fmtRate(r.ours.opsPerSec)}${extra} | ${base} | ${fmtRatio(r.ratio)} | ${fmtRatio(r.cpuRatio)} | ${range} | ${goal} |`,
      );
    }
  }
}

// `--markdown` prints the tables of bench/results/*.json as Markdown (for docs/benchmarks.md).
if (args.includes("--markdown")) {
  for (const f of readdirSync(join(benchDir, "results"))
    .filter((n) => n.endsWith(".json"))
    .sort()) {
    const r = JSON.parse(readFileSync(join(benchDir, "results", f), "utf8")) as {
      suite: string;
      quick: boolean;
      date: string;
      rows: Row[];
    };
    console.log(`\n### ${r.suite}\n\n${r.quick ? "quick" : "full"} run, ${r.date.slice(0, 16)}Z`);
    printRows(r.rows, "####");
  }
  process.exit(0);
}

if (args.includes("--charts")) {
  const rows: Row[] = [];
  let mode = "full";
  for (const f of readdirSync(join(benchDir, "results"))
    .filter((n) => n.endsWith(".json"))
    .sort()) {
    const r = JSON.parse(readFileSync(join(benchDir, "results", f), "utf8")) as {
      quick: boolean;
      rows: Row[];
    };
    if (r.quick) mode = "quick";
    rows.push(...r.rows);
  }
  writeCharts(rows, mode);
  process.exit(0);
}

const suitesDir = join(here, "suites");
const files = readdirSync(suitesDir)
  .filter((f) => f.endsWith(".bench.ts") || f.endsWith(".bench.mjs"))
  .sort();
mkdirSync(join(benchDir, "results"), { recursive: true });
console.log(`# Posthorn benchmarks (${quick ? "quick" : "full"} mode)`);
console.log(
  `node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
);
let failures = 0;
const allRows: Row[] = [];
for (const file of files) {
  const name = file.replace(/\.bench\.m?[jt]s$/, "");
  if (only && !only.includes(name)) continue;
  const mod = (await import(pathToFileURL(join(suitesDir, file)).href)) as { suite?: BenchSuite };
  if (!mod.suite) continue;
  console.log(`\n# ${mod.suite.name}`);
  try {
    const rows = await mod.suite.run({ quick });
    printRows(rows);
    allRows.push(...rows);
    writeFileSync(
      join(benchDir, "results", `${name}.json`),
      `${JSON.stringify({ suite: mod.suite.name, quick, node: process.version, date: new Date().toISOString(), rows }, null, 2)}\n`,
    );
  } catch (err) {
    failures++;
    console.error(`suite ${name} failed:`, err);
  }
}
// The charts go next to docs/benchmarks.md, from full runs only: a partial run (--only) would
// replace them with a subset, and a quick run with noisier figures. `--charts` rebuilds them from bench/results/*.json without running.
function writeCharts(rows: readonly Row[], mode: string): void {
  const chartsDir = join(benchDir, "..", "docs", "benchmarks");
  mkdirSync(chartsDir, { recursive: true });
  writeFileSync(
    join(chartsDir, "ratios.svg"),
    `${ratioChart(`Posthorn vs baselines (${mode} run)`, rows)}\n`,
  );
  console.log("\nchart: docs/benchmarks/ratios.svg");
  if (rows.some((r) => r.ours.extra?.p50Ms !== undefined)) {
    writeFileSync(
      join(chartsDir, "latency.svg"),
      `${latencyChart(`End-to-end latency (${mode} run)`, rows)}\n`,
    );
    console.log("chart: docs/benchmarks/latency.svg");
  }
}
if (allRows.length > 0 && !only && !quick) writeCharts(allRows, "full");
process.exitCode = failures > 0 ? 1 : 0;
