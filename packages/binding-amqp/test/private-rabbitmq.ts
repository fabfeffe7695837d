import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitForPort } from "@posthorn/testkit";

/**
 * A RabbitMQ node of the test's own, on free ports, with the AMQP 1.0 plugin and a store in a
 * temporary directory: it can be stopped and started again (same ports, same store) without
 * disturbing the shared broker on 5672 that other tests use at the same time.
 */
export interface PrivateRabbitMq {
  readonly host: "127.0.0.1";
  readonly port: number;
  readonly nodename: string;
  /** Stops the node gracefully (`rabbitmqctl stop`), keeping its store. */
  stop(): Promise<void>;
  /** Starts the stopped node again on the same ports with the same store. */
  start(): Promise<void>;
  /** {@link stop}, then {@link start}. */
  restart(): Promise<void>;
  /** Kills the node (SIGKILL): a crash, with no chance to flush or close anything. */
  kill(): Promise<void>;
  /** Runs `rabbitmqctl` against the node and returns its output. */
  ctl(...args: string[]): Promise<string>;
  /** The last `lines` lines of the node's log files, to explain a failure. */
  logTail(lines: number): string;
  /** Stops the node and removes its files. */
  dispose(): Promise<void>;
}

const DIRS = ["/usr/lib/rabbitmq/bin", "/usr/local/lib/rabbitmq/bin", "/usr/lib/rabbitmq/sbin"];

/**
 * Where `rabbitmq-server` and `rabbitmqctl` can be run directly. Debian's `/usr/sbin` wrappers
 * switch to the `rabbitmq` user, which could not read the test's own Erlang cookie; the scripts
 * behind them run as anyone.
 */
export function rabbitMqBinaries(): { server: string; ctl: string } | undefined {
  const path = (process.env.PATH ?? "").split(":");
  for (const dir of [...DIRS, ...path]) {
    const server = join(dir, "rabbitmq-server");
    const ctl = join(dir, "rabbitmqctl");
    if (existsSync(server) && existsSync(ctl)) return { server, ctl };
  }
  return undefined;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

/**
 * Starts a private RabbitMQ node (about 4 s). Its Erlang cookie is a fresh random one in the
 * node's own `HOME`, so no other node's cookie is read; epmd (shared by all nodes on the host)
 * is started by Erlang when none runs.
 */
export async function startPrivateRabbitMq(): Promise<PrivateRabbitMq> {
  const binaries = rabbitMqBinaries();
  if (binaries === undefined) throw new Error("rabbitmq-server is not installed");
  const port = await freePort();
  let distPort = await freePort();
  while (distPort === port) distPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "posthorn-rabbitmq-faults-"));
  const home = join(dir, "home");
  for (const d of [home, join(dir, "mnesia"), join(dir, "log")]) mkdirSync(d);
  const cookie = join(home, ".erlang.cookie");
  writeFileSync(cookie, randomBytes(16).toString("hex").toUpperCase());
  chmodSync(cookie, 0o400);
  writeFileSync(join(dir, "enabled_plugins"), "[rabbitmq_amqp1_0].\n");
  writeFileSync(join(dir, "env.conf"), "");
  writeFileSync(
    join(dir, "rabbitmq.conf"),
    [`listeners.tcp.local = 127.0.0.1:${port}`, "loopback_users = none", ""].join("\n"),
  );
  const nodename = `posthorn-faults-${process.pid}-${randomBytes(3).toString("hex")}@localhost`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: home,
    RABBITMQ_NODENAME: nodename,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, "mnesia"),
    RABBITMQ_LOG_BASE: join(dir, "log"),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, "enabled_plugins"),
    RABBITMQ_PID_FILE: join(dir, "pid"),
    RABBITMQ_CONFIG_FILE: join(dir, "rabbitmq.conf"),
    // Keeps the host's rabbitmq-env.conf (its NODENAME, its ports) out of this node.
    RABBITMQ_CONF_ENV_FILE: join(dir, "env.conf"),
    ERL_EPMD_ADDRESS: "127.0.0.1",
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: "-kernel inet_dist_use_interface {127,0,0,1}",
    // The script then execs the VM instead of proxying signals from a shell, so the child is the
    // node itself and a SIGKILL (the last resort of stop) leaves no orphan behind.
    RUNNING_UNDER_SYSTEMD: "true",
  };

  let child: ChildProcess | undefined;
  let output = "";
  const start = async (): Promise<void> => {
    const started = spawn(binaries.server, [], { env, stdio: ["ignore", "pipe", "pipe"] });
    child = started;
    const keep = (d: Buffer) => {
      output = (output + d.toString()).slice(-4000);
    };
    started.stdout?.on("data", keep);
    started.stderr?.on("data", keep);
    try {
      await Promise.race([
        waitForPort("127.0.0.1", port, 60_000),
        exited(started).then(() => {
          throw new Error(`rabbitmq-server exited at start: ${output}`);
        }),
      ]);
    } catch (err) {
      started.kill("SIGKILL");
      throw err;
    }
  };

  const stop = async (): Promise<void> => {
    const running = child;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const ctl = spawn(binaries.ctl, ["-n", nodename, "stop"], { env, stdio: "ignore" });
    const killer = setTimeout(() => running.kill("SIGKILL"), 20_000);
    await Promise.all([exited(running), exited(ctl)]);
    clearTimeout(killer);
  };

  await start();
  return {
    host: "127.0.0.1",
    port,
    nodename,
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
    async kill() {
      const running = child;
      if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
      running.kill("SIGKILL");
      await exited(running);
    },
    ctl(...args: string[]) {
      return new Promise<string>((resolve) => {
        const run = spawn(binaries.ctl, ["-n", nodename, "-q", ...args], {
          env,
          stdio: ["ignore", "pipe", "pipe"],
        });
        let out = "";
        run.stdout?.on("data", (d: Buffer) => {
          out += d.toString();
        });
        run.stderr?.on("data", (d: Buffer) => {
          out += d.toString();
        });
        run.once("exit", () => resolve(out));
      });
    },
    logTail(lines: number) {
      const logs = join(dir, "log");
      const text = readdirSync(logs)
        .filter((f) => f.endsWith(".log"))
        .map((f) => readFileSync(join(logs, f), "utf8"))
        .join("\n");
      return text.split("\n").slice(-lines).join("\n");
    },
    async dispose() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
