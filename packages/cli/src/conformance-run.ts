import type { CloudEvent, Delivery } from "@posthorn/core";
import { invalidEvent, invalidVectors, validVectors } from "@posthorn/testkit/vectors";
import {
  compare,
  eventText,
  exchange,
  type MatrixPath,
  type MatrixRow,
  type OpenCell,
  openCell,
  pathName,
  pathsOf,
  receivedText,
  settle,
  typedRejection,
  type VectorOutcome,
  withPath,
} from "./matrix.js";
import { describeError } from "./redact.js";

/** One cell of the conformance matrix: a row (binding) and a path (mode x format). */
export interface CellReport {
  readonly path: string;
  readonly passed: number;
  readonly failed: number;
  readonly skipped: number;
  /** Every vector's outcome; failures carry what was sent and what came back. */
  readonly outcomes: VectorOutcome[];
  /** Set when the cell could not run at all (connection refused, ...). */
  readonly error?: string;
}

/** One row of the matrix. */
export interface RowReport {
  readonly binding: string;
  readonly backend: string;
  readonly cells: CellReport[];
}

/** The whole report, as `--report file.json` writes it. */
export interface ConformanceReport {
  readonly tool: "posthorn conformance";
  readonly startedAt: string;
  readonly durationMs: number;
  readonly vectors: { readonly valid: number; readonly invalid: number };
  /** Every path label that appears in any row, in column order. */
  readonly columns: string[];
  readonly rows: RowReport[];
  /** Transports left out, and why. */
  readonly unavailable: { label: string; reason: string }[];
  readonly summary: {
    readonly cells: number;
    readonly greenCells: number;
    readonly passed: number;
    readonly failed: number;
    readonly skipped: number;
  };
}

const RECEIVE_MS = 8000;
const INVALID_RECEIVE_MS = 2000;

async function runCell(
  row: MatrixRow,
  path: MatrixPath,
  tick: (label: string) => void,
): Promise<CellReport> {
  const outcomes: VectorOutcome[] = [];
  const label = `${row.label} ${pathName(path)}`;
  let cell: OpenCell;
  try {
    cell = await openCell(withPath(await row.url(pathName(path).replace("/", "-")), path));
  } catch (err) {
    const error = describeError(err);
    const count = validVectors.length + invalidVectors.length;
    for (let i = 0; i < count; i++) tick(label);
    return { path: pathName(path), passed: 0, failed: 1, skipped: 0, outcomes, error };
  }
  try {
    const carried = validVectors.filter((v) => {
      const reason = row.skip?.(v, path);
      if (reason !== undefined) {
        outcomes.push({ vector: v.name, kind: "valid", status: "skip", reason });
        tick(label);
      }
      return reason === undefined;
    });
    if (path.mode === "batch") {
      // One batch of every vector, received back in order.
      const events = carried.map((v) => v.event);
      const got: Delivery[] = [];
      const problems: (string | undefined)[] = [];
      // Compare and settle each as it comes: an HTTP batch is answered once all are settled.
      const receiving = (async () => {
        for (let i = 0; i < events.length; i++) {
          const d = await cell.next(RECEIVE_MS);
          if (!d) break;
          problems.push(compare(events[i] as CloudEvent, d));
          got.push(d);
          await settle(d);
        }
      })();
      const publishError = await cell.publisher.publish(events, { timeoutMs: 20_000 }).then(
        () => undefined,
        (err: unknown) => describeError(err),
      );
      if (publishError === undefined) await receiving;
      for (const [i, v] of carried.entries()) {
        const d = got[i];
        const problem = publishError
          ? `batch publish failed: ${publishError}`
          : d
            ? problems[i]
            : "nothing came back";
        outcomes.push({
          vector: v.name,
          kind: "batch",
          status: problem === undefined ? "pass" : "fail",
          ...(problem === undefined ? {} : { reason: problem, sent: eventText(v.event) }),
          ...(problem !== undefined && d ? { received: receivedText(d) as string } : {}),
        });
        tick(label);
      }
    } else {
      for (const v of carried) {
        outcomes.push(await roundTrip(cell, v.name, v.event));
        tick(label);
      }
    }
    // Invalid vectors this path can detect: either side must raise a typed error.
    const traits = cell.endpoint.traits;
    for (const v of invalidVectors) {
      const detectable =
        v.detectableBy === "any" ||
        (v.detectableBy === "typed" && traits.typed) ||
        (v.detectableBy === "case-sensitive" && traits.caseSensitive);
      if (!detectable || path.mode === "batch") {
        outcomes.push({
          vector: v.name,
          kind: "invalid",
          status: "skip",
          reason:
            path.mode === "batch"
              ? "batch paths carry valid events only"
              : `only ${v.detectableBy} paths can tell`,
        });
        tick(label);
        continue;
      }
      outcomes.push(await rejectInvalid(cell, v.name, invalidEvent(v), v.attributes));
      tick(label);
    }
  } finally {
    await cell.close();
  }
  const count = (s: VectorOutcome["status"]) => outcomes.filter((o) => o.status === s).length;
  return {
    path: pathName(path),
    passed: count("pass"),
    failed: count("fail"),
    skipped: count("skip"),
    outcomes,
  };
}

