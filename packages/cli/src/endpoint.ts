import { type ContentMode, PosthornError, type Publisher } from "@posthorn/core";
import type {
  EndpointDriver,
  EndpointOptions,
  EndpointSubscriber,
  ModeSupport,
  ResolvedEndpoint,
  TransportTraits,
} from "./driver.js";
import {
  checkParams,
  type FormatName,
  type ParsedEndpointUrl,
  parseEndpointUrl,
  withPort,
} from "./endpoint-url.js";
import { loadAllFormats, loadFormat } from "./formats.js";
import { describeError, registerSecret } from "./redact.js";

/** A transport this build knows: how to load its driver, or why it cannot. */
interface TransportEntry {
  readonly transport: string;
  readonly schemes: readonly string[];
  /** Loads the driver, or says which package is missing. */
  readonly load: (() => Promise<EndpointDriver>) | string;
}

// Drivers are loaded on first use, so sending to Kafka never loads rhea or mqtt.js.
const TRANSPORTS: readonly TransportEntry[] = [
  {
    transport: "http",
    schemes: ["http", "https"],
    load: async () => (await import("./drivers/http.js")).driver,
  },
  {
    transport: "ws",
    schemes: ["ws", "wss"],
    load: async () => (await import("./drivers/ws.js")).driver,
  },
  {
    transport: "amqp",
    schemes: ["amqp", "amqps"],
    load: async () => (await import("./drivers/amqp.js")).driver,
  },
  {
    transport: "mqtt",
    schemes: ["mqtt", "mqtts", "mqtt+ws", "mqtt+wss"],
    load: async () => (await import("./drivers/mqtt.js")).driver,
  },
  {
    transport: "kafka",
    schemes: ["kafka", "kafka+ssl"],
    load: async () => (await import("./drivers/kafka.js")).driver,
  },
  {
    transport: "nats",
    schemes: ["nats", "nats+tls"],
    load: async () => (await import("./drivers/nats.js")).driver,
  },
];

/** Every transport and scheme this build knows, and whether its binding is available. */
export function listTransports(): Array<{
  transport: string;
  schemes: readonly string[];
  available: boolean;
  reason?: string;
}> {
  return TRANSPORTS.map((t) =>
    typeof t.load === "string"
      ? { transport: t.transport, schemes: t.schemes, available: false, reason: t.load }
      : { transport: t.transport, schemes: t.schemes, available: true },
  );
}

/**
 * Loads the driver of a transport by its name (`kafka`) or one of its schemes (`mqtts`).
 *
 * @param schemeOrTransport - a transport name or URL scheme, in any case
 * @throws {@link PosthornError} `NotSupported` for an unknown scheme or a binding not in this build
 */
export async function loadDriver(schemeOrTransport: string): Promise<EndpointDriver> {
  const key = schemeOrTransport.toLowerCase();
  const entry = TRANSPORTS.find((t) => t.transport === key || t.schemes.includes(key));
  if (!entry) {
    const known = TRANSPORTS.flatMap((t) => t.schemes).join(", ");
    throw new PosthornError("NotSupported", `unknown scheme "${key}://" (known: ${known})`);
  }
  if (typeof entry.load === "string") {
    throw new PosthornError("NotSupported", `${key}:// is not available: ${entry.load}`);
  }
  return entry.load();
}

/**
 * An endpoint URL checked against its transport: what it will do, and how to open a publisher or a
 * subscriber on it.
 */
export interface Endpoint {
  /** The URL with its password hidden. */
  readonly display: string;
  /** The transport name: `http`, `ws`, `amqp`, `mqtt`, `kafka`, `nats`. */
  readonly transport: string;
  /** The content mode publishers use. */
  readonly mode: ContentMode;
  /** The format of structured and batch mode. */
  readonly formatName: string;
  /** Everything the endpoint supports, per mode. */
  readonly support: ModeSupport;
  /** How events look after a trip over it. */
  readonly traits: TransportTraits;
  /** Connects and returns a publisher; closing it closes the connection. */
  createPublisher(): Promise<Publisher>;
  /**
   * Connects (or listens) and returns a subscriber that is receiving when it resolves. On
   * `http://` and `ws://` it listens on the URL's host, port and path; port 0 asks the system for
   * a free port, which the subscriber's `listeningPort` gives.
   */
  createSubscriber(): Promise<EndpointSubscriber>;
}

const DEFAULT_TIMEOUT_MS = 10_000;

function notSupported(display: string, why: string): PosthornError {
  return new PosthornError("NotSupported", `${display}: ${why}`);
}

/** Picks the mode and format from the URL and checks that the binding can do them. */
function chooseModeAndFormat(
  url: ParsedEndpointUrl,
  support: ModeSupport,
): { mode: ContentMode; format: FormatName } {
  const mode = url.mode ?? support.defaultMode;
  const allowed = support[mode];
  if (typeof allowed === "string")
    throw notSupported(url.display, `mode=${mode} is not possible: ${allowed}`);
  if (mode === "binary") {
    if (url.format !== undefined && url.format !== "json") {
      throw notSupported(
        url.display,
        `format=${url.format} applies to structured and batch mode; binary mode carries the data as the message body and the attributes as ${"headers or properties"}, so add mode=structured`,
      );
    }
    return { mode, format: url.format ?? "json" };
  }
  const formats = allowed === true ? [] : allowed;
  const format = url.format ?? (formats.includes("json") ? "json" : formats[0]);
  if (format === undefined || !formats.includes(format)) {
    throw notSupported(
      url.display,
      `format=${url.format ?? "json"} is not possible in ${mode} mode on this transport (possible: ${formats.join(", ") || "none"})`,
    );
  }
  return { mode, format };
}

