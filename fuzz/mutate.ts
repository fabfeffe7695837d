/**
 * Mutators: byte flips, truncation, splicing, duplication, huge length prefixes, odd Unicode,
 * dictionary tokens (`__proto__`, `constructor`, ...), for bytes and for strings (header names and
 * values). Each is a pure function of its input and the generator.
 */
import type { Rng } from "./rng.js";

const encoder = new TextEncoder();

/** UTF-8 bytes of a string (lone surrogates become U+FFFD, as TextEncoder writes them). */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Bytes as lower-case hex. */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/** Bytes from hex. */
export function fromHex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "hex"));
}

/** The concatenation of byte arrays. */
export function concat(...parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The largest input a mutator makes (a few decoders are given a limit above it, most below). */
export const MAX_INPUT_BYTES = 2 * 1024 * 1024;

const INTERESTING_BYTES = [
  0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xfe, 0xff, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x3a, 0x2c,
  0x25, 0x0d, 0x0a, 0x09, 0x20, 0x3d, 0x3b, 0x2f, 0x2b, 0x2d, 0x5f, 0xc0, 0xc2, 0xed, 0xef, 0xf4,
  0xf8,
];

/**
 * Odd Unicode as UTF-8 (or as what claims to be UTF-8): surrogates written as WTF-8, overlong
 * forms, code points past U+10FFFF, noncharacters, controls, BOM, bidi and joiner characters,
 * letters whose case mapping changes length or leaves ASCII.
 */
export const ODD_UTF8: readonly Uint8Array[] = [
  [0xed, 0xa0, 0x80], // U+D800 as WTF-8
  [0xed, 0xbf, 0xbf], // U+DFFF as WTF-8
  [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80], // a surrogate pair as CESU-8
  [0xc0, 0x80], // overlong NUL
  [0xc0, 0xaf], // overlong '/'
  [0xe0, 0x80, 0xaf],
  [0xf0, 0x80, 0x80, 0xaf],
  [0xf4, 0x90, 0x80, 0x80], // past U+10FFFF
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xef, 0xbb, 0xbf], // BOM
  [0xef, 0xbf, 0xbe], // U+FFFE
  [0xef, 0xbf, 0xbf], // U+FFFF
  [0xef, 0xb7, 0x90], // U+FDD0
  [0xf4, 0x8f, 0xbf, 0xbf], // U+10FFFF
  [0xf0, 0x9f, 0xbf, 0xbe], // U+1FFFE
  [0xc2, 0x85], // NEL
  [0xc2, 0x9f], // a C1 control
  [0xe2, 0x80, 0xa8], // LINE SEPARATOR
  [0xe2, 0x80, 0xae], // RIGHT-TO-LEFT OVERRIDE
  [0xe2, 0x80, 0x8d], // ZERO WIDTH JOINER
  [0xcc, 0x81], // combining acute
  [0xe2, 0x84, 0xaa], // KELVIN SIGN: lower-cases to ASCII k
  [0xc4, 0xb0], // LATIN CAPITAL I WITH DOT ABOVE: lower-cases to two code units
  [0xc5, 0xbf], // LONG S: upper-cases to ASCII S
  [0xf0, 0x9f, 0x9a, 0x80], // an emoji
  [0x80], // a stray continuation byte
  [0xc3], // a truncated sequence
  [0x1b],
  [0x00],
].map((b) => new Uint8Array(b));

/** The same oddities as JavaScript strings, including what UTF-8 cannot hold (lone surrogates). */
export const ODD_CHARS: readonly string[] = [
  "\ud800",
  "\udfff",
  "\udc00\ud800",
  "\ud83d\ude80",
  "\u0000",
  "\u0001",
  "\u001b",
  "\u007f",
  "\u0085",
  "\u009f",
  "\u00a0",
  "\u00e9",
  "\u00ff",
  "\u0100",
  "\u0130",
  "\u017f",
  "\u212a",
  "\u2028",
  "\u202e",
  "\u200d",
  "\ufeff",
  "\ufffe",
  "\uffff",
  "\ufdd0",
  "\r",
  "\n",
  "\r\n",
  "\t",
  " ",
  '"',
  "\\",
  "%",
  ",",
  ";",
  ":",
  "=",
  "\u00c3\u00a9", // é read as Latin-1
];

