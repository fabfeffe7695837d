import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startKafkaBroker } from "@posthorn/testkit";
import { afterAll, beforeAll } from "vitest";

/** The repository root, where the command is run from, as a user of a fresh clone would. */
export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const TSX = `${ROOT}node_modules/.bin/tsx`;
const BIN = "packages/cli/src/bin.ts";

/** What a finished command printed, and its exit status. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A running command. */
export interface RunningCli {
  readonly child: ChildProcess;
  /** Resolves, with stderr so far, once stderr contains `text` (e.g. `ready:`). */
  waitFor(text: string, timeoutMs?: number): Promise<string>;
  /** Resolves when the process exits. */
  readonly done: Promise<CliResult>;
}

/**
 * Starts `tsx packages/cli/src/bin.ts <args>` from the repository root (what `npx tsx` runs),
 * with `env` merged over the test's environment (`undefined` removes a variable).
 */
export function startCli(
  args: readonly string[],
  options: { env?: Record<string, string | undefined>; stdin?: string } = {},
): RunningCli {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...options.env })) {
    if (v !== undefined) env[k] = v;
  }
  env.NO_COLOR = "1";
  const child = spawn(TSX, [BIN, ...args], { cwd: ROOT, env, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  const waiters: Array<{ text: string; resolve: (stderr: string) => void }> = [];
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
    for (const w of [...waiters]) {
      if (stderr.includes(w.text)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(stderr);
      }
    }
  });
  if (options.stdin !== undefined) child.stdin?.end(options.stdin);
  else child.stdin?.end();
  const done = new Promise<CliResult>((resolve) => {
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
  return {
    child,
    done,
    waitFor(text, timeoutMs = 30_000) {
      if (stderr.includes(text)) return Promise.resolve(stderr);
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no "${text}" within ${timeoutMs} ms; stderr: ${stderr}`)),
          timeoutMs,
        );
        waiters.push({
          text,
          resolve: (text) => {
            clearTimeout(timer);
            resolve(text);
          },
        });
        void done.then(() => {
          clearTimeout(timer);
          if (!stderr.includes(text))
            reject(new Error(`exited before "${text}"; stderr: ${stderr}`));
        });
      });
    },
  };
}

/** Runs the command to completion. */
export function runCli(
  args: readonly string[],
  options: { env?: Record<string, string | undefined>; stdin?: string } = {},
): Promise<CliResult> {
  return startCli(args, options).done;
}

/**
 * The URL a running `receive` or `bridge` listens on, from its `ready:` line: for an http:// or
 * ws:// URL with port 0, the port the system picked.
 */
export async function readyUrl(running: RunningCli): Promise<string> {
  const stderr = await running.waitFor("ready:");
  const url = /ready: (?:receiving from|bridging) (\S+)/.exec(stderr)?.[1];
  if (url === undefined) throw new Error(`no URL on the ready: line; stderr: ${stderr}`);
  return url;
}

/** A name no other test (or run) uses. */
export function unique(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * The Kafka brokers a test file's commands use: `KAFKA_BROKERS` when set, else a testkit broker
 * started in this process before the file's tests and stopped after them (the spawned commands
 * reach it over TCP like any client). Call it at the top level of a test file; read the returned
 * function inside tests.
 */
export function kafkaBrokersForFile(): () => string {
  let brokers = process.env.KAFKA_BROKERS ?? "";
  let stop: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    if (!brokers) {
      const broker = await startKafkaBroker({ log: () => undefined });
      brokers = broker.brokers.join(",");
      stop = () => broker.stop();
    }
  });
  afterAll(async () => {
    await stop?.();
  });
  return () => brokers;
}