/**
 * Turns an endpoint URL into an {@link Endpoint}: parses it, finds the transport by its scheme,
 * checks its query parameters and `mode`/`format` against what the binding can do. Nothing
 * connects until `createPublisher()` or `createSubscriber()`.
 *
 * | Scheme | Example |
 * | --- | --- |
 * | `http`, `https` | `http://127.0.0.1:8080/events` |
 * | `ws`, `wss` | `ws://127.0.0.1:8081/events?subprotocol=cloudevents.proto` |
 * | `amqp`, `amqps` | `amqp://guest:guest@127.0.0.1:5672/orders` |
 * | `mqtt`, `mqtts`, `mqtt+ws`, `mqtt+wss` | `mqtt://127.0.0.1:1883/some/topic?version=5&qos=1` |
 * | `kafka`, `kafka+ssl` | `kafka://127.0.0.1:9092/orders?group=g` |
 * | `nats`, `nats+tls` | `nats://127.0.0.1:4222/orders`, JetStream with `?stream=S&durable=D` |
 *
 * @param url - the endpoint URL; `mode` and `format` query parameters choose the content mode
 * @param options - credentials and TLS when they are not in the URL, timeouts
 * @throws {@link PosthornError} `MalformedInput` for an unreadable URL, `NotSupported` for what
 *   the transport cannot do (the message says why)
 * @example
 * ```ts
 * const endpoint = await openEndpoint("kafka://127.0.0.1:9092/orders?mode=structured&format=avro");
 * const publisher = await endpoint.createPublisher();
 * await publisher.publish(event);
 * await publisher.close();
 * ```
 */
export async function openEndpoint(url: string, options: EndpointOptions = {}): Promise<Endpoint> {
  registerSecret(options.password);
  const parsed = parseEndpointUrl(url);
  const driver = await loadDriver(parsed.scheme);
  checkParams(parsed, driver.params);
  driver.check?.(parsed);
  const support = driver.support(parsed);
  const { mode, format: formatName } = chooseModeAndFormat(parsed, support);
  const resolve = async (): Promise<ResolvedEndpoint> => ({
    url: parsed,
    mode,
    format: await loadFormat(formatName),
    formats: await loadAllFormats(),
    options,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    username: parsed.username ?? options.username,
    password: parsed.password ?? options.password,
  });
  // Load the format now, so an unavailable format fails before anything connects.
  await loadFormat(formatName);
  return {
    display: parsed.display,
    transport: driver.transport,
    mode,
    formatName,
    support,
    traits: driver.traits(parsed, mode),
    createPublisher: async () =>
      driver.createPublisher(await resolve()).catch((err) => {
        throw connectError(parsed.display, "publish to", err);
      }),
    createSubscriber: async () =>
      driver.createSubscriber(await resolve()).catch((err) => {
        throw connectError(parsed.display, "receive from", err);
      }),
  };
}

/**
 * The URL a subscriber listens on, to print: `url` with the port it listens on (the system's
 * pick for port 0), secrets hidden; `display` for a subscriber that does not listen.
 *
 * @param url - the endpoint URL it was opened with
 * @param display - that URL as printed ({@link Endpoint.display})
 * @param subscriber - what `createSubscriber` returned
 */
export function listeningDisplay(
  url: string,
  display: string,
  subscriber: EndpointSubscriber,
): string {
  const port = subscriber.listeningPort;
  return port === undefined ? display : parseEndpointUrl(withPort(url, port)).display;
}

/** Names the endpoint and the cause when opening it fails; secrets are hidden. */
function connectError(display: string, what: string, err: unknown): PosthornError {
  const code = (err as { code?: unknown })?.code;
  const posthornCode =
    (err as { name?: unknown })?.name === "PosthornError" && typeof code === "string"
      ? (code as PosthornError["code"])
      : "ConnectionFailed";
  // A driver's own errors already start with the URL: do not print it twice.
  const cause = describeError(err);
  const why = cause.startsWith(`${display}: `) ? cause.slice(display.length + 2) : cause;
  return new PosthornError(posthornCode, `cannot ${what} ${display}: ${why}`, {
    cause: err,
  });
}

/**
 * Connects to an endpoint URL and returns a publisher.
 *
 * @param url - see {@link openEndpoint} for the URL forms
 * @param options - credentials, TLS and timeouts when they are not in the URL
 * @example
 * ```ts
 * const publisher = await createPublisher("mqtt://127.0.0.1:1883/orders?version=5");
 * ```
 */
export async function createPublisher(
  url: string,
  options: EndpointOptions = {},
): Promise<Publisher> {
  return (await openEndpoint(url, options)).createPublisher();
}

/**
 * Connects to (or, for `http` and `ws`, listens on) an endpoint URL and returns a subscriber that
 * is already receiving. Listening on port 0 (`http://127.0.0.1:0/events`) takes a port the system
 * picks, so no other process can take it first; `listeningPort` says which.
 *
 * @param url - see {@link openEndpoint} for the URL forms
 * @param options - credentials, TLS and timeouts when they are not in the URL
 * @example
 * ```ts
 * const subscriber = await createSubscriber("nats://127.0.0.1:4222/orders?stream=ORDERS&durable=d");
 * for await (const delivery of subscriber) await delivery.accept();
 * ```
 */
export async function createSubscriber(
  url: string,
  options: EndpointOptions = {},
): Promise<EndpointSubscriber> {
  return (await openEndpoint(url, options)).createSubscriber();
}
