import { hostPort, portOpen, startNatsServer } from "@posthorn/testkit/brokers";
import { startKafkaBroker } from "@posthorn/testkit/kafka";
import { startAedes, startAmqpPeer } from "./embedded.js";
import { listTransports } from "./endpoint.js";
import { hidePassword } from "./endpoint-url.js";
import type { MatrixPath, MatrixRow } from "./matrix.js";
import { describeError } from "./redact.js";

/** A transport that has no row, and why (binding missing, broker unreachable). */
export interface UnavailableRow {
  readonly label: string;
  readonly reason: string;
  /**
   * Whether the run was asked for this transport: its address is configured (an environment
   * variable) or `only` names it. Left out, it fails a demo; otherwise (no embedded server can
   * stand in, the binding is not installed) it is reported and the run goes on.
   */
  readonly requested: boolean;
}

/** The rows a run can use, what could not be used, and how to stop what was started. */
export interface Backends {
  readonly rows: MatrixRow[];
  readonly unavailable: UnavailableRow[];
  /** Lines describing what backs each transport, for people. */
  readonly notes: string[];
  stop(): Promise<void>;
}

/** Options for {@link findBackends}. */
export interface BackendOptions {
  /** Environment to read AMQP_URL, MQTT_URL, NATS_URL and KAFKA_BROKERS from. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /**
   * `embedded`: without an environment variable, start an in-process server (the demo).
   * `local`: without one, use the local default address, as the tests do (conformance).
   */
  readonly fallback: "embedded" | "local";
  /** Only these transports (`http`, `amqp`, ...), when given. */
  readonly only?: readonly string[] | undefined;
}

