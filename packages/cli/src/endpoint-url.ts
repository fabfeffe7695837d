import { type ContentMode, PosthornError } from "@posthorn/core";
import { REDACTED, registerSecret } from "./redact.js";

/** One `host:port` of an endpoint URL (Kafka URLs may list several). */
export interface HostPort {
  /** The host name or address (an IPv6 address without its brackets). */
  readonly host: string;
  /** The port, or `undefined` when the URL gives none (the transport's default applies). */
  readonly port: number | undefined;
}

/** The name of an event format a URL can ask for with `?format=`. */
export type FormatName = "json" | "avro" | "protobuf";

/** The format names `?format=` accepts. */
export const FORMAT_NAMES: readonly FormatName[] = ["json", "avro", "protobuf"];

/** The content modes `?mode=` accepts. */
export const MODE_NAMES: readonly ContentMode[] = ["binary", "structured", "batch"];

/**
 * An endpoint URL taken apart. The password is kept (drivers need it to connect) but never appears
 * in {@link ParsedEndpointUrl.display}, and it is registered with the redactor as soon as it is
 * parsed.
 */
export interface ParsedEndpointUrl {
  /** The scheme as written, lower case: `kafka`, `mqtts`, `mqtt+ws`, ... */
  readonly scheme: string;
  /** The user name, percent-decoded, when the URL gives one. */
  readonly username: string | undefined;
  /** The password, percent-decoded, when the URL gives one; registered with the redactor. */
  readonly password: string | undefined;
  /** Every host of the authority, in order. */
  readonly hosts: readonly HostPort[];
  /** The path after the authority, percent-decoded, without the leading `/`. */
  readonly path: string;
  /** The raw path, as written (with its leading `/`). */
  readonly rawPath: string;
  /** Query parameters. */
  readonly params: URLSearchParams;
  /** `mode` from the query, when given. */
  readonly mode: ContentMode | undefined;
  /** `format` from the query, when given. */
  readonly format: FormatName | undefined;
  /**
   * The URL with its secrets replaced by `***`: the password, a `token=` query value, and a NATS
   * token (`nats://token@host`). Safe to print.
   */
  readonly display: string;
}

// scheme://[userinfo@]authority[/path][?query]; the authority may list several host:port pairs
// separated by commas (Kafka bootstrap servers), which WHATWG URL cannot parse. No endpoint has a
// fragment, and "#" is MQTT's multi-level wildcard (and a RabbitMQ topic pattern), so a "#" after
// the authority is part of the path or the query: mqtt://h/sensors/#?version=5 subscribes to
// sensors/# at MQTT 5 (read as a fragment, it subscribed to "sensors/" with no query).
const URL_SHAPE = /^([a-z][a-z0-9+.-]*):\/\/(?:([^@/?#]*)@)?([^/?#]*)((?:\/[^?]*)?)(?:\?(.*))?$/i;

function bad(message: string): PosthornError {
  return new PosthornError("MalformedInput", message);
}

function decode(part: string, what: string, display: string): string {
  try {
    return decodeURIComponent(part);
  } catch (err) {
    throw new PosthornError(
      "MalformedInput",
      `${display}: the ${what} is not valid percent-encoding`,
      {
        cause: err,
      },
    );
  }
}

// Schemes whose URL a subscriber listens on: port 0 there asks the system for a free port.
const LISTENING_SCHEMES = ["http", "https", "ws", "wss"];

function parseHost(text: string, display: string, portZero: boolean): HostPort {
  // [v6]:port, host:port, host
  const v6 = /^\[([^\]]+)\](?::(\d*))?$/.exec(text);
  const m = v6 ?? /^([^:]*)(?::(\d*))?$/.exec(text);
  if (!m) throw bad(`${display}: cannot read host "${text}"`);
  const host = m[1] ?? "";
  const portText = m[2];
  let port: number | undefined;
  if (portText !== undefined && portText !== "") {
    port = Number(portText);
    if (port === 0 && !portZero) {
      throw bad(
        `${display}: port 0 (a port the system picks) is only for receiving on http:// and ws://, where posthorn listens; give the port the broker listens on`,
      );
    }
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw bad(`${display}: port "${portText}" is not a number from 1 to 65535`);
  }
  return { host, port };
}

const NATS_SCHEMES = ["nats", "nats+tls"];

// Query parameters whose value is a secret (http's bearer token): hidden in display, redacted.
const SECRET_PARAM = /((?:^|&)token=)([^&]*)/gi;

function decodeQueryValue(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, " "));
  } catch {
    return value;
  }
}

/**
 * Parses an endpoint URL: `scheme://[user[:password]@]host[:port][,host:port...]/path?query`.
 * Checks `mode` and `format` against the names Posthorn knows; whether the binding behind the
 * scheme can honour them is the driver's check.
 *
 * @param input - the URL as a user typed it
 * @returns its parts, with a printable form that hides the password
 * @throws {@link PosthornError} `MalformedInput` when the URL cannot be read
 */
