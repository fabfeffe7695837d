import { malformed, PosthornError, utf8Encode } from "@posthorn/core";

/**
 * NATS message headers (NATS ADR-4: `NATS/1.0` status line, then `Name: value` lines, CRLF
 * terminated). Header names are case-insensitive on the wire; this class keeps them as given and
 * looks them up case-insensitively with {@link NatsHeaders.lookup}.
 *
 * It has the shape of nats.js's `MsgHdrs` (both the `nats` v2 package and `@nats-io/nats-core`
 * v3), so an instance can be passed as the `headers` option of `publish()` on either client
 * without importing either library: they only call `encode()` on it, and `set()` to add the
 * JetStream `Nats-Msg-Id` header.
 */
export class NatsHeaders implements Iterable<[string, string[]]> {
  // Headers built by this binding's encoder arrive as a flat [name, value, ...] list and the
  // finished header block; the map is only built when someone reads or changes them.
  #map: Map<string, string[]> | undefined;
  #flat: string[] | undefined;
  // The encoded block, kept until the next change: size checks and publishing both need it.
  #text: string | undefined;
  #bytes: Uint8Array | undefined;
  // Set by trusted(): the block is known to be ASCII, so encoding needs no check.
  #ascii = false;
  /** The status code of the status line (0 for an ordinary message). */
  readonly code = 0;
  /** The status description of the status line (empty for an ordinary message). */
  readonly description = "";
  /** Whether the status line carries an error (never, for a message this binding builds). */
  readonly hasError = false;
  /** The status line's code and description, as nats.js reports it. */
  readonly status = "";

  /**
   * @param entries - initial headers, added with {@link NatsHeaders.append}
   * @throws {@link PosthornError} `MalformedInput` when a name or value cannot travel in a header
   */
  constructor(entries?: Iterable<readonly [string, string]>) {
    if (entries) for (const [name, value] of entries) this.append(name, value);
  }

  /**
   * Headers whose names and values the caller has already made header-safe, with the header
   * block they encode to. For this binding's encoder; skips every check.
   *
   * @internal
   */
  static trusted(flat: string[], text: string, bytes?: Uint8Array): NatsHeaders {
    const h = new NatsHeaders();
    h.#flat = flat;
    h.#text = text;
    h.#ascii = true;
    // Shared encoded bytes (structured mode reuses one block per format) are never written to:
    // a change to these headers drops them and encodes afresh.
    if (bytes !== undefined) h.#bytes = bytes;
    return h;
  }

  get #entries(): Map<string, string[]> {
    if (this.#map) return this.#map;
    const map = new Map<string, string[]>();
    const flat = this.#flat;
    if (flat) {
      for (let i = 0; i < flat.length; i += 2) {
        const name = flat[i] as string;
        const value = flat[i + 1] as string;
        const existing = map.get(name);
        if (existing) existing.push(value);
        else map.set(name, [value]);
      }
      this.#flat = undefined;
    }
    this.#map = map;
    return map;
  }

