import { type ChildProcess, execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type BrokerCommand,
  MOSQUITTO_LOG,
  MOSQUITTO_READY,
  restartOnPorts,
  startOnFreePorts,
} from "./launch.js";

/** The brokers the integration tests use, and the environment variable naming each. */
export type BrokerName = "amqp" | "mqtt" | "nats" | "kafka";

const ENV: Record<BrokerName, string> = {
  amqp: "AMQP_URL",
  mqtt: "MQTT_URL",
  nats: "NATS_URL",
  kafka: "KAFKA_BROKERS",
};

const DEFAULTS: Record<Exclude<BrokerName, "kafka">, string> = {
  amqp: "amqp://guest:guest@127.0.0.1:5672",
  mqtt: "mqtt://127.0.0.1:1883",
  nats: "nats://127.0.0.1:4222",
};

/**
 * The address of a broker: its environment variable, or the local default. Kafka has no default
 * (the testkit's own Kafka-protocol broker stands in when `KAFKA_BROKERS` is unset).
 *
 * @param name - which broker
 * @returns the URL (for Kafka the `KAFKA_BROKERS` list), or `undefined` for Kafka without it
 */
export function brokerUrl(name: BrokerName): string | undefined {
  const fromEnv = process.env[ENV[name]];
  if (fromEnv) return fromEnv;
  return name === "kafka" ? undefined : DEFAULTS[name];
}

/** Whether the process runs under CI (`CI=true`), where a missing broker fails the run. */
export function inCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== "" && ci !== "false" && ci !== "0";
}

/** A TLS certificate and its private key, PEM-encoded. */
export interface TestCertificate {
  /** The certificate: give it to a server as `cert`, and to a client that trusts it as `ca`. */
  readonly cert: Buffer;
  /** Its private key, for the server (`key`). */
  readonly key: Buffer;
}

/**
 * A self-signed TLS certificate for a loopback address, made by `openssl` for this run, for
 * tests of TLS clients and servers: a client trusts it only when given it as `ca`, and fails
 * with Node's `DEPTH_ZERO_SELF_SIGNED_CERT` otherwise. Valid for one day.
 *
 * @param host - the IP address it is for (its common name and subject alternative name)
 * @returns the certificate and key, or `undefined` when `openssl` is not installed
 * @throws Error when `openssl` is not installed under CI (`CI=true`), where the TLS tests must run
 */
export function selfSignedCertificate(host = "127.0.0.1"): TestCertificate | undefined {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
  } catch {
    if (inCi()) throw new Error("openssl is not installed; under CI=true the TLS tests must run");
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), "posthorn-tls-"));
  try {
    const keyFile = join(dir, "key.pem");
    const certFile = join(dir, "cert.pem");
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        `/CN=${host}`,
        "-addext",
        `subjectAltName=IP:${host}`,
        "-keyout",
        keyFile,
        "-out",
        certFile,
      ],
      { stdio: "ignore" },
    );
    return { cert: readFileSync(certFile), key: readFileSync(keyFile) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Whether something accepts TCP connections at host:port within `timeoutMs`. Never rejects.
 *
 * @param host - host name or address
 * @param port - TCP port
 * @param timeoutMs - how long to wait for the connection, in milliseconds (default 1000)
 */
export function portOpen(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("error", () => done(false));
    socket.connect(port, host, () => done(true));
  });
}

/**
 * Host and port of a broker URL (`amqp://u:p@host:5672/x`, or Kafka's `host:9092,host2:9092`).
 *
 * @param url - the URL; of a comma-separated list only the first entry is read
 * @param defaultPort - the port when the URL names none
 * @throws TypeError when the URL cannot be parsed
 */
export function hostPort(url: string, defaultPort: number): { host: string; port: number } {
  const first = String(url).split(",")[0]?.trim() ?? "";
  const withScheme = first.includes("://") ? first : `tcp://${first}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new TypeError(
      `cannot read a host and port from the broker address ${JSON.stringify(withoutPassword(String(url)))}: give a URL such as mqtt://127.0.0.1:1883, or host:port`,
    );
  }
  return { host: u.hostname.replace(/^\[|\]$/g, ""), port: u.port ? Number(u.port) : defaultPort };
}

const DEFAULT_PORTS: Record<BrokerName, number> = {
  amqp: 5672,
  mqtt: 1883,
  nats: 4222,
  kafka: 9092,
};

