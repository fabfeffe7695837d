import { CloudEvent } from "@posthorn/core";
import {
  type CommandIo,
  EXIT_FAILED,
  EXIT_OK,
  formatTable,
  note,
  palette,
  useColour,
} from "../cli-io.js";
import type { MatrixPath, MatrixRow } from "../matrix.js";
import { describeError } from "../redact.js";
import { onlyOption, parseOrHelp } from "./shared.js";

/** `posthorn demo --help`. */
export const DEMO_HELP = `Usage: posthorn demo [options]

Sends one CloudEvent across every transport in every content mode and format this build
supports, receives each, and prints a table: transport, mode, format, bytes on the wire,
round-trip latency, and whether what came back is equivalent to what was sent.

With nothing configured it starts embedded defaults: in-process HTTP and WebSocket servers,
an AMQP 1.0 rhea container listening (peer to peer), the aedes MQTT broker (MQTT 3.1.1),
the testkit Kafka-protocol broker, and nats-server when it is installed. Set AMQP_URL,
MQTT_URL, NATS_URL or KAFKA_BROKERS to use real brokers instead.

Options:
  --only <list>   only these transports, e.g. --only http,kafka
  --json          print the results as JSON on stdout
  -h, --help      this text

"bytes" counts the message as it arrived: body, content type, and property or header names
and values. A transport with no embedded stand-in (nats-server not installed) or whose binding
is not installed is left out with a note; one whose configured address does not answer, or that
--only names, fails the run. Exit status: 0 when every row is equivalent and nothing asked for
was left out, 1 otherwise.
`;

const OPTIONS = {
  only: { type: "string" },
  json: { type: "boolean" },
} as const;

/** One row of the demo table. */
export interface DemoResult {
  transport: string;
  backend: string;
  mode: string;
  format: string;
  bytes: number | undefined;
  latencyMs: number | undefined;
  equivalent: boolean;
  error?: string;
}

/** The event the demo sends everywhere. */
export function demoEvent(): CloudEvent {
  return CloudEvent.create({
    type: "com.example.posthorn.demo",
    source: "/posthorn/demo",
    subject: "order-42",
    datacontenttype: "application/json",
    data: { orderId: 42, items: ["stamp", "envelope"], total: 3.5, note: "ünïcødé ✓" },
    demotrace: "a1b2c3",
  });
}

async function runRow(
  row: MatrixRow,
  event: CloudEvent,
  onResult: (r: DemoResult) => void,
): Promise<void> {
  const { openCell, pathsOf, withPath, compare, messageBytes, pathName } = await import(
    "../matrix.js"
  );
  let paths: MatrixPath[];
  try {
    paths = await pathsOf(row);
  } catch (err) {
    onResult({
      transport: row.label,
      backend: row.backend,
      mode: "-",
      format: "-",
      bytes: undefined,
      latencyMs: undefined,
      equivalent: false,
      error: describeError(err),
    });
    return;
  }
  for (const path of paths) {
    const base = {
      transport: row.label,
      backend: row.backend,
      mode: path.mode,
      format: path.format ?? "-",
    };
    try {
      const cell = await openCell(withPath(await row.url(pathName(path)), path), 10_000);
      try {
        const started = performance.now();
        // Pull before publishing: an HTTP publish resolves only once the receiver settled.
        const receiving = cell.next(10_000).then((d) => ({ d, at: performance.now() }));
        const publishing = cell.publisher.publish(path.mode === "batch" ? [event] : event, {
          timeoutMs: 10_000,
        });
        // A publish that fails must not leave the demo waiting for a delivery that never comes.
        const failed = publishing.then(
          () => new Promise<never>(() => undefined),
          (err: unknown) => Promise.reject(err),
        );
        const { d: delivery, at } = await Promise.race([receiving, failed]);
        const problem = compare(event, delivery);
        if (delivery && !delivery.settled) await delivery.accept().catch(() => undefined);
        await publishing;
        const latencyMs = at - started;
        onResult({
          ...base,
          bytes: delivery ? messageBytes(delivery.message) : undefined,
          latencyMs: delivery ? latencyMs : undefined,
          equivalent: problem === undefined,
          ...(problem === undefined ? {} : { error: problem }),
        });
      } finally {
        await cell.close();
      }
    } catch (err) {
      onResult({
        ...base,
        bytes: undefined,
        latencyMs: undefined,
        equivalent: false,
        error: describeError(err),
      });
    }
  }
}

/** Runs `posthorn demo`. */
export async function demoCommand(argv: readonly string[], io: CommandIo): Promise<number> {
  const parsed = parseOrHelp(argv, OPTIONS, DEMO_HELP, io);
  if (!parsed) return EXIT_OK;
  const { values } = parsed;
  const only = onlyOption(values);
  const c = palette(useColour(io));
  const started = Date.now();
  const { findBackends } = await import("../backends.js");
  const backends = await findBackends({ env: io.env, fallback: "embedded", only });
  const results: DemoResult[] = [];
  try {
    if (!values.json) {
      io.stdout.write(
        `${c.bold("posthorn demo")}: one CloudEvent across every transport, mode and format\n\n`,
      );
      for (const line of backends.notes) io.stdout.write(`  ${line}\n`);
      for (const u of backends.unavailable) {
        const line = `${u.label}: left out: ${u.reason}`;
        io.stdout.write(`  ${u.requested ? c.red(line) : c.yellow(line)}\n`);
      }
      io.stdout.write("\n");
    }
    const event = demoEvent();
    await Promise.all(backends.rows.map((row) => runRow(row, event, (r) => results.push(r))));
  } finally {
    await backends.stop();
  }
  const order = new Map(backends.rows.map((r, i) => [r.label, i]));
  results.sort((a, b) => (order.get(a.transport) ?? 0) - (order.get(b.transport) ?? 0));
  const allEquivalent = results.length > 0 && results.every((r) => r.equivalent);
  const missing = backends.unavailable.filter((u) => u.requested);
  const ok = allEquivalent && missing.length === 0;
  const ms = Date.now() - started;
  if (values.json) {
    io.stdout.write(
      `${JSON.stringify({ ok, ms, results, unavailable: backends.unavailable }, null, 2)}\n`,
    );
  } else {
    const rows = results.map((r) => [
      r.transport,
      r.mode,
      r.format,
      r.bytes === undefined ? "-" : String(r.bytes),
      r.latencyMs === undefined ? "-" : `${r.latencyMs.toFixed(1)} ms`,
      r.equivalent ? c.green("yes") : c.red("NO"),
    ]);
    io.stdout.write(
      `${formatTable(["transport", "mode", "format", "bytes", "round trip", "equivalent"], rows)}\n\n`,
    );
    for (const r of results.filter((x) => x.error)) {
      io.stdout.write(`${c.red(`${r.transport} ${r.mode}/${r.format}: ${r.error}`)}\n`);
    }
    const left = missing.length > 0 ? `; left out: ${missing.map((u) => u.label).join(", ")}` : "";
    const summary = `${results.filter((r) => r.equivalent).length} of ${results.length} paths equivalent in ${(ms / 1000).toFixed(1)} s${left}`;
    io.stdout.write(`${ok ? c.green(summary) : c.red(summary)}\n`);
  }
  if (!allEquivalent)
    note(io, "posthorn demo: some paths did not round-trip to an equivalent event");
  for (const u of missing)
    note(io, `posthorn demo: ${u.label} was asked for and left out: ${u.reason}`);
  return ok ? EXIT_OK : EXIT_FAILED;
}