  #changed(): void {
    this.#ascii = false;
    this.#text = undefined;
    this.#bytes = undefined;
  }

  /** How many distinct header names there are. */
  size(): number {
    return this.#entries.size;
  }

  /** Every header name, as given. */
  keys(): string[] {
    return [...this.#entries.keys()];
  }

  /** The first value of a header (exact name), or `""` like nats.js. */
  get(name: string): string {
    return this.#entries.get(name)?.[0] ?? "";
  }

  /** The last value of a header (exact name), or `""` like nats.js. */
  last(name: string): string {
    const values = this.#entries.get(name);
    return values?.[values.length - 1] ?? "";
  }

  /** Every value of a header (exact name). */
  values(name: string): string[] {
    return [...(this.#entries.get(name) ?? [])];
  }

  /** Whether a header is present (exact name). */
  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /** The first value of a header, matching its name case-insensitively. */
  lookup(name: string): string | undefined {
    const map = this.#entries;
    const exact = map.get(name);
    if (exact) return exact[0];
    const lower = name.toLowerCase();
    for (const [key, values] of map) {
      if (key.toLowerCase() === lower) return values[0];
    }
    return undefined;
  }

  /**
   * Replaces a header's values.
   *
   * @throws {@link PosthornError} `MalformedInput` when the name or value is not header-safe
   */
  set(name: string, value: string): void {
    const safe = checkHeaderValue(name, value);
    const map = this.#entries;
    this.#changed();
    map.set(checkHeaderName(name), [safe]);
  }

  /**
   * Adds a value to a header.
   *
   * @throws {@link PosthornError} `MalformedInput` when the name or value is not header-safe
   */
  append(name: string, value: string): void {
    const safe = checkHeaderValue(name, value);
    const map = this.#entries;
    this.#changed();
    const existing = map.get(name);
    if (existing) existing.push(safe);
    else map.set(checkHeaderName(name), [safe]);
  }

  /** Removes a header. */
  delete(name: string): void {
    this.#changed();
    this.#entries.delete(name);
  }

  [Symbol.iterator](): Iterator<[string, string[]]> {
    return this.#entries.entries();
  }

  /** The header block as NATS sends it: `NATS/1.0\r\n`, one line per value, a blank line. */
  toString(): string {
    if (this.#text !== undefined) return this.#text;
    const map = this.#entries;
    if (map.size === 0) return "";
    let s = "NATS/1.0\r\n";
    for (const [name, values] of map) {
      for (const value of values) s += `${name}: ${value}\r\n`;
    }
    this.#text = `${s}\r\n`;
    return this.#text;
  }

  /** The header block as UTF-8 bytes (nats.js calls this when it publishes). */
  encode(): Uint8Array {
    this.#bytes ??= encodeText(this.toString(), this.#ascii);
    return this.#bytes;
  }

  /** The header block's size in bytes, as counted against the server's `max_payload`. */
  byteLength(): number {
    return this.#bytes?.length ?? utf8Length(this.toString());
  }
}

type Latin1Buffer = { from(text: string, encoding: "latin1"): Uint8Array };
const NodeBuffer = (globalThis as { Buffer?: Latin1Buffer }).Buffer;
const PRINTABLE_ASCII = /^[\x20-\x7e\r\n]*$/;

// The header block as bytes. Blocks this binding writes are ASCII (values percent-encoded), and
// for ASCII Node's Buffer.from(text, "latin1") is the cheapest encoder there is (pooled, no UTF-8
// work); anything else, and other runtimes, get UTF-8 from TextEncoder.
function encodeText(text: string, ascii: boolean): Uint8Array {
  if (NodeBuffer !== undefined && (ascii || PRINTABLE_ASCII.test(text))) {
    return NodeBuffer.from(text, "latin1");
  }
  return utf8Encode(text);
}

function utf8Length(s: string): number {
  // Header text this binding writes is ASCII (values are percent-encoded), so length suffices
  // unless a caller added raw non-ASCII values.
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) n += c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 2 : 1;
  }
  return n;
}

/**
 * Checks a header name: printable ASCII without `:` (RFC 822 field name, as nats.js requires).
 *
 * @throws {@link PosthornError} `MalformedInput`
 */
export function checkHeaderName(name: string): string {
  if (name.length === 0) throw malformed("a NATS header name cannot be empty");
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x3a) {
      throw malformed(
        `NATS header name ${JSON.stringify(name)} has a character headers cannot carry`,
      );
    }
  }
  return name;
}

/**
 * Checks a header value: NATS headers are line-based, so CR and LF would end the header (header
 * injection). nats.js also trims values, so leading and trailing whitespace would be lost.
 *
 * @throws {@link PosthornError} `MalformedInput`
 */
export function checkHeaderValue(name: string, value: string): string {
  if (typeof value !== "string") {
    throw malformed(`NATS header ${name} must have a string value`, undefined, name);
  }
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x0d || c === 0x0a) {
      throw malformed(`NATS header ${name} cannot hold CR or LF`, undefined, name);
    }
  }
  const last = value.length - 1;
  if (last >= 0 && (isSpace(value.charCodeAt(0)) || isSpace(value.charCodeAt(last)))) {
    throw malformed(
      `NATS header ${name} cannot start or end with whitespace (it would be trimmed)`,
      undefined,
      name,
    );
  }
  return value;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