/**
 * Checks that a broker answers. Outside CI a missing broker returns `false` with a warning, so the
 * caller can `describe.skipIf(!ok)` with that reason; under `CI=true` it throws, failing the run:
 * integration tests are never skipped in CI.
 *
 * @example
 * ```ts
 * const rabbit = await requireBroker("amqp");
 * describe.skipIf(!rabbit)("against RabbitMQ (skipped: no broker outside CI)", () => { ... });
 * ```
 *
 * @param name - which broker
 * @param url - its address (default {@link brokerUrl}); for AMQP the server must also answer
 *   the AMQP 1.0 header
 * @throws Error when there is no address (Kafka without `KAFKA_BROKERS`), and under CI when the
 *   broker does not answer
 */
export async function requireBroker(name: BrokerName, url = brokerUrl(name)): Promise<boolean> {
  if (url === undefined) {
    throw new Error(
      `no address for ${name}: set ${ENV[name]}${name === "kafka" ? ", or start the testkit's own broker with startKafkaBroker() and use its brokers" : ""}`,
    );
  }
  const { host, port } = hostPort(url, DEFAULT_PORTS[name]);
  const shown = withoutPassword(url);
  let problem: string | undefined;
  if (!(await portOpen(host, port))) {
    problem = `${name} broker not reachable at ${host}:${port} (${ENV[name]}=${shown})`;
  } else if (name === "amqp") {
    // RabbitMQ listens on 5672 without its AMQP 1.0 plugin too, and then answers a 1.0 client
    // with a 0-9-1 header: every test would fail with a protocol error that does not say why.
    const answer = await amqpProtocolAnswer(host, port);
    if (answer !== "1.0") {
      problem = `the broker at ${host}:${port} (${ENV[name]}=${shown}) does not speak AMQP 1.0 (it answered ${answer}); for RabbitMQ enable its plugin: rabbitmq-plugins enable rabbitmq_amqp1_0 (bash scripts/brokers.sh does)`;
    }
  }
  if (problem === undefined) return true;
  if (inCi()) throw new Error(`${problem}; under CI=true a missing broker fails the run`);
  console.warn(`${problem}: skipping its integration tests outside CI`);
  return false;
}

// A broker address for messages: a password in it is replaced by `***`.
function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === "") return url;
    parsed.password = "***";
    return parsed.href;
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@/]*@/, "//$1:***@");
  }
}

/**
 * The AMQP version a server answers with when a client opens with the AMQP 1.0 SASL header:
 * `"1.0"`, another version as the server's header spells it (`"AMQP 0-9-1"`), `"no AMQP header"`
 * when it answers something else, or `"nothing"` when it closes or stays silent. Never rejects.
 *
 * @param host - host name or address
 * @param port - TCP port
 * @param timeoutMs - how long to wait for the answer, in milliseconds (default 2000)
 */
export function amqpProtocolAnswer(host: string, port: number, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let received = Buffer.alloc(0);
    const done = (answer: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done("nothing"), timeoutMs);
    socket.once("error", () => done("nothing"));
    socket.once("close", () => done("nothing"));
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 8) return;
      const header = received.subarray(0, 8);
      if (header.toString("latin1", 0, 4) !== "AMQP") return done("no AMQP header");
      // 1.0 header: "AMQP", protocol id (0 AMQP, 2 TLS, 3 SASL), then 1 0 0.
      if (header[5] === 1 && header[6] === 0 && header[7] === 0) return done("1.0");
      return done(`AMQP ${header[5]}-${header[6]}-${header[7]}`);
    });
    socket.connect(port, host, () => {
      socket.write(Buffer.from([0x41, 0x4d, 0x51, 0x50, 3, 1, 0, 0]));
    });
  });
}

/**
 * A TCP port on 127.0.0.1 that was free when asked: the operating system's pick for a listener
 * on port 0, closed again.
 *
 * Racy: another process (a parallel test worker, an outgoing connection's local port) can take
 * the port between this call and the caller's bind, and the caller then fails with
 * `EADDRINUSE`, or worse, talks to whoever took it. A server in this process should instead
 * listen on port 0 itself and read its port back (`server.listen(0, "127.0.0.1")`, then
 * `server.address().port`), then build its URL from that. A process started by a test should
 * take port 0 and report its port (as `posthorn receive http://127.0.0.1:0/...` does), or be
 * retried on a new port when it finds its port taken, as the testkit's launchers are (see
 * {@link startNatsServer}). Use it only for a port that nothing should listen on, in a test that
 * fails, rather than passes, when another process took the port meanwhile.
 *
 * @returns the port
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Waits until host:port accepts connections, or throws after `timeoutMs`. Tries every 50 ms
 * or so, each try waiting up to 250 ms.
 *
 * @param host - host name or address
 * @param port - TCP port
 * @param timeoutMs - how long to keep trying, in milliseconds (default 10 s)
 * @throws Error when nothing listened in time
 */