export function parseEndpointUrl(input: string): ParsedEndpointUrl {
  const m = URL_SHAPE.exec(input.trim());
  if (!m) {
    throw bad(
      `"${hidePassword(input)}" is not an endpoint URL: expected scheme://host[:port]/path, e.g. kafka://127.0.0.1:9092/orders`,
    );
  }
  const scheme = (m[1] ?? "").toLowerCase();
  const userinfo = m[2];
  let username: string | undefined;
  let password: string | undefined;
  let shownUserinfo = "";
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(":");
    const rawUser = colon < 0 ? userinfo : userinfo.slice(0, colon);
    const rawPassword = colon < 0 ? undefined : userinfo.slice(colon + 1);
    // Register before decoding can fail, so no error message can carry it.
    registerSecret(rawPassword);
    username = decode(rawUser, "user name", scheme) || undefined;
    password = rawPassword === undefined ? undefined : decode(rawPassword, "password", scheme);
    registerSecret(password);
    // nats://token@host: a NATS user without a password is a token, a secret like a password.
    const natsToken = rawPassword === undefined && NATS_SCHEMES.includes(scheme);
    if (natsToken) {
      registerSecret(rawUser);
      registerSecret(username);
    }
    shownUserinfo = natsToken
      ? `${REDACTED}@`
      : `${rawUser}${rawPassword === undefined ? "" : `:${REDACTED}`}@`;
  }
  const authority = m[3] ?? "";
  const rawPath = m[4] ?? "";
  const query = m[5] ?? "";
  const shownQuery = query.replace(SECRET_PARAM, (_m, head: string, value: string) => {
    registerSecret(value);
    registerSecret(decodeQueryValue(value));
    return `${head}${REDACTED}`;
  });
  const display = `${scheme}://${shownUserinfo}${authority}${rawPath}${shownQuery ? `?${shownQuery}` : ""}`;
  if (authority === "") throw bad(`${display}: the URL names no host`);
  const portZero = LISTENING_SCHEMES.includes(scheme);
  const hosts = authority.split(",").map((h) => parseHost(h.trim(), display, portZero));
  const params = new URLSearchParams(query);
  const modeText = params.get("mode") ?? undefined;
  if (modeText !== undefined && !(MODE_NAMES as readonly string[]).includes(modeText)) {
    throw bad(`${display}: mode "${modeText}" is not one of ${MODE_NAMES.join(", ")}`);
  }
  const formatText = params.get("format") ?? undefined;
  if (formatText !== undefined && !(FORMAT_NAMES as readonly string[]).includes(formatText)) {
    throw bad(`${display}: format "${formatText}" is not one of ${FORMAT_NAMES.join(", ")}`);
  }
  return {
    scheme,
    username,
    password,
    hosts,
    path: decode(rawPath.replace(/^\//, ""), "path", display),
    rawPath,
    params,
    mode: modeText as ContentMode | undefined,
    format: formatText as FormatName | undefined,
    display,
  };
}

/**
 * The same endpoint URL with another port: where a subscriber given port 0 listens.
 *
 * @param url - an endpoint URL of one host (`http://127.0.0.1:0/events?mode=binary`)
 * @param port - the port to put in its place
 * @returns the URL with that port, everything else as written
 * @throws {@link PosthornError} `MalformedInput` when the URL cannot be read
 */
export function withPort(url: string, port: number): string {
  const m = URL_SHAPE.exec(url.trim());
  if (!m) throw bad(`"${hidePassword(url)}" is not an endpoint URL`);
  const [, scheme, userinfo, authority = "", rest = "", query] = m;
  // [v6]:port or host:port: the port is what follows the last ":" after the host.
  const host = authority.replace(/:\d*$/, "");
  return `${scheme}://${userinfo === undefined ? "" : `${userinfo}@`}${host}:${port}${rest}${query === undefined ? "" : `?${query}`}`;
}

/**
 * Replaces the password of a URL-looking string with `***`, without parsing it strictly.
 *
 * @param url - a URL, possibly malformed
 */
export function hidePassword(url: string): string {
  return url.replace(
    /^([a-z][a-z0-9+.-]*:\/\/)([^:@/]*):[^@/]*@/i,
    (_m, head: string, user: string) => `${head}${user}:${REDACTED}@`,
  );
}

/**
 * Reads a query parameter as a boolean (`1`, `true`, `yes`, `0`, `false`, `no`, or present and
 * empty for true).
 */
export function booleanParam(url: ParsedEndpointUrl, name: string): boolean | undefined {
  const value = url.params.get(name);
  if (value === null) return undefined;
  const v = value.toLowerCase();
  if (v === "" || v === "1" || v === "true" || v === "yes") return true;
  if (v === "0" || v === "false" || v === "no") return false;
  throw bad(`${url.display}: ${name}="${value}" is not a boolean (true or false)`);
}

/**
 * Reads a query parameter as an integer of `least` or more (default 0): 1 for a count that 0
 * would make wait for ever (`credit`, `partitions`).
 */
export function integerParam(
  url: ParsedEndpointUrl,
  name: string,
  least: 0 | 1 = 0,
): number | undefined {
  const value = url.params.get(name);
  if (value === null) return undefined;
  const n = Number(value);
  if (value === "" || !Number.isInteger(n) || n < least)
    throw bad(
      `${url.display}: ${name}="${value}" is not ${least === 0 ? "a non-negative integer" : "an integer of 1 or more"}`,
    );
  return n;
}

/**
 * Checks that a URL has no query parameters but the ones a driver knows (plus `mode` and
 * `format`), so a typo is an error rather than silently ignored.
 */
export function checkParams(url: ParsedEndpointUrl, known: readonly string[]): void {
  // "*": the driver passes unknown parameters on (HTTP keeps them in the target URL).
  if (known.includes("*")) return;
  for (const name of new Set(url.params.keys())) {
    if (name === "mode" || name === "format" || known.includes(name)) continue;
    const all = ["mode", "format", ...known].join(", ");
    throw bad(
      `${url.display}: unknown query parameter "${name}" for ${url.scheme}:// (known: ${all})`,
    );
  }
}