async function roundTrip(cell: OpenCell, name: string, event: CloudEvent): Promise<VectorOutcome> {
  const x = await exchange(cell, event, RECEIVE_MS);
  if (x.publishError !== undefined) {
    return {
      vector: name,
      kind: "valid",
      status: "fail",
      reason: `publish failed: ${describeError(x.publishError)}`,
      sent: eventText(event),
    };
  }
  const d = x.delivery;
  const problem = compare(event, d);
  await settle(d);
  const publishError = await x.published;
  if (problem === undefined && publishError === undefined)
    return { vector: name, kind: "valid", status: "pass" };
  const received = receivedText(d);
  return {
    vector: name,
    kind: "valid",
    status: "fail",
    reason: problem ?? `publish failed after delivery: ${describeError(publishError)}`,
    sent: eventText(event),
    ...(received === undefined ? {} : { received }),
  };
}

async function rejectInvalid(
  cell: OpenCell,
  name: string,
  event: CloudEvent,
  attributes: Readonly<Record<string, unknown>>,
): Promise<VectorOutcome> {
  const sent = safeJson(attributes);
  const x = await exchange(cell, event, INVALID_RECEIVE_MS);
  if (x.publishError !== undefined) {
    const typed = typedRejection(x.publishError);
    // The pull stays pending for the next vector; a sender that refused sent nothing.
    return typed
      ? { vector: name, kind: "invalid", status: "pass", reason: `refused: ${typed}` }
      : {
          vector: name,
          kind: "invalid",
          status: "fail",
          reason: `untyped error: ${describeError(x.publishError)}`,
          sent,
        };
  }
  const d = x.delivery;
  await settle(d);
  await x.published;
  if (d && !d.event) return { vector: name, kind: "invalid", status: "pass" };
  return {
    vector: name,
    kind: "invalid",
    status: "fail",
    reason: d
      ? "the receiver accepted an invalid event"
      : "neither side reported an error, and nothing came back",
    sent,
    ...(d ? { received: receivedText(d) as string } : {}),
  };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v) =>
      typeof v === "bigint"
        ? v.toString()
        : v instanceof Uint8Array
          ? `<${v.byteLength} bytes>`
          : v,
    );
  } catch {
    return String(value);
  }
}

/** How many vector outcomes a row's paths produce, for the progress bar. */
export function outcomesPerCell(): number {
  return validVectors.length + invalidVectors.length;
}

/**
 * Runs every vector over every path of every row; rows run side by side, cells of a row one
 * after another.
 */
export async function runConformance(
  rows: readonly MatrixRow[],
  unavailable: { label: string; reason: string }[],
  progress: { start(total: number): void; tick(label: string): void },
): Promise<ConformanceReport> {
  const started = Date.now();
  const pathsByRow = await Promise.all(
    rows.map(async (row) => {
      try {
        return await pathsOf(row);
      } catch (err) {
        unavailable.push({ label: row.label, reason: describeError(err) });
        return [];
      }
    }),
  );
  const total = pathsByRow.reduce((n, p) => n + p.length, 0) * outcomesPerCell();
  progress.start(total);
  const reports = await Promise.all(
    rows.map(async (row, i) => {
      const cells: CellReport[] = [];
      for (const path of pathsByRow[i] ?? []) cells.push(await runCell(row, path, progress.tick));
      return { binding: row.label, backend: row.backend, cells };
    }),
  );
  const columns: string[] = [];
  for (const r of reports)
    for (const c of r.cells) if (!columns.includes(c.path)) columns.push(c.path);
  const order = [
    "binary",
    "structured/json",
    "structured/avro",
    "structured/protobuf",
    "batch/json",
    "batch/protobuf",
  ];
  columns.sort((a, b) => ((order.indexOf(a) + 99) % 99) - ((order.indexOf(b) + 99) % 99));
  const all = reports.flatMap((r) => r.cells);
  return {
    tool: "posthorn conformance",
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    vectors: { valid: validVectors.length, invalid: invalidVectors.length },
    columns,
    rows: reports.filter((r) => r.cells.length > 0),
    unavailable,
    summary: {
      cells: all.length,
      greenCells: all.filter((c) => c.failed === 0 && !c.error).length,
      passed: all.reduce((n, c) => n + c.passed, 0),
      failed: all.reduce((n, c) => n + c.failed, 0),
      skipped: all.reduce((n, c) => n + c.skipped, 0),
    },
  };
}
