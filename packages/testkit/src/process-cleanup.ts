import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";

// Broker processes still running and their directories: killed and removed when the test process
// ends without stopping them (a crashed or interrupted test, or a test file that forgot stop()),
// so no broker outlives its run. Vitest ends its worker processes with SIGTERM, which skips
// "exit" handlers: while a broker runs, SIGTERM, SIGINT and SIGHUP are watched too, and when no
// one else listens for that signal the brokers are killed and the signal raised again, so the
// process ends as it would have.
const running = new Map<ChildProcess, string>();
const SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"] as const;

function killRunning(): void {
  for (const [child, dir] of running) {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
  running.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  // Someone else handles it (and may go on running): the brokers stay, "exit" still catches them.
  if (process.listenerCount(signal) > 1) return;
  unwatch();
  killRunning();
  process.kill(process.pid, signal);
}

function watch(): void {
  process.on("exit", killRunning);
  for (const s of SIGNALS) process.on(s, onSignal);
}

function unwatch(): void {
  process.off("exit", killRunning);
  for (const s of SIGNALS) process.off(s, onSignal);
}

/**
 * Registers a broker process the testkit started, and its directory, to be killed and removed
 * if the process ends before the test stopped it.
 *
 * @param child - the broker process
 * @param dir - its temporary directory
 */
export function track(child: ChildProcess, dir: string): void {
  if (running.size === 0) watch();
  running.set(child, dir);
  child.once("exit", () => {
    if (running.delete(child) && running.size === 0) unwatch();
  });
}
