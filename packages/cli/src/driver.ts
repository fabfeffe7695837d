import type { ContentMode, EventFormat, Publisher, Subscriber } from "@posthorn/core";
import type { FormatName, ParsedEndpointUrl } from "./endpoint-url.js";

/** TLS material for `https`, `wss`, `amqps`, `mqtts`, and Kafka or NATS with `?tls=true`. */
export interface EndpointTlsOptions {
  /** PEM certificate authority bundle. */
  ca?: string | Uint8Array;
  /** PEM client certificate. */
  cert?: string | Uint8Array;
  /** PEM client key. */
  key?: string | Uint8Array;
  /** Verify the server certificate (default `true`). */
  rejectUnauthorized?: boolean;
}

/** Options for {@link openEndpoint}, `createPublisher` and `createSubscriber`. */
export interface EndpointOptions {
  /** User name, when it is not in the URL. */
  username?: string;
  /** Password, when it is not in the URL. Never printed. */
  password?: string;
  /** TLS material; TLS itself is chosen by the scheme or `?tls=true`. */
  tls?: EndpointTlsOptions;
  /** Client id for transports that have one (MQTT, Kafka). */
  clientId?: string;
  /** How long to wait for a connection or an acknowledgement. Default 10 000 ms. */
  timeoutMs?: number;
}

/**
 * What `createSubscriber` returns: a subscriber, and for `http://` and `ws://` (where it listens)
 * the port it listens on.
 */
export interface EndpointSubscriber extends Subscriber {
  /**
   * The port it listens on, for `http://` and `ws://`: the one the system picked when the URL gave
   * port 0. `undefined` for transports that connect to a broker.
   */
  readonly listeningPort?: number;
}

/** Whether a mode is possible on an endpoint and, for structured and batch, with which formats. */
export interface ModeSupport {
  /** `true`, or why binary mode is not possible. */
  readonly binary: true | string;
  /** Formats for structured mode, or why structured mode is not possible. */
  readonly structured: readonly FormatName[] | string;
  /** Formats for batch mode, or why batch mode is not possible. */
  readonly batch: readonly FormatName[] | string;
  /** The mode used when the URL names none. */
  readonly defaultMode: ContentMode;
}

/** What a driver knows about how events look after a trip over its transport. */
export interface TransportTraits {
  /** Whether attribute values keep their types (AMQP does; HTTP headers do not). */
  readonly typed: boolean;
  /** Whether attribute names keep their case. */
  readonly caseSensitive: boolean;
}

/** Everything a driver needs to open one endpoint, after the generic checks. */
export interface ResolvedEndpoint {
  /** The endpoint URL taken apart. */
  readonly url: ParsedEndpointUrl;
  /** The content mode publishers use. */
  readonly mode: ContentMode;
  /** The format for structured and batch mode (JSON unless `?format=` says otherwise). */
  readonly format: EventFormat;
  /** Every format a subscriber recognises. */
  readonly formats: readonly EventFormat[];
  /** The options the endpoint was opened with. */
  readonly options: EndpointOptions;
  /** `options.timeoutMs` or the default. */
  readonly timeoutMs: number;
  /** User name from the URL or options. */
  readonly username: string | undefined;
  /** Password from the URL or options. */
  readonly password: string | undefined;
}

/**
 * One transport behind one or more URL schemes. A driver creates the client itself from the URL
 * and hands back Posthorn publishers and subscribers that close the client with them.
 */
export interface EndpointDriver {
  /** The transport, as shown to people: `kafka`, `amqp`, ... */
  readonly transport: string;
  /** The schemes it serves. */
  readonly schemes: readonly string[];
  /** Query parameters it reads, besides `mode` and `format`. */
  readonly params: readonly string[];
  /** What it carries, for a given URL (e.g. MQTT 3.1.1 only structured JSON). */
  support(url: ParsedEndpointUrl): ModeSupport;
  /** How events look after a trip over this transport in a content mode. */
  traits(url: ParsedEndpointUrl, mode: ContentMode): TransportTraits;
  /** Checks driver-specific parts of the URL (path, parameters); throws on what it cannot do. */
  check?(url: ParsedEndpointUrl): void;
  /** Connects and returns a publisher; closing it closes the connection. */
  createPublisher(endpoint: ResolvedEndpoint): Promise<Publisher>;
  /**
   * Connects (or listens) and returns a subscriber that is already receiving when the promise
   * resolves; closing it closes the connection. A subscriber that listens says on which port.
   */
  createSubscriber(endpoint: ResolvedEndpoint): Promise<EndpointSubscriber>;
}
