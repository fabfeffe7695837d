import { amqpPublisher, amqpSubscriber, guardedConnect } from "@posthorn/binding-amqp";
import { isPosthornError, PosthornError } from "@posthorn/core";
import rhea, { type Connection, type ConnectionOptions } from "rhea";
import type { EndpointDriver, ResolvedEndpoint } from "../driver.js";
import { integerParam, type ParsedEndpointUrl } from "../endpoint-url.js";
import { firstHost, formatsHere, ownedPublisher, ownedSubscriber, withTimeout } from "./common.js";

// RabbitMQ's AMQP 1.0 address forms (/queue/q, /exchange/x/key, /topic/t, /amq/queue/q) start
// with a slash that the URL path separator swallows; put it back for them.
const RABBITMQ_PREFIXES = ["queue/", "exchange/", "topic/", "amq/"];

/** The AMQP address a URL names: its path, with RabbitMQ's leading slash restored. */
export function amqpAddress(url: ParsedEndpointUrl): string {
  if (url.path === "") {
    throw new PosthornError(
      "MalformedInput",
      `${url.display}: the path must name a queue or address`,
    );
  }
  return RABBITMQ_PREFIXES.some((p) => url.path.startsWith(p)) ? `/${url.path}` : url.path;
}

async function connect(endpoint: ResolvedEndpoint): Promise<Connection> {
  const url = endpoint.url;
  const secure = url.scheme === "amqps";
  const { host, port } = firstHost(url.hosts, secure ? 5671 : 5672);
  const container = rhea.create_container();
  // rhea reads `connect` (how to open the socket) though its typings leave it out.
  const options: ConnectionOptions & { connect: ReturnType<typeof guardedConnect> } = {
    host,
    port,
    reconnect: false,
    idle_time_out: 60_000,
    // rhea's decoder believes what the bytes declare; the guard checks every frame first.
    connect: guardedConnect(),
    container_id: `posthorn-${Math.random().toString(16).slice(2, 10)}`,
  };
  if (endpoint.username !== undefined) options.username = endpoint.username;
  if (endpoint.password !== undefined) options.password = endpoint.password;
  if (secure) {
    const tls = endpoint.options.tls ?? {};
    Object.assign(options, {
      transport: "tls",
      servername: host,
      ...(tls.ca === undefined ? {} : { ca: Buffer.from(tls.ca) }),
      ...(tls.cert === undefined ? {} : { cert: Buffer.from(tls.cert) }),
      ...(tls.key === undefined ? {} : { key: Buffer.from(tls.key) }),
      ...(tls.rejectUnauthorized === undefined
        ? {}
        : { rejectUnauthorized: tls.rejectUnauthorized }),
    });
  }
  const connection = container.connect(options);
  const opened = new Promise<Connection>((resolve, reject) => {
    connection.once("connection_open", () => resolve(connection));
    // rhea puts the reason (a SASL failure, a refused open) on the event, not the connection.
    connection.once("connection_error", (ctx) => {
      const cause = ctx.error ?? ctx.connection.error;
      reject(new PosthornError("ConnectionFailed", describe(cause) ?? "refused", { cause }));
    });
    connection.once("disconnected", (ctx) =>
      reject(
        new PosthornError("ConnectionFailed", describe(ctx.error) ?? "disconnected", {
          cause: ctx.error,
        }),
      ),
    );
  });
  try {
    return await withTimeout(opened, endpoint.timeoutMs, "AMQP connection");
  } catch (err) {
    connection.close();
    // RabbitMQ waits before it refuses a wrong user name or password: a timeout shorter than
    // that wait read as a broker that does not answer, though it was the credentials.
    if (isPosthornError(err) && err.code === "Timeout" && saslOutcomePending(connection)) {
      throw new PosthornError(
        "Timeout",
        `${err.message}: the broker had not yet answered the authentication of user ${JSON.stringify(endpoint.username ?? "")}; a wrong user name or password may be the cause (RabbitMQ waits before refusing one): check user:password@ in the URL, or allow a longer timeout to see the broker's answer`,
        { cause: err },
      );
    }
    throw err;
  }
}

