import { parseArgs } from "node:util";
import { isPosthornError } from "@posthorn/core";
import { describeError, redact } from "./redact.js";

/** Exit status: success. */
export const EXIT_OK = 0;
/** Exit status: the operation failed (connection, rejected publish, events not equivalent, ...). */
export const EXIT_FAILED = 1;
/** Exit status: the command line was wrong (unknown option, missing argument). */
export const EXIT_USAGE = 2;

/** Where a command writes; the real process streams, or buffers in tests. */
export interface CommandIo {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** A usage error: printed with the command's help hint, exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** The `parseArgs` option table of a command. */
export type OptionTable = NonNullable<Parameters<typeof parseArgs>[0]>["options"];

/** A command's parsed arguments. */
export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
}

/**
 * Parses a command's arguments with `node:util` `parseArgs`, turning its errors into
 * {@link UsageError}s.
 */
export function parseCommandArgs<T extends OptionTable>(
  argv: readonly string[],
  options: T,
): ParsedArgs {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
    return {
      values: values as Record<string, string | boolean | string[] | undefined>,
      positionals,
    };
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

/** Reads a numeric option, or throws a {@link UsageError} naming it. */
export function numberOption(
  values: Record<string, unknown>,
  name: string,
  fallback?: number,
): number | undefined {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (typeof raw !== "string" || raw.trim() === "" || !Number.isFinite(n) || n < 0) {
    throw new UsageError(`--${name} must be a non-negative number, got "${String(raw)}"`);
  }
  return n;
}

/**
 * Reads a count option (`--count`, `--concurrency`): a whole number of `least` or more, or throws
 * a {@link UsageError} naming it.
 */
export function countOption(
  values: Record<string, unknown>,
  name: string,
  fallback?: number,
  least: 0 | 1 = 0,
): number | undefined {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (typeof raw !== "string" || raw.trim() === "" || !Number.isInteger(n) || n < least) {
    throw new UsageError(
      `--${name} must be a whole number, ${least} or more, got "${String(raw)}"`,
    );
  }
  return n;
}

/** Writes a line to stderr with secrets hidden. */
export function note(io: CommandIo, line: string): void {
  io.stderr.write(`${redact(line)}\n`);
}

/** Prints an error the way every command does: `posthorn <cmd>: <code>: <message>`. */
export function printError(io: CommandIo, command: string, err: unknown): void {
  const code = isPosthornError(err) ? `${err.code}: ` : "";
  io.stderr.write(`posthorn ${command}: ${code}${describeError(err)}\n`);
}

/** Whether colour should be used on a stream (a TTY and `NO_COLOR` unset). */
export function useColour(io: CommandIo, stream: "stdout" | "stderr" = "stdout"): boolean {
  return io[stream].isTTY === true && !io.env.NO_COLOR;
}

/** ANSI colour helpers that do nothing when colour is off. */
export function palette(on: boolean): {
  green(s: string): string;
  red(s: string): string;
  yellow(s: string): string;
  dim(s: string): string;
  bold(s: string): string;
} {
  const wrap = (code: number) => (s: string) => (on ? `\u001b[${code}m${s}\u001b[0m` : s);
  return { green: wrap(32), red: wrap(31), yellow: wrap(33), dim: wrap(2), bold: wrap(1) };
}

/**
 * Lays rows out as a plain-text table with aligned columns (ANSI colour codes do not count
 * towards widths).
 */
export function formatTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const visible = (s: string) => s.replace(ANSI, "").length;
  const widths = header.map((h, i) =>
    Math.max(visible(h), ...rows.map((r) => visible(r[i] ?? ""))),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c + " ".repeat(Math.max(0, (widths[i] ?? 0) - visible(c))))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

const ANSI = /\u001b\[[0-9;]*m/g;

/**
 * A one-line progress bar on a TTY (redrawn in place); nothing elsewhere.
 */
export function progressBar(
  io: CommandIo,
  total: number,
): { tick(label?: string): void; done(): void } {
  const tty = io.stderr.isTTY === true;
  let count = 0;
  let last = 0;
  const draw = (label: string) => {
    const width = 30;
    const filled = total === 0 ? width : Math.round((count / total) * width);
    const bar = `${"#".repeat(filled)}${".".repeat(width - filled)}`;
    const cols = io.stderr.columns ?? 80;
    const text = `[${bar}] ${count}/${total} ${label}`.slice(0, cols - 1);
    io.stderr.write(`\r${text}\u001b[K`);
  };
  return {
    tick(label = "") {
      count++;
      if (!tty) return;
      const now = Date.now();
      if (now - last < 50 && count < total) return;
      last = now;
      draw(label);
    },
    done() {
      if (tty) io.stderr.write("\r\u001b[K");
    },
  };
}