const HEX = "0123456789ABCDEF";
// U+0021-U+007E without `"` and `%`: the characters 3.1.3.2 leaves as they are.
const HEADER_SAFE = /^[\x21\x23\x24\x26-\x7e]*$/;

/**
 * Percent-encodes a canonical string for a NATS header value (NATS binding 3.1.3.2): space,
 * double quote, percent and every character outside U+0021-U+007E become `%XY` per UTF-8 byte,
 * upper-case hex. Strings that need no encoding are returned as they are.
 */
export function encodeHeaderValue(value: string): string {
  // Most values (ids, sources, types, timestamps) need no encoding: one native scan says so.
  if (HEADER_SAFE.test(value)) return value;
  let i = 0;
  for (; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x22 || c === 0x25) break;
  }
  if (i === value.length) return value;
  let out = value.slice(0, i);
  for (; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c > 0x20 && c < 0x7f && c !== 0x22 && c !== 0x25) {
      out += value[i];
      continue;
    }
    // A surrogate pair is one character (3.1.3.2): take the whole code point.
    const cp = value.codePointAt(i) as number;
    if (cp > 0xffff) i++;
    for (const byte of utf8Encode(String.fromCodePoint(cp))) {
      out += `%${HEX[byte >> 4]}${HEX[byte & 15]}`;
    }
  }
  return out;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Reads a NATS header value back into the canonical string (NATS binding 3.1.3.2): first undoes an
 * RFC 7230 quoted string (with backslash escapes), then one round of percent-decoding. Lower-case
 * hex and needlessly encoded characters are accepted; a `%` that does not start an escape is kept
 * as it is (producers that do not encode at all exist); escapes that decode to invalid UTF-8
 * (such as the overlong `%C0%A0`) are rejected.
 *
 * @throws {@link PosthornError} `MalformedInput` naming the header
 */
export function decodeHeaderValue(raw: string, name = "header"): string {
  let value = raw;
  if (value.length >= 2 && value.charCodeAt(0) === 0x22) value = unquote(value, name);
  const first = value.indexOf("%");
  if (first === -1) return value;
  const bytes: number[] = [];
  let out = value.slice(0, first);
  let i = first;
  while (i < value.length) {
    const c = value.charCodeAt(i);
    if (c === 0x25 && i + 2 < value.length) {
      const hi = hexValue(value.charCodeAt(i + 1));
      const lo = hexValue(value.charCodeAt(i + 2));
      if (hi >= 0 && lo >= 0) {
        bytes.push((hi << 4) | lo);
        i += 3;
        continue;
      }
    }
    if (bytes.length > 0) out += flush(bytes, name);
    // Not an escape: keep the character (a whole code point) as it is.
    const cp = value.codePointAt(i) as number;
    const width = cp > 0xffff ? 2 : 1;
    out += value.slice(i, i + width);
    i += width;
  }
  if (bytes.length > 0) out += flush(bytes, name);
  return out;
}

function flush(bytes: number[], name: string): string {
  let text: string;
  try {
    text = strictUtf8.decode(new Uint8Array(bytes));
  } catch (err) {
    throw new PosthornError(
      "MalformedInput",
      `NATS header ${name} percent-decodes to bytes that are not valid UTF-8`,
      { attribute: name, cause: err },
    );
  }
  bytes.length = 0;
  return text;
}

function unquote(value: string, name: string): string {
  if (value.charCodeAt(value.length - 1) !== 0x22) {
    throw malformed(`NATS header ${name} has an unterminated quoted string`, undefined, name);
  }
  let out = "";
  for (let i = 1; i < value.length - 1; i++) {
    let c = value[i] as string;
    if (c === "\\") {
      i++;
      if (i >= value.length - 1) {
        throw malformed(`NATS header ${name} ends in a dangling backslash`, undefined, name);
      }
      c = value[i] as string;
    } else if (c === '"') {
      throw malformed(`NATS header ${name} has a stray double quote`, undefined, name);
    }
    out += c;
  }
  return out;
}
