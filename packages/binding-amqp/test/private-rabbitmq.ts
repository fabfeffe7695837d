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
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A RabbitMQ node of the test's own, on free ports, with the AMQP 1.0 plugin and a store in a
 * temporary directory: it can be stopped and started again (same ports, same store) without
 * disturbing the shared broker on 5672 that other tests use at the same time.
 *
 * rabbitmq-server binds its ports itself, so they are chosen before it starts, and another
 * process (a parallel test worker) can take one in between. As the testkit's launchers do
 * (packages/testkit/src/launch.ts), the node is ready only when RabbitMQ logs that its listener
 * on our port started and that its startup completed (a port that merely answers may be whoever
 * took it), and a first start that fails because a port was taken is tried again on new ports.
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

/** How many first starts are tried, each on new ports, when another process takes a port first. */
const START_ATTEMPTS = 5;

/** How long a start has to log that the node is ready (a boot takes about 4 s, more under load). */
const READY_TIMEOUT_MS = 60_000;

// What RabbitMQ logs when a port is taken: its AMQP listener's "{listen_error, ..., eaddrinuse}"
// (after booting the rest, ~9 s), or the distribution port's "dist_port_already_used" (~2 s).
const PORT_TAKEN = /eaddrinuse|dist_port_already_used/;

// The console log is coloured; the lines are matched without the colour codes.
const ANSI = /\x1b\[[0-9;]*m/g;

/** A start that failed because another process held one of the node's ports. */
class PortTakenError extends Error {
  override readonly name = "PortTakenError";
}

/**
 * Two different ports on 127.0.0.1, for AMQP and Erlang distribution: both are listened on (port
 * 0) at once, read back, then closed.
 */
async function choosePorts(): Promise<{ port: number; distPort: number }> {
  const servers: Server[] = [createServer(), createServer()];
  try {
    const [port, distPort] = await Promise.all(
      servers.map(
        (server) =>
          new Promise<number>((resolve, reject) => {
            server.once("error", reject);
            server.listen(0, "127.0.0.1", () => {
              const address = server.address();
              resolve(typeof address === "object" && address ? address.port : 0);
            });
          }),
      ),
    );
    return { port: port as number, distPort: distPort as number };
  } finally {
    for (const server of servers) {
      await new Promise<void>((resolve) =>
        server.listening ? server.close(() => resolve()) : resolve(),
      );
    }
  }
}

/**
 * Starts a private RabbitMQ node (about 4 s). Its Erlang cookie is a fresh random one in the
 * node's own `HOME`, so no other node's cookie is read; epmd (shared by all nodes on the host)
 * is started by Erlang when none runs.
 *
 * @throws Error when rabbitmq-server is not installed, exits at start for another reason than a
 *   taken port, does not log that it is ready within 60 s, or finds a port taken at each of 5
 *   starts (naming the ports tried)
 */
export async function startPrivateRabbitMq(): Promise<PrivateRabbitMq> {
  const binaries = rabbitMqBinaries();
  if (binaries === undefined) throw new Error("rabbitmq-server is not installed");
  const dir = mkdtempSync(join(tmpdir(), "posthorn-rabbitmq-faults-"));
  const home = join(dir, "home");
  for (const d of [home, join(dir, "mnesia"), join(dir, "log")]) mkdirSync(d);
  const cookie = join(home, ".erlang.cookie");
  writeFileSync(cookie, randomBytes(16).toString("hex").toUpperCase());
  chmodSync(cookie, 0o400);
  writeFileSync(join(dir, "enabled_plugins"), "[rabbitmq_amqp1_0].\n");
  writeFileSync(join(dir, "env.conf"), "");
  const nodename = `posthorn-faults-${process.pid}-${randomBytes(3).toString("hex")}@localhost`;
  let port = 0;
  let distPort = 0;
  const environment = (): NodeJS.ProcessEnv => ({
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
    // A node that fails before its log is set up (a taken distribution port) writes its crash
    // dump to the working directory, the repository root, otherwise.
    ERL_CRASH_DUMP: join(dir, "log", "erl_crash.dump"),
  });
  const configure = (): void => {
    writeFileSync(
      join(dir, "rabbitmq.conf"),
      [
        `listeners.tcp.local = 127.0.0.1:${port}`,
        "loopback_users = none",
        // The log on stdout too, where the start reads that the listener started.
        "log.console = true",
        "log.console.level = info",
        "",
      ].join("\n"),
    );
  };

  let child: ChildProcess | undefined;
  let output = "";
  /** Starts the node on `port` and `distPort` and resolves once RabbitMQ says it is ready. */
  const startOnce = async (): Promise<void> => {
    const started = spawn(binaries.server, [], {
      env: environment(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = started;
    output = "";
    // Both lines must come from this start: "started TCP listener on 127.0.0.1:<port>" once the
    // AMQP listener is bound, then the banner's "completed with 1 plugins" (the AMQP 1.0 plugin)
    // once startup is complete. Each is looked for as it arrives, so a long log between them
    // cannot push the first out of the kept tail.
    const listener = `started TCP listener on 127.0.0.1:${port}`;
    let listening = false;
    let onOutput = (): void => {};
    const keep = (d: Buffer) => {
      output = (output + d.toString().replace(ANSI, "")).slice(-8000);
      if (output.includes(listener)) listening = true;
      onOutput();
    };
    started.stdout?.on("data", keep);
    started.stderr?.on("data", keep);
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        onOutput = () => {
          if (listening && /completed with \d+ plugins?/.test(output)) resolve();
        };
        started.once("error", (err) =>
          reject(new Error(`rabbitmq-server could not be started: ${err.message}`)),
        );
        void exited(started).then(() => {
          const why = `rabbitmq-server exited at start (ports ${port}, ${distPort}): ${output}`;
          reject(PORT_TAKEN.test(output) ? new PortTakenError(why) : new Error(why));
        });
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `rabbitmq-server did not log "${listener}" and "completed with ... plugins" within ${READY_TIMEOUT_MS} ms: ${output}`,
              ),
            ),
          READY_TIMEOUT_MS,
        );
      });
    } catch (err) {
      started.kill("SIGKILL");
      await exited(started);
      throw err;
    } finally {
      clearTimeout(timer);
      onOutput = () => {};
    }
  };

  /** Starts the node again on its ports: clients know them, so a taken one is an error. */
  const start = async (): Promise<void> => {
    try {
      await startOnce();
    } catch (err) {
      if (!(err instanceof PortTakenError)) throw err;
      throw new Error(
        `cannot start the private RabbitMQ node again on its ports (${port}, ${distPort}): another process took one while it was down; ${err.message}`,
      );
    }
  };

  const stop = async (): Promise<void> => {
    const running = child;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const ctl = spawn(binaries.ctl, ["-n", nodename, "stop"], {
      env: environment(),
      stdio: "ignore",
    });
    const killer = setTimeout(() => running.kill("SIGKILL"), 20_000);
    await Promise.all([exited(running), exited(ctl)]);
    clearTimeout(killer);
  };

  // A first start that finds a port taken is tried again on new ports: no client knows them yet.
  const collisions: string[] = [];
  for (;;) {
    ({ port, distPort } = await choosePorts());
    configure();
    try {
      await startOnce();
      break;
    } catch (err) {
      if (err instanceof PortTakenError) collisions.push(`${port},${distPort}`);
      if (err instanceof PortTakenError && collisions.length < START_ATTEMPTS) continue;
      rmSync(dir, { recursive: true, force: true });
      if (!(err instanceof PortTakenError)) throw err;
      throw new Error(
        `another process took a port each time the private RabbitMQ node started (${START_ATTEMPTS} attempts, ports ${collisions.join("; ")}); the last: ${err.message}`,
      );
    }
  }
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
          env: environment(),
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