/** Names that reach prototypes or shadow methods when copied carelessly. */
export const PROTO_NAMES: readonly string[] = [
  "__proto__",
  "constructor",
  "prototype",
  "hasOwnProperty",
  "toString",
  "valueOf",
  "toJSON",
  "__defineGetter__",
  "__lookupGetter__",
  "isPrototypeOf",
  "then",
];

/** An unsigned LEB128 varint (protobuf), up to 64 bits. */
export function varint(value: bigint): Uint8Array {
  let v = BigInt.asUintN(64, value);
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return new Uint8Array(out);
}

/** A zig-zag varint (Avro `long`). */
export function zigzag(value: bigint): Uint8Array {
  const v = BigInt.asIntN(64, value);
  return varint(v >= 0n ? v << 1n : (-v << 1n) - 1n);
}

/** Lengths and counts that break decoders: past the input, past 2^31, 2^53, 2^64, negative. */
export const HUGE_NUMBERS: readonly bigint[] = [
  127n,
  128n,
  255n,
  256n,
  0xffffn,
  0x10000n,
  0x7fffffffn,
  0x80000000n,
  0xffffffffn,
  0x100000000n,
  2n ** 53n - 1n,
  2n ** 53n + 1n,
  2n ** 63n - 1n,
  2n ** 64n - 1n,
  -1n,
  -2n,
  -(2n ** 31n),
  -(2n ** 63n),
];

/** How bytes of one kind get their length fields and dictionary. */
export interface ByteShape {
  /** Tokens that mean something in this encoding, spliced in at random places. */
  readonly dictionary?: readonly Uint8Array[];
  /** How the encoding writes lengths: unsigned varints (protobuf), zig-zag (Avro), or none. */
  readonly lengths?: "varint" | "zigzag";
  /** Other inputs of the same kind, for splicing. */
  readonly others?: readonly Uint8Array[];
}

function insertAt(
  bytes: Uint8Array,
  where: number,
  piece: Uint8Array,
  replaceUpTo = 0,
): Uint8Array {
  const at = Math.max(0, Math.min(where, bytes.length));
  const replace = Math.max(0, Math.min(replaceUpTo, bytes.length - at));
  const out = new Uint8Array(bytes.length - replace + piece.length);
  out.set(bytes.subarray(0, at), 0);
  out.set(piece, at);
  out.set(bytes.subarray(at + replace), at + piece.length);
  return out;
}

function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.chance(0.5) ? rng.pick(INTERESTING_BYTES) : rng.int(256);
  return out;
}

function lengthField(rng: Rng, shape: ByteShape): Uint8Array {
  const n = rng.chance(0.3) ? BigInt(rng.int(4096)) : rng.pick(HUGE_NUMBERS);
  return shape.lengths === "zigzag" ? zigzag(n) : varint(n);
}

/**
 * One mutation of `bytes`.
 *
 * @param rng - the input's generator
 * @param bytes - the bytes to change (not modified)
 * @param shape - dictionary, length encoding and splice partners
 */