/**
 * Whether the connection sent its SASL credentials and waits for the outcome (rhea's SASL client
 * state, which its typings leave out).
 */
function saslOutcomePending(connection: Connection): boolean {
  const sasl = (
    connection as unknown as {
      sasl_transport?: {
        mechanism?: unknown;
        failed?: boolean;
        transport?: { read_complete?: boolean };
      };
    }
  ).sasl_transport;
  return (
    sasl !== undefined &&
    sasl.mechanism !== undefined &&
    sasl.failed !== true &&
    sasl.transport?.read_complete !== true
  );
}

function describe(err: unknown): string | undefined {
  if (err === undefined || err === null) return undefined;
  if (err instanceof AggregateError)
    return err.errors.map((e) => String(e?.message ?? e)).join("; ");
  const e = err as { message?: string; code?: string; condition?: string; description?: string };
  const text = e.description ?? e.message ?? e.code ?? e.condition ?? String(err);
  // rhea's SASL failure reads "Failed to authenticate: 1" (the SASL outcome code): say what to do.
  if (e.condition === "amqp:unauthorized-access") {
    return `authentication failed: the broker refused the user name or password; check user:password@ in the URL (${text})`;
  }
  return text;
}

function closeConnection(connection: Connection): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!connection.is_open()) {
      connection.close();
      resolve();
      return;
    }
    const timer = setTimeout(() => {
      connection.close();
      resolve();
    }, 2000);
    connection.once("connection_close", () => {
      clearTimeout(timer);
      resolve();
    });
    connection.once("disconnected", () => {
      clearTimeout(timer);
      resolve();
    });
    connection.close();
  });
}

/** Waits for a link to attach; when it fails or times out, closes the connection and throws. */
async function linkReady(
  ready: Promise<void>,
  connection: Connection,
  endpoint: ResolvedEndpoint,
  what: string,
): Promise<void> {
  try {
    await withTimeout(ready, endpoint.timeoutMs, what);
  } catch (err) {
    await closeConnection(connection);
    throw err;
  }
}

/** `amqp://`, `amqps://`: AMQP 1.0 over rhea (RabbitMQ, ActiveMQ Artemis, Qpid, Service Bus). */
export const driver: EndpointDriver = {
  transport: "amqp",
  schemes: ["amqp", "amqps"],
  params: ["credit", "prefix"],
  check(url) {
    amqpAddress(url);
    // Credit 0 grants the broker nothing to send: the subscriber would wait for ever.
    integerParam(url, "credit", 1);
    const prefix = url.params.get("prefix");
    if (prefix !== null && prefix !== "cloudEvents:" && prefix !== "cloudEvents_") {
      throw new PosthornError(
        "MalformedInput",
        `${url.display}: prefix must be cloudEvents: or cloudEvents_`,
      );
    }
  },
  support: () => ({
    binary: true,
    structured: formatsHere(),
    batch: "the AMQP binding defines no batch mode",
    defaultMode: "binary",
  }),
  // AMQP application properties keep types and case (amqp-protocol-binding.md 3.1.3).
  traits: () => ({ typed: true, caseSensitive: true }),
  async createPublisher(endpoint) {
    const connection = await connect(endpoint);
    const prefix = endpoint.url.params.get("prefix");
    const publisher = amqpPublisher(connection, {
      address: amqpAddress(endpoint.url),
      mode: endpoint.mode === "structured" ? "structured" : "binary",
      format: endpoint.format,
      timeoutMs: endpoint.timeoutMs,
      ...(prefix === "cloudEvents_" ? { prefix } : {}),
    });
    await linkReady(publisher.ready, connection, endpoint, "AMQP sender link");
    return ownedPublisher(publisher, () => closeConnection(connection));
  },
  async createSubscriber(endpoint) {
    const connection = await connect(endpoint);
    const credit = integerParam(endpoint.url, "credit", 1);
    const subscriber = amqpSubscriber(connection, {
      address: amqpAddress(endpoint.url),
      formats: endpoint.formats,
      ...(credit === undefined ? {} : { credit }),
    });
    await linkReady(subscriber.ready, connection, endpoint, "AMQP receiver link");
    return ownedSubscriber(subscriber, () => closeConnection(connection));
  },
};
