import { invalidEvent, malformed } from "./errors.js";

const HEX = "0123456789ABCDEF";

// HTTP binding 3.1.3.2: space, double quote, percent and everything outside U+0021-U+007E are
// encoded. Control characters are encoded too (recommended), which is also what keeps CR and LF
// out of every header value Posthorn writes.
function needsEncoding(c: number): boolean {
  return c <= 0x20 || c >= 0x7f || c === 0x22 || c === 0x25;
}

function pushByte(out: string, b: number): string {
  return `${out}%${HEX[b >> 4]}${HEX[b & 15]}`;
}

/**
 * Percent-encodes an attribute's canonical string for an HTTP header value, exactly as the HTTP
 * binding (3.1.3.2) says: space, `"`, `%` and every character outside U+0021-U+007E become the
 * `%XX` (upper-case hex) forms of their UTF-8 bytes; a surrogate pair is one character. The result
 * is printable ASCII only, so no value can break out of its header.
 *
 * @param value - the canonical string
 * @param name - the attribute, for the error
 * @returns the header value
 * @throws {@link PosthornError} `InvalidEvent` on a lone surrogate (no UTF-8 form exists)
 */
export function encodeHeaderValue(value: string, name = "attribute"): string {
  let i = 0;
  const n = value.length;
  // Fast path: most values need no encoding at all.
  while (i < n && !needsEncoding(value.charCodeAt(i))) i++;
  if (i === n) return value;
  let out = value.slice(0, i);
  for (; i < n; i++) {
    let c = value.charCodeAt(i);
    if (!needsEncoding(c)) {
      out += value[i];
      continue;
    }
    if (c < 0x80) {
      out = pushByte(out, c);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = value.charCodeAt(i + 1);
      if (c > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) {
        throw invalidEvent(`${name} holds a lone surrogate, which has no UTF-8 form`, name);
      }
      c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
      i++;
    }
    if (c < 0x800) {
      out = pushByte(out, 0xc0 | (c >> 6));
      out = pushByte(out, 0x80 | (c & 63));
    } else if (c < 0x10000) {
      out = pushByte(out, 0xe0 | (c >> 12));
      out = pushByte(out, 0x80 | ((c >> 6) & 63));
      out = pushByte(out, 0x80 | (c & 63));
    } else {
      out = pushByte(out, 0xf0 | (c >> 18));
      out = pushByte(out, 0x80 | ((c >> 12) & 63));
      out = pushByte(out, 0x80 | ((c >> 6) & 63));
      out = pushByte(out, 0x80 | (c & 63));
    }
  }
  return out;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

// RFC 7230 3.2.6: a quoted-string, with backslash escapes. Returns undefined when the value is not
// one (then it is taken as it stands).
function unquote(value: string): string | undefined {
  const n = value.length;
  if (n < 2 || value.charCodeAt(0) !== 34 || value.charCodeAt(n - 1) !== 34) return undefined;
  let out = "";
  for (let i = 1; i < n - 1; i++) {
    const c = value.charCodeAt(i);
    if (c === 92) {
      if (i + 1 >= n - 1) return undefined; // a trailing backslash escapes the closing quote
      out += value[++i];
    } else if (c === 34) {
      return undefined; // an unescaped quote inside: not a single quoted-string
    } else out += value[i];
  }
  return out;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Decodes an HTTP header value into the attribute's canonical string (HTTP binding 3.1.3.2):
 * first undoes an RFC 7230 quoted-string, then performs one round of percent-decoding. Lower-case
 * hex and needlessly encoded characters are accepted; decoded bytes that are not valid UTF-8 (an
 * overlong `%C0%A0`, a stray continuation byte) are rejected. A `%` not followed by two hex digits
 * is kept as it is, since several SDKs send values without encoding them.
 *
 * Values that arrive from a Node or fetch server hold one character per byte (Latin-1), so raw
 * UTF-8 from a sender that does not encode is restored; a value holding characters above U+00FF
 * (handed over by JavaScript code rather than read off the wire) is taken as Unicode text.
 *
 * A transport whose client already decoded the header block as UTF-8 (nats.js) passes
 * `{ text: "unicode" }`: raw non-ASCII characters are then always Unicode text.
 *
 * @param value - the header value as received
 * @param name - the attribute, for the error
 * @param options - how raw non-ASCII characters are read: `"latin1"` first, as wire bytes
 *   (default), or `"unicode"`
 * @returns the attribute's string
 * @throws {@link PosthornError} `MalformedInput` when the decoded bytes are not valid UTF-8
 */
export function decodeHeaderValue(
  value: string,
  name = "attribute",
  options: { readonly text?: "latin1" | "unicode" } = {},
): string {
  let text = value;
  if (text.charCodeAt(0) === 34) text = unquote(text) ?? text;
  const n = text.length;
  let i = 0;
  // Fast path: printable ASCII without a percent sign is the value itself.
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 37 || c >= 0x80) break;
  }
  if (i === n) return text;
  if (options.text !== "unicode") {
    const latin1 = decodeBytes(text, i, true, name);
    if (latin1 !== undefined) return latin1;
  }
  const unicode = decodeBytes(text, i, false, name);
  if (unicode !== undefined) return unicode;
  throw malformed(`header for ${name} is not valid UTF-8 after percent-decoding`, undefined, name);
}