export function mutateOnce(rng: Rng, bytes: Uint8Array, shape: ByteShape = {}): Uint8Array {
  const n = bytes.length;
  const at = rng.int(n + 1);
  switch (rng.int(16)) {
    case 0: {
      if (n === 0) return randomBytes(rng, 1 + rng.small(16));
      const out = bytes.slice();
      const i = rng.int(n);
      out[i] = (out[i] as number) ^ (1 << rng.int(8));
      return out;
    }
    case 1: {
      if (n === 0) return randomBytes(rng, 1);
      const out = bytes.slice();
      out[rng.int(n)] = rng.chance(0.6) ? rng.pick(INTERESTING_BYTES) : rng.int(256);
      return out;
    }
    case 2: {
      if (n === 0) return bytes;
      const out = bytes.slice();
      const i = rng.int(n);
      out[i] = ((out[i] as number) + rng.range(-35, 35)) & 0xff;
      return out;
    }
    case 3:
      // Truncation, at the end most often.
      return rng.chance(0.8) ? bytes.slice(0, at) : bytes.slice(at);
    case 4: {
      const len = 1 + rng.small(Math.max(1, n - at));
      return insertAt(bytes, at, new Uint8Array(0), len);
    }
    case 5:
      return insertAt(bytes, at, randomBytes(rng, 1 + rng.small(32)));
    case 6: {
      // Duplicates a chunk, somewhere else or right after itself.
      if (n === 0) return bytes;
      const from = rng.int(n);
      const len = 1 + rng.small(Math.min(n - from, 4096) - 1);
      const chunk = bytes.slice(from, from + len);
      return insertAt(bytes, rng.chance(0.5) ? from + len : rng.int(n + 1), chunk);
    }
    case 7: {
      // Splices with another input: this one's head, the other's tail.
      const other = shape.others && shape.others.length > 0 ? rng.pick(shape.others) : bytes;
      const cut = rng.int(other.length + 1);
      return concat(bytes.subarray(0, at), other.subarray(cut));
    }
    case 8:
    case 9: {
      const dict = shape.dictionary;
      if (!dict || dict.length === 0) return insertAt(bytes, at, rng.pick(ODD_UTF8));
      const token = rng.pick(dict);
      return insertAt(bytes, at, token, rng.chance(0.4) ? Math.min(token.length, n - at) : 0);
    }
    case 10: {
      // A huge or wrong length/count where a length field may be.
      if (shape.lengths === undefined) return insertAt(bytes, at, randomBytes(rng, 4));
      const field = lengthField(rng, shape);
      return insertAt(bytes, at, field, Math.min(rng.range(1, 5), n - at));
    }
    case 11:
      return insertAt(bytes, at, rng.pick(ODD_UTF8), rng.chance(0.5) ? Math.min(1, n - at) : 0);
    case 12: {
      // Repeats a short chunk many times (deep nesting, long runs).
      if (n === 0) return bytes;
      const from = rng.int(n);
      const len = 1 + rng.small(Math.min(8, n - from));
      const chunk = bytes.subarray(from, from + len);
      const times = rng.chance(0.5) ? rng.range(2, 300) : rng.range(300, 20_000);
      const rep = new Uint8Array(Math.min(len * times, 256 * 1024));
      for (let i = 0; i < rep.length; i++) rep[i] = chunk[i % len] as number;
      return insertAt(bytes, from, rep);
    }
    case 13: {
      // Swaps two chunks.
      if (n < 4) return bytes;
      const a = rng.int(n - 1);
      const b = a + 1 + rng.int(n - a - 1);
      const len = 1 + rng.small(Math.min(b - a, n - b) - 1);
      const out = bytes.slice();
      out.set(bytes.subarray(b, b + len), a);
      out.set(bytes.subarray(a, a + len), b);
      return out;
    }
    case 14: {
      // Overwrites 2, 4 or 8 bytes with an interesting little- or big-endian number.
      if (n === 0) return bytes;
      const width = rng.pick([2, 4, 8]);
      const value = rng.pick(HUGE_NUMBERS);
      const piece = new Uint8Array(width);
      for (let i = 0; i < width; i++)
        piece[i] = Number((BigInt.asUintN(64, value) >> BigInt(8 * i)) & 0xffn);
      if (rng.chance(0.5)) piece.reverse();
      return insertAt(bytes, Math.min(at, n - 1), piece, Math.min(width, n - Math.min(at, n - 1)));
    }
    default:
      // Grows the input by a block of one byte (a long value, a body past a limit).
      return insertAt(bytes, at, new Uint8Array(growth(rng)).fill(rng.pick(INTERESTING_BYTES)));
  }
}

/** How much to grow an input by: mostly a little, rarely past the 1 MiB limits. */
function growth(rng: Rng): number {
  const r = rng.int(100);
  return r < 45 ? 64 : r < 75 ? 1024 : r < 97 ? 65_536 : 1_100_000;
}

/**
 * Several mutations of `bytes` (one to eight, mostly few), the result capped at
 * {@link MAX_INPUT_BYTES}.
 */