let counter = 0;
function uniqueName(prefix: string, unique: string): string {
  counter++;
  const tag = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}${counter}`;
  return `${prefix}-${unique}-${tag}`.replace(/[^A-Za-z0-9-]/g, "-");
}

/** Joins a base URL (maybe with a path or query) and a destination path. */
function under(base: string, path: string, query = ""): string {
  const q = base.indexOf("?");
  const head = (q < 0 ? base : base.slice(0, q)).replace(/\/+$/, "");
  const authorityEnd = head.indexOf("/", head.indexOf("://") + 3);
  const root = authorityEnd < 0 ? head : head.slice(0, authorityEnd);
  const params = new URLSearchParams(q < 0 ? "" : base.slice(q + 1));
  for (const [k, v] of new URLSearchParams(query)) params.set(k, v);
  const qs = params.toString();
  return `${root}/${path}${qs ? `?${qs}` : ""}`;
}

// WebSocket proxies and the large vectors: nothing to skip here yet; the hook stays so a row can
// say why a vector cannot travel it.
const noSkips = (): undefined => undefined;

/** MQTT 3.1.1 and NATS limit message sizes; say so instead of failing. */
function sizeSkip(limitBytes: number, what: string) {
  return (vector: { tags: readonly string[] }, _path: MatrixPath) =>
    vector.tags.includes("large") && limitBytes < 2 * 1024 * 1024 ? what : undefined;
}

/**
 * Finds a backend for every transport of this build: the broker an environment variable names,
 * else an embedded server (demo) or the local default (conformance). The HTTP and WebSocket rows
 * listen in-process.
 */
export async function findBackends(options: BackendOptions): Promise<Backends> {
  const { env } = options;
  const rows: MatrixRow[] = [];
  const unavailable: UnavailableRow[] = [];
  const notes: string[] = [];
  const stops: Array<() => Promise<void>> = [];
  const wanted = (t: string) => !options.only || options.only.includes(t);
  const named = (t: string) => options.only?.includes(t) === true;
  const available = new Map(listTransports().map((t) => [t.transport, t]));
  const bindingMissing = (transport: string): boolean => {
    const t = available.get(transport);
    if (t?.available) return false;
    unavailable.push({
      label: transport,
      reason: t?.reason ?? "unknown transport",
      requested: named(transport),
    });
    return true;
  };
  /** Whether a broker answers at `base`; when not, it is left out, pointing to `variable`. */
  const answers = async (label: string, base: string, port: number, variable: string) => {
    if (await reachable(base, port)) return true;
    // "(set AMQP_URL)" told a user who had set it to set it.
    unavailable.push({
      label,
      reason: env[variable]
        ? `nothing answers at ${hidePassword(base)} (${variable}): is the broker running there?`
        : `nothing answers at ${hidePassword(base)} (set ${variable} to use a broker elsewhere)`,
      requested: Boolean(env[variable]) || named(label),
    });
    return false;
  };

  try {
    if (wanted("http") && !bindingMissing("http")) {
      rows.push({
        label: "http",
        transport: "http",
        backend: "in-process node:http server",
        // Port 0: each cell's receiver listens on a port the system picks, and its publisher
        // sends there (openCell); a port chosen first could be taken before the receiver bound it.
        url: (u) => `http://127.0.0.1:0/${uniqueName("events", u)}`,
        skip: noSkips,
      });
      notes.push("http: an in-process node:http server on a port the system picks");
    }
    if (wanted("ws") && !bindingMissing("ws")) {
      rows.push({
        label: "ws",
        transport: "ws",
        backend: "in-process ws server",
        url: (u) => `ws://127.0.0.1:0/${uniqueName("events", u)}`,
        skip: noSkips,
      });
      notes.push("ws: an in-process WebSocket server on a port the system picks");
    }

    if (wanted("amqp") && !bindingMissing("amqp")) {
      const fromEnv = env.AMQP_URL;
      if (fromEnv || options.fallback === "local") {
        const base = fromEnv || "amqp://guest:guest@127.0.0.1:5672";
        if (await answers("amqp", base, 5672, "AMQP_URL")) {
          rows.push({
            label: "amqp",
            transport: "amqp",
            backend: `AMQP 1.0 broker at ${hidePassword(base)}`,
            url: (u) => under(base, `queue/${uniqueName("posthorn", u)}`),
            skip: noSkips,
          });
          notes.push(`amqp: the broker at ${hidePassword(base)}${fromEnv ? " (AMQP_URL)" : ""}`);
        }
      } else {
        const peer = await startAmqpPeer();
        stops.push(peer.stop);
        rows.push({
          label: "amqp",
          transport: "amqp",
          backend: "rhea peer to peer (in-process)",
          url: (u) => `${peer.url}/${uniqueName("posthorn", u)}`,
          skip: noSkips,
        });
        notes.push(`amqp: rhea peer to peer, a container listening on ${peer.url}`);
      }
    }

    if (wanted("mqtt") && !bindingMissing("mqtt")) {
      const fromEnv = env.MQTT_URL;
      if (fromEnv || options.fallback === "local") {
        const base = fromEnv || "mqtt://127.0.0.1:1883";
        if (await answers("mqtt", base, 1883, "MQTT_URL")) {
          for (const version of ["5", "3.1.1"]) {
            rows.push({
              label: `mqtt ${version}`,
              transport: "mqtt",
              backend: `MQTT broker at ${hidePassword(base)}`,
              url: (u) => under(base, `posthorn/${uniqueName("t", u)}`, `version=${version}&qos=1`),
              skip: noSkips,
            });
          }
          notes.push(
            `mqtt: the broker at ${hidePassword(base)}${fromEnv ? " (MQTT_URL)" : ""}, MQTT 5 and 3.1.1`,
          );
        }
      } else {
        const aedes = await startAedes();
        stops.push(aedes.stop);
        rows.push({
          label: "mqtt 3.1.1",
          transport: "mqtt",
          backend: "aedes (in-process)",
          url: (u) => `${aedes.url}/posthorn/${uniqueName("t", u)}?version=3.1.1&qos=1`,
          skip: noSkips,
        });
        notes.push(
          `mqtt: the aedes broker in-process at ${aedes.url} (MQTT 3.1.1 only: structured JSON; set MQTT_URL for MQTT 5)`,
        );
      }
    }

    if (wanted("kafka") && !bindingMissing("kafka")) {
      const fromEnv = env.KAFKA_BROKERS;
      if (fromEnv) {
        const base = `kafka://${fromEnv.replace(/^kafka:\/\//, "")}`;
        if (await reachable(base, 9092)) {
          rows.push(kafkaRow(base, `Kafka at ${fromEnv}`));
          notes.push(`kafka: the cluster at ${fromEnv} (KAFKA_BROKERS)`);
        } else {
          unavailable.push({
            label: "kafka",
            reason: `nothing answers at ${fromEnv} (KAFKA_BROKERS)`,
            requested: true,
          });
        }
      } else {
        const broker = await startKafkaBroker({ log: () => undefined });
        stops.push(() => broker.stop());
        rows.push(
          kafkaRow(
            `kafka://${broker.brokers.join(",")}`,
            "the testkit Kafka-protocol broker (in-process)",
          ),
        );
        notes.push(
          `kafka: the testkit Kafka-protocol broker in-process at ${broker.brokers.join(",")}`,
        );
      }
    }

    if (wanted("nats") && !bindingMissing("nats")) {
      const fromEnv = env.NATS_URL;
      let base: string | undefined;
      let backend = "";
      if (fromEnv || options.fallback === "local") {
        base = fromEnv || "nats://127.0.0.1:4222";
        backend = `nats-server at ${hidePassword(base)}`;
        if (!(await answers("nats", base, 4222, "NATS_URL"))) base = undefined;
        else notes.push(`nats: ${backend}${fromEnv ? " (NATS_URL)" : ""}`);
      } else {
        try {
          const server = await startNatsServer();
          stops.push(() => server.stop());
          base = server.url;
          backend = "nats-server (started for this run)";
          notes.push(`nats: nats-server started on ${server.url}`);
        } catch (err) {
          unavailable.push({
            label: "nats",
            reason: `nats-server is not installed, so NATS is left out (${describeError(err)}); set NATS_URL to use a running one`,
            requested: named("nats"),
          });
        }
      }
      if (base !== undefined) {
        const b = base;
        rows.push({
          label: "nats",
          transport: "nats",
          backend,
          url: (u) => under(b, uniqueName("posthorn", u).replace(/-/g, ".")),
          skip: sizeSkip(1024 * 1024, "larger than nats-server's default max_payload"),
        });
        rows.push({
          label: "nats jetstream",
          transport: "nats",
          backend,
          url: (u) => {
            const name = uniqueName("PH", u).replace(/-/g, "_");
            return under(b, name.replace(/_/g, "."), `stream=${name}&durable=${name}&dedupe=false`);
          },
          skip: sizeSkip(1024 * 1024, "larger than nats-server's default max_payload"),
        });
      }
    }
  } catch (err) {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    throw err;
  }

  return {
    rows,
    unavailable,
    notes,
    async stop() {
      for (const stop of stops.reverse()) await stop().catch(() => undefined);
    },
  };
}

function kafkaRow(base: string, backend: string): MatrixRow {
  return {
    label: "kafka",
    transport: "kafka",
    backend,
    url: (u) => {
      const topic = uniqueName("posthorn", u);
      return under(base, topic, `group=${topic}&from=earliest`);
    },
    skip: noSkips,
  };
}

async function reachable(url: string, defaultPort: number): Promise<boolean> {
  try {
    const { host, port } = hostPort(url.replace(/^[a-z+]+:\/\/[^@/]*@/i, "tcp://"), defaultPort);
    return await portOpen(host, port, 1500);
  } catch {
    return false;
  }
}