// Builds the byte sequence (percent escapes as bytes, other characters as their own byte when
// `latin1`, else as UTF-8) and decodes it strictly. Returns undefined when it is not valid UTF-8.
function decodeBytes(
  text: string,
  start: number,
  latin1: boolean,
  name: string,
): string | undefined {
  const n = text.length;
  const bytes = new Uint8Array(n * 3);
  let o = 0;
  for (let i = 0; i < start; i++) bytes[o++] = text.charCodeAt(i);
  for (let i = start; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 37 && i + 2 < n) {
      const hi = hexValue(text.charCodeAt(i + 1));
      const lo = hexValue(text.charCodeAt(i + 2));
      if (hi >= 0 && lo >= 0) {
        bytes[o++] = (hi << 4) | lo;
        i += 2;
        continue;
      }
    }
    if (c < 0x80 || (latin1 && c <= 0xff)) {
      bytes[o++] = c;
    } else if (latin1) {
      return undefined; // above U+00FF: not wire bytes, retry as Unicode text
    } else if (c < 0x800) {
      bytes[o++] = 0xc0 | (c >> 6);
      bytes[o++] = 0x80 | (c & 63);
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const lo = text.charCodeAt(i + 1);
      if (lo < 0xdc00 || lo > 0xdfff) {
        throw malformed(`header for ${name} holds a lone surrogate`, undefined, name);
      }
      const cp = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
      i++;
      bytes[o++] = 0xf0 | (cp >> 18);
      bytes[o++] = 0x80 | ((cp >> 12) & 63);
      bytes[o++] = 0x80 | ((cp >> 6) & 63);
      bytes[o++] = 0x80 | (cp & 63);
    } else if (c >= 0xd800 && c <= 0xdfff) {
      throw malformed(`header for ${name} holds a lone surrogate`, undefined, name);
    } else {
      bytes[o++] = 0xe0 | (c >> 12);
      bytes[o++] = 0x80 | ((c >> 6) & 63);
      bytes[o++] = 0x80 | (c & 63);
    }
  }
  try {
    return strictUtf8.decode(bytes.subarray(0, o));
  } catch {
    return undefined;
  }
}

// prefix -> (attribute name -> prefixed name), bounded: names come from events, which a sender
// may fill with arbitrary extension names.
const prefixed = new Map<string, Map<string, string>>();
const PREFIXES_LIMIT = 16;
const NAMES_LIMIT = 512;

/**
 * `prefix + name` (a header or property name such as `ce-id` or `cloudEvents:id`), made once and
 * then reused. A fresh concatenation per message is a new string that a mapping must flatten or
 * hash before it can write it or use it as a property key; the same few names recur on every
 * message.
 *
 * @param prefix - the binding's prefix, e.g. `ce_`
 * @param name - the attribute name
 */
export function prefixedName(prefix: string, name: string): string {
  let names = prefixed.get(prefix);
  if (names === undefined) {
    if (prefixed.size >= PREFIXES_LIMIT) prefixed.clear();
    names = new Map();
    prefixed.set(prefix, names);
  }
  let full = names.get(name);
  if (full === undefined) {
    if (names.size >= NAMES_LIMIT) names.clear();
    full = prefix + name;
    names.set(name, full);
  }
  return full;
}
