import { decodeHeaderValue, malformed, PosthornError, utf8Encode } from "@posthorn/core";

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
   * @param flat - names and values alternating, `[name, value, name, value, ...]`; kept, not copied
   * @param text - the header block they encode to, as {@link NatsHeaders.toString} would write it
   * @param bytes - that block as bytes, shared and never written to, when the caller has it
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

  /**
   * The first value of a header (exact name), or `""` like nats.js.
   *
   * @param name - the header name, matched exactly
   */
  get(name: string): string {
    return this.#entries.get(name)?.[0] ?? "";
  }

  /**
   * The last value of a header (exact name), or `""` like nats.js.
   *
   * @param name - the header name, matched exactly
   */
  last(name: string): string {
    const values = this.#entries.get(name);
    return values?.[values.length - 1] ?? "";
  }

  /**
   * Every value of a header (exact name), as a new array; empty when it is absent.
   *
   * @param name - the header name, matched exactly
   */
  values(name: string): string[] {
    return [...(this.#entries.get(name) ?? [])];
  }

  /**
   * Whether a header is present (exact name).
   *
   * @param name - the header name, matched exactly
   */
  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /**
   * The first value of a header, matching its name case-insensitively (an exact match first).
   *
   * @param name - the header name, in any case
   * @returns the value, or `undefined` when no header has that name
   */
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
   * @param name - the header name, matched exactly
   * @param value - the one value it keeps
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
   * @param name - the header name, matched exactly; a new name is added at the end
   * @param value - the value to add after its others
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

  /**
   * Removes a header and all its values; nothing happens when it is absent.
   *
   * @param name - the header name, matched exactly
   */
  delete(name: string): void {
    this.#changed();
    this.#entries.delete(name);
  }

  /** Each header as `[name, values]`, names as given, in the order they were first added. */
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
 * @param name - the header name
 * @returns the name, unchanged
 * @throws {@link PosthornError} `MalformedInput` when it is empty or holds another character
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
 * @param name - the header name, for the error
 * @param value - the value to check
 * @returns the value, unchanged
 * @throws {@link PosthornError} `MalformedInput` when it is not a string, holds CR or LF, or
 *   starts or ends with a space or tab
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

/**
 * Reads a NATS header value back into the attribute's canonical string (NATS binding 3.1.3.2,
 * the same rules as the HTTP binding's): core's `decodeHeaderValue`, with one NATS difference.
 * nats.js has already read the header block as UTF-8, so a raw non-ASCII character (sent by a
 * producer that does not encode) is Unicode text, never a Latin-1 stand-in for a wire byte as it
 * is on a Node HTTP server.
 *
 * @param raw - the header value as nats.js delivered it
 * @param header - the header's name, for the error
 * @throws {@link PosthornError} `MalformedInput` naming the header
 */
export function decodeNatsHeaderValue(raw: string, header: string): string {
  return decodeHeaderValue(raw, header, UNICODE_TEXT);
}

const UNICODE_TEXT = { text: "unicode" } as const;