export async function waitForPort(host: string, port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await portOpen(host, port, 250)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listened on ${host}:${port} within ${timeoutMs} ms`);
}

/** A broker process a test started, and how to stop it. */
export interface LaunchedBroker {
  /** The URL clients connect to, e.g. `nats://127.0.0.1:<port>`. */
  readonly url: string;
  /** The main listener's port, on 127.0.0.1. */
  readonly port: number;
  /** Extra listeners, e.g. `websocket` for Mosquitto. */
  readonly ports: Readonly<Record<string, number>>;
  /** The running process; a new one after {@link LaunchedBroker.restart}. */
  readonly process: ChildProcess;
  /**
   * Stops the process (SIGTERM, SIGKILL after 3 s) and removes its temporary files. A broker not
   * stopped is killed, and its files removed, when the test process exits or is ended by
   * SIGTERM, SIGINT or SIGHUP (as vitest ends its workers).
   */
  stop(): Promise<void>;
  /** Kills the process hard (for fault tests) without removing its state. */
  kill(): Promise<void>;
  /**
   * Starts it again on the same ports with the same state (after {@link LaunchedBroker.kill}, or
   * stopping the running process first). Rejects, naming the ports, when another process took
   * one while the broker was down (clients know the old ports, so no new one is chosen).
   */
  restart(): Promise<void>;
}

function findBinary(name: string): string {
  for (const dir of (process.env.PATH ?? "")
    .split(":")
    .concat(["/usr/sbin", "/usr/local/sbin", "/usr/local/bin"])) {
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`${name} is not installed (apt-get install -y ${name})`);
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited(child);
  clearTimeout(timer);
}

