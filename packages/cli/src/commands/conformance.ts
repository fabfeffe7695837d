import { open, stat, unlink, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import {
  type CommandIo,
  EXIT_FAILED,
  EXIT_OK,
  formatTable,
  note,
  palette,
  progressBar,
  UsageError,
  useColour,
} from "../cli-io.js";
import { onlyOption, parseOrHelp } from "./shared.js";

/** `posthorn conformance --help`. */
export const CONFORMANCE_HELP = `Usage: posthorn conformance [options]

Runs every testkit vector (valid ones must round-trip to an equivalent event; invalid ones
must be refused with a typed error by the sender or the receiver) through every binding x
mode x format of this build, against the brokers it finds, and prints the matrix.

Brokers come from the same environment variables as the tests: AMQP_URL, MQTT_URL,
NATS_URL (defaults: the local ports 5672, 1883, 4222), and KAFKA_BROKERS (default: the
testkit Kafka-protocol broker, started in-process). HTTP and WebSocket run in-process.

Options:
  --only <list>           only these transports: http,ws,amqp,mqtt,kafka,nats
  --report <file>         also write a report: file.html (a page to read) or file.json
  --json                  print the report as JSON on stdout instead of the matrix
  --require-all           fail when a transport is left out (implied by CI=true)
  -h, --help              this text

Exit status: 0 when every cell is green (and, with --require-all, nothing was left out),
1 otherwise, 2 on a usage error.
`;

const OPTIONS = {
  only: { type: "string" },
  report: { type: "string" },
  json: { type: "boolean" },
  "require-all": { type: "boolean" },
} as const;

/**
 * Checks that `--report` can be written before the run, so that a path into a directory that does
 * not exist is a usage error now rather than a failure (exit 1) after every vector ran.
 */
async function checkReportPath(file: string): Promise<void> {
  const path = resolve(file);
  const dir = dirname(path);
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isDirectory()) throw new UsageError(`--report ${file} is a directory`);
  const parent = await stat(dir).catch(() => undefined);
  if (!parent?.isDirectory()) {
    throw new UsageError(`--report ${file}: the directory ${dir} does not exist`);
  }
  // Opened for appending (nothing written), and removed again when it was made here: what the
  // write after the run needs, on any file system and for any user (root passes access()).
  try {
    const handle = await open(path, "a");
    await handle.close();
    if (!existing) await unlink(path);
  } catch (err) {
    throw new UsageError(`--report ${file} cannot be written: ${(err as Error).message}`);
  }
}

/** Runs `posthorn conformance`. */
export async function conformanceCommand(argv: readonly string[], io: CommandIo): Promise<number> {
  const parsed = parseOrHelp(argv, OPTIONS, CONFORMANCE_HELP, io);
  if (!parsed) return EXIT_OK;
  const { values } = parsed;
  const reportFile = values.report as string | undefined;
  if (reportFile !== undefined && !/\.(html?|json)$/i.test(reportFile)) {
    throw new UsageError("--report must name a .html or .json file");
  }
  if (reportFile !== undefined) await checkReportPath(reportFile);
  const only = onlyOption(values);
  const ci = io.env.CI !== undefined && !["", "0", "false"].includes(io.env.CI);
  const requireAll = values["require-all"] === true || ci;
  const { findBackends } = await import("../backends.js");
  const { runConformance } = await import("../conformance-run.js");
  const backends = await findBackends({ env: io.env, fallback: "local", only });
  let bar: ReturnType<typeof progressBar> | undefined;
  let report: Awaited<ReturnType<typeof runConformance>>;
  try {
    report = await runConformance(backends.rows, [...backends.unavailable], {
      start: (total) => {
        bar = progressBar(io, total);
      },
      tick: (label) => bar?.tick(label),
    });
  } finally {
    bar?.done();
    await backends.stop();
  }
  if (reportFile !== undefined) {
    if (/\.json$/i.test(reportFile))
      await writeFile(reportFile, `${JSON.stringify(report, null, 2)}\n`);
    else {
      const { renderHtmlReport } = await import("../report-html.js");
      await writeFile(reportFile, renderHtmlReport(report));
    }
  }
  const s = report.summary;
  const green = s.failed === 0 && s.cells > 0;
  const complete = report.unavailable.length === 0;
  if (values.json) {
    io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    const c = palette(useColour(io));
    const rows = report.rows.map((row) => [
      row.binding,
      ...report.columns.map((col) => {
        const cell = row.cells.find((x) => x.path === col);
        if (!cell) return c.dim("-");
        if (cell.error) return c.red("error");
        const text = `${cell.passed}/${cell.passed + cell.failed}`;
        return cell.failed === 0 ? c.green(text) : c.red(text);
      }),
    ]);
    io.stdout.write(`${formatTable(["binding", ...report.columns], rows)}\n\n`);
    for (const u of report.unavailable)
      io.stdout.write(`${c.yellow(`left out: ${u.label}: ${u.reason}`)}\n`);
    for (const row of report.rows) {
      for (const cell of row.cells) {
        if (cell.error) io.stdout.write(c.red(`${row.binding} ${cell.path}: ${cell.error}\n`));
        for (const o of cell.outcomes.filter((x) => x.status === "fail").slice(0, 5)) {
          io.stdout.write(c.red(`${row.binding} ${cell.path} ${o.vector}: ${o.reason}\n`));
        }
      }
    }
    const summary = `${s.greenCells} of ${s.cells} cells green; ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped in ${(report.durationMs / 1000).toFixed(1)} s`;
    io.stdout.write(`${green ? c.green(summary) : c.red(summary)}\n`);
    if (reportFile) io.stdout.write(`report: ${reportFile}\n`);
  }
  if (!green) return EXIT_FAILED;
  if (requireAll && !complete) {
    note(
      io,
      "posthorn conformance: transports were left out (see above); --require-all or CI=true makes that a failure",
    );
    return EXIT_FAILED;
  }
  return EXIT_OK;
}
