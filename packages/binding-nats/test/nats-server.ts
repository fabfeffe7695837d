import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type NatsContentMode, toNatsMessage } from "@posthorn/binding-nats";
import type { CloudEvent } from "@posthorn/core";
import { type BindingPath, freePort, waitForPort } from "@posthorn/testkit";

/** A NATS server for one test file: a launched one, or the one NATS_URL names. */
export interface TestNats {
  readonly url: string;
  /** Stops the server when this file started it. */
  stop(): Promise<void>;
}

/**
 * The payload limit of the server the tests start. nats-server's default is 1 MB (1,048,576
 * bytes), which the 1 MiB vector plus its headers exceeds; the tests raise it so every vector
 * travels. Against a server named by NATS_URL the tests read its limit instead and skip, with
 * the computed reason, what does not fit.
 */
export const TEST_MAX_PAYLOAD = 4 * 1024 * 1024;

function findNatsServer(): string {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/local/bin"])) {
    const candidate = join(dir, "nats-server");
    if (existsSync(candidate)) return candidate;
  }
  throw new Error("nats-server is not installed (or set NATS_URL)");
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

/**
 * Starts nats-server on a free loopback port with JetStream, a temporary store and a raised
 * max_payload (a config file, since the command line has no max_payload flag), unless NATS_URL
 * is set.
 */
export async function startTestNats(): Promise<TestNats> {
  const fromEnv = process.env.NATS_URL;
  if (fromEnv) return { url: fromEnv, stop: async () => {} };
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "posthorn-binding-nats-"));
  const conf = join(dir, "nats.conf");
  writeFileSync(
    conf,
    [
      `listen: "127.0.0.1:${port}"`,
      `max_payload: ${TEST_MAX_PAYLOAD}`,
      "jetstream {",
      `  store_dir: ${JSON.stringify(join(dir, "js"))}`,
      "  max_memory_store: 268435456",
      "  max_file_store: 1073741824",
      "}",
      "",
    ].join("\n"),
  );
  const child = spawn(findNatsServer(), ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  try {
    await Promise.race([
      waitForPort("127.0.0.1", port),
      exited(child).then(() => {
        throw new Error(`nats-server exited at start: ${stderr}`);
      }),
    ]);
  } catch (err) {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    async stop() {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited(child);
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let counter = 0;
/** A subject or stream name no other test uses. */
export function unique(prefix: string): string {
  counter++;
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter}`;
}

/** Why a server cannot carry an event along a path (it exceeds max_payload), or `undefined`. */
export function tooLarge(event: CloudEvent, path: BindingPath, limit: number): string | undefined {
  const mode = path.mode as NatsContentMode;
  const m = toNatsMessage(event, { mode, ...(path.format ? { format: path.format } : {}) });
  const size = m.data.length + m.headers.byteLength();
  return size > limit
    ? `the server's max_payload is ${limit} bytes; this message is ${size}`
    : undefined;
}