export function mutateBytes(rng: Rng, bytes: Uint8Array, shape: ByteShape = {}): Uint8Array {
  let out = bytes;
  const rounds = 1 + rng.small(7);
  for (let i = 0; i < rounds; i++) {
    out = mutateOnce(rng, out, shape);
    if (out.length > MAX_INPUT_BYTES) out = out.subarray(0, MAX_INPUT_BYTES);
  }
  return out;
}

/** Random bytes, mostly short. */
export function arbitraryBytes(rng: Rng, max = 512): Uint8Array {
  return randomBytes(rng, rng.small(max));
}

/** Tokens for string mutations of header names and values, beyond {@link ODD_CHARS}. */
export interface StringShape {
  /** Whole tokens that mean something here (prefixes, names, escapes). */
  readonly dictionary?: readonly string[];
}

/** Percent escapes that decode to something odd, and broken ones. */
export const PERCENT_TOKENS: readonly string[] = [
  "%",
  "%%",
  "%2",
  "%G0",
  "%0g",
  "%00",
  "%0D%0A",
  "%20",
  "%22",
  "%25",
  "%25%32%35",
  "%7F",
  "%80",
  "%C0%80",
  "%C0%AF",
  "%C3",
  "%C3%A9",
  "%c3%a9",
  "%E2%82",
  "%ED%A0%80",
  "%ED%B0%80",
  "%EF%BB%BF",
  "%EF%BF%BE",
  "%F0%9F%9A%80",
  "%F4%90%80%80",
  "%FF",
  "%u00e9",
];

function randomChar(rng: Rng): string {
  if (rng.chance(0.5)) return rng.pick(ODD_CHARS);
  if (rng.chance(0.7)) return String.fromCharCode(0x20 + rng.int(0x5f));
  return String.fromCharCode(rng.int(0x10000));
}

/**
 * One to four string mutations: odd characters, percent escapes, dictionary tokens, case flips,
 * truncation, duplication, quoting, and (rarely) a very long value.
 */
export function mutateString(rng: Rng, text: string, shape: StringShape = {}): string {
  let s = text;
  const rounds = 1 + rng.small(3);
  for (let r = 0; r < rounds; r++) {
    const at = rng.int(s.length + 1);
    switch (rng.int(11)) {
      case 0:
        s = s.slice(0, at) + randomChar(rng) + s.slice(at + (rng.chance(0.5) ? 1 : 0));
        break;
      case 1:
        s = s.slice(0, at) + rng.pick(PERCENT_TOKENS) + s.slice(at);
        break;
      case 2: {
        const dict =
          shape.dictionary && shape.dictionary.length > 0 ? shape.dictionary : PROTO_NAMES;
        s = rng.chance(0.3) ? rng.pick(dict) : s.slice(0, at) + rng.pick(dict) + s.slice(at);
        break;
      }
      case 3:
        s = rng.chance(0.5) ? s.toUpperCase() : flipCase(rng, s);
        break;
      case 4:
        s = rng.chance(0.7) ? s.slice(0, at) : s.slice(at);
        break;
      case 5:
        s = s + s.slice(at);
        break;
      case 6:
        s = rng.chance(0.5) ? `"${s}"` : `"${s.replace(/"/g, '\\"')}\\"`;
        break;
      case 7:
        s = s.slice(0, at) + rng.pick(PROTO_NAMES) + s.slice(at);
        break;
      case 8:
        s = ` ${s}${rng.pick([" ", "\t", ""])}`;
        break;
      case 9:
        s =
          s.slice(0, at) +
          randomChar(rng).repeat(rng.pick([2, 16, 300, 5000, 70_000])) +
          s.slice(at);
        break;
      default:
        s = s.slice(0, at) + String.fromCharCode(0xd800 + rng.int(0x800)) + s.slice(at);
        break;
    }
  }
  return s;
}

function flipCase(rng: Rng, s: string): string {
  let out = "";
  for (const ch of s) out += rng.chance(0.5) ? ch.toUpperCase() : ch.toLowerCase();
  return out;
}