async function launch(
  names: readonly string[],
  command: (ports: Readonly<Record<string, number>>) => BrokerCommand,
  main: string,
  url: (port: number) => string,
  dir: string,
): Promise<LaunchedBroker> {
  let child: ChildProcess;
  let ports: Record<string, number>;
  try {
    ({ child, ports } = await startOnFreePorts(names, command, dir));
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const port = ports[main] as number;
  const broker: LaunchedBroker = {
    url: url(port),
    port,
    ports,
    get process() {
      return child;
    },
    async kill() {
      child.kill("SIGKILL");
      await exited(child);
    },
    async restart() {
      // A broker still running is stopped first: a second process on the same ports would exit
      // at once while the first kept answering, and then outlive stop().
      await terminate(child);
      child = await restartOnPorts(command(ports), ports, dir);
    },
    async stop() {
      await terminate(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return broker;
}

/** Options for {@link startNatsServer}. */
export interface NatsServerOptions {
  /** The server's `max_payload`. Default 4 MiB, so the testkit's 1 MiB vector fits with headers. */
  maxPayloadBytes?: number;
}

/**
 * Starts `nats-server` with JetStream on a free port and a temporary store directory.
 *
 * Ready means the server logged "Server is ready": its port is its own, not one another process
 * took after it was chosen. A start that fails because the port was taken is tried again on a
 * new port, up to 5 starts in all.
 *
 * @param options - the server's `max_payload` (default 4 MiB)
 * @throws RangeError when `maxPayloadBytes` is not a whole number from 1 to 64 MiB
 * @throws Error when `nats-server` is not installed, exits at start, does not log that it is
 *   ready within 10 s, or finds its port taken at each of 5 starts
 * @example
 * ```ts
 * const nats = await startNatsServer();
 * afterAll(() => nats.stop());
 * ```
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<LaunchedBroker> {
  const max = options.maxPayloadBytes;
  if (max !== undefined && !(Number.isInteger(max) && max >= 1 && max <= 64 * 1024 * 1024)) {
    throw new RangeError(
      `maxPayloadBytes must be a whole number from 1 to 64 MiB (nats-server's limit), got ${String(max)}`,
    );
  }
  const binary = findBinary("nats-server");
  const dir = mkdtempSync(join(tmpdir(), "posthorn-nats-"));
  const conf = join(dir, "nats.conf");
  // max_payload is only settable in a configuration file.
  writeFileSync(conf, `max_payload: ${options.maxPayloadBytes ?? 4 * 1024 * 1024}\n`);
  return launch(
    ["nats"],
    ({ nats }) => ({
      binary,
      args: ["-c", conf, "-a", "127.0.0.1", "-p", String(nats), "-js", "-sd", dir],
      // Logged once the client listener is bound (a taken port ends it with "address already in use").
      ready: /Server is ready/,
    }),
    "nats",
    (port) => `nats://127.0.0.1:${port}`,
    dir,
  );
}

/** Options for {@link startMosquitto}. */
export interface MosquittoOptions {
  /** Also listen for MQTT over WebSockets on another free port (`ports.websocket`). */
  websockets?: boolean;
  /**
   * More configuration lines, given the broker's own directory (where `files` are), e.g.
   * `(dir) => ["acl_file " + join(dir, "acl")]`.
   */
  config?: (dir: string) => readonly string[];
  /**
   * Files to write into the broker's directory first, by name (an ACL, a plugin's state). The
   * directory and these are writable by every user: started as root, Mosquitto drops to its own.
   */
  files?: Readonly<Record<string, string>>;
}

/**
 * Starts `mosquitto` on a free port (and a WebSocket listener when asked), anonymous access.
 *
 * Ready means Mosquitto logged "mosquitto version ... running", after binding every listener: the
 * ports are its own. A start that fails because a port was taken is tried again on new ports, up
 * to 5 starts in all. The configuration ends with lines that keep that log on stderr.
 *
 * @param options - whether to listen for MQTT over WebSockets too, more configuration and files
 * @throws RangeError when a name in `files` is not a plain file name (`acl`, not `../acl`)
 * @throws Error when `mosquitto` is not installed, exits at start, does not log that it is ready
 *   within 10 s, or finds a port taken at each of 5 starts
 */
export async function startMosquitto(options: MosquittoOptions = {}): Promise<LaunchedBroker> {
  for (const name of Object.keys(options.files ?? {})) {
    // Written into the broker's directory, which stop() removes: a path would write elsewhere.
    if (name === "" || name === "." || name === ".." || /[/\\\0]/.test(name)) {
      throw new RangeError(
        `files: ${JSON.stringify(name)} is not a plain file name; name files without a directory, and read them from the directory config is given`,
      );
    }
  }
  const binary = findBinary("mosquitto");
  const dir = mkdtempSync(join(tmpdir(), "posthorn-mosquitto-"));
  if (options.files !== undefined) {
    chmodSync(dir, 0o777);
    for (const [name, text] of Object.entries(options.files)) {
      writeFileSync(join(dir, name), text);
      chmodSync(join(dir, name), 0o666);
    }
  }
  const conf = join(dir, "mosquitto.conf");
  const extra = options.config?.(dir) ?? [];
  const configure = (ports: Readonly<Record<string, number>>): BrokerCommand => {
    const lines = [
      "per_listener_settings false",
      "allow_anonymous true",
      // Global (every listener's client sockets). Mosquitto 2.0 leaves Nagle's algorithm on, so a
      // PUBACK written right after another small packet waits for the peer's delayed ACK (~40 ms),
      // which stalls small QoS 1 batches.
      "set_tcp_nodelay true",
      `listener ${ports.mqtt} 127.0.0.1`,
    ];
    if (options.websockets)
      lines.push(`listener ${ports.websocket} 127.0.0.1`, "protocol websockets");
    lines.push("persistence false", "max_queued_messages 100000", "max_inflight_messages 0");
    lines.push(...extra);
    // Last, so a `config` that changes logging cannot hide the lines the launcher reads: the one
    // that says Mosquitto is ready, and the error of a taken port.
    lines.push(...MOSQUITTO_LOG);
    writeFileSync(conf, `${lines.join("\n")}\n`);
    return { binary, args: ["-c", conf], ready: MOSQUITTO_READY };
  };
  return launch(
    options.websockets ? ["mqtt", "websocket"] : ["mqtt"],
    configure,
    "mqtt",
    (port) => `mqtt://127.0.0.1:${port}`,
    dir,
  );
}
