import {
  ByteWriter,
  decodeKey,
  decodeText,
  malformed,
  type TextSource,
  varintSize,
} from "@posthorn/core";

// Protocol Buffers encoding (protobuf.dev/programming-guides/encoding): a record is a tag varint
// (field number << 3 | wire type) then the value: VARINT (0), I64 (1), LEN (2), I32 (5).

/** Wire type of varints. @internal */
export const VARINT = 0;
/** Wire type of 64-bit fixed values. @internal */
export const I64 = 1;
/** Wire type of length-delimited values. @internal */
export const LEN = 2;
/** Wire type of 32-bit fixed values. @internal */
export const I32 = 5;

/**
 * A growable output buffer reused across (synchronous) encode calls. Nested messages are written
 * in place: `fork()` reserves one byte for the length, `join()` writes it, moving the body when
 * the length needs more than one byte.
 *
 * @internal
 */
export class ProtoWriter extends ByteWriter {
  /** An int32 or int64 held in a safe JS integer; negatives take ten bytes (two's complement). */
  int(n: number): void {
    if (n >= 0) {
      this.varint(n);
      return;
    }
    this.ensure(10);
    // Split into two's complement 32-bit halves of the 64-bit value.
    let lo = n >>> 0;
    let hi = Math.floor(n / 4294967296) >>> 0;
    const b = this.buf;
    let p = this.pos;
    for (let i = 0; i < 9; i++) {
      b[p++] = (lo & 127) | 128;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    b[p++] = lo & 1;
    this.pos = p;
  }

  tag(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  bool(v: boolean): void {
    this.ensure(1);
    this.buf[this.pos++] = v ? 1 : 0;
  }

  bytes(data: Uint8Array): void {
    this.varint(data.length);
    this.raw(data);
  }

  string(s: string): void {
    this.utf8(s, 1);
  }

  /** Starts a length-delimited value; returns where its length goes. */
  fork(): number {
    this.ensure(1);
    return this.pos++;
  }

  /** Ends the length-delimited value started at `at`. */
  join(at: number): void {
    const len = this.pos - at - 1;
    if (len < 128) {
      this.buf[at] = len;
      return;
    }
    const size = varintSize(len);
    this.ensure(size - 1);
    this.buf.copyWithin(at + size, at + 1, this.pos);
    this.pos = at;
    this.varint(len);
    this.pos += len;
  }
}

/**
 * Reads protobuf records within `[pos, end)` of a buffer. Every length is checked against the
 * bytes that remain before anything is read or allocated, varints are at most ten bytes, and
 * groups (wire types 3 and 4, deprecated) are refused: bad input is `MalformedInput`, never a
 * hang or a large allocation.
 *
 * @internal
 */
export class ProtoReader {
  readonly buf: Uint8Array;
  /** A Node Buffer view of `buf`, made on first use. */
  view: TextSource["view"] = undefined;
  pos: number;
  end: number;

  constructor(buf: Uint8Array, pos = 0, end = buf.length) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  /** A varint as a JS number (exact below 2^53; larger values only ever fail a bound). */
  uint(): number {
    const b = this.buf;
    let p = this.pos;
    if (p >= this.end) throw truncated();
    let byte = b[p++] as number;
    if (byte < 128) {
      this.pos = p;
      return byte;
    }
    let n = byte & 127;
    let scale = 128;
    for (let i = 1; ; i++) {
      if (i >= 10) throw malformed("protobuf varint is longer than 10 bytes");
      if (p >= this.end) throw truncated();
      byte = b[p++] as number;
      n += (byte & 127) * scale;
      if (byte < 128) break;
      scale *= 128;
    }
    this.pos = p;
    return n;
  }

  /** An int32 field: the low 32 bits of the varint, as a signed number. */
  int32(): number {
    const b = this.buf;
    let p = this.pos;
    let lo = 0;
    for (let i = 0; ; i++) {
      if (i >= 10) throw malformed("protobuf varint is longer than 10 bytes");
      if (p >= this.end) throw truncated();
      const byte = b[p++] as number;
      if (i < 5) lo |= (byte & 127) << (7 * i);
      if (byte < 128) break;
    }
    this.pos = p;
    return lo | 0;
  }

  /** An int64 field as a JS number; exact within the safe-integer range. */
  int64(): number {
    const b = this.buf;
    let p = this.pos;
    let lo = 0;
    let hi = 0;
    for (let i = 0; ; i++) {
      if (i >= 10) throw malformed("protobuf varint is longer than 10 bytes");
      if (p >= this.end) throw truncated();
      const byte = b[p++] as number;
      if (i < 4) lo |= (byte & 127) << (7 * i);
      else if (i === 4) {
        lo |= (byte & 15) << 28;
        hi |= (byte & 127) >> 4;
      } else hi |= (byte & 127) << (7 * i - 32);
      if (byte < 128) break;
    }
    this.pos = p;
    return (hi | 0) * 4294967296 + (lo >>> 0);
  }

  bool(): boolean {
    return this.uint() !== 0;
  }

  /** A length prefix, checked against the bytes left in the current message. */
  length(): number {
    const n = this.uint();
    if (n > this.end - this.pos) {
      throw malformed(
        `protobuf length ${n} exceeds the ${this.end - this.pos} remaining bytes (truncated or corrupted input)`,
      );
    }
    return n;
  }

  /** Bytes as a view on the input (no copy). */
  bytes(): Uint8Array {
    const n = this.length();
    const start = this.pos;
    this.pos += n;
    return this.buf.subarray(start, start + n);
  }

  /**
   * A string used as a property name (attribute names, JSON member names). Names recur on every
   * message, so short ASCII ones are looked up in a small cache and the same string instance is
   * returned, which spares allocating and re-hashing a fresh key each time.
   */
  key(): string {
    const n = this.length();
    const start = this.pos;
    this.pos = start + n;
    return decodeKey(this, start, start + n, "protobuf string");
  }

  string(): string {
    return this.stringOf(this.length());
  }

  private stringOf(n: number): string {
    const start = this.pos;
    this.pos = start + n;
    return decodeText(this, start, start + n, "protobuf string");
  }

  /** Skips a field of an unknown number. */
  skip(wireType: number): void {
    switch (wireType) {
      case VARINT:
        this.uint();
        return;
      case I64:
        this.advance(8);
        return;
      case LEN:
        this.advance(this.length());
        return;
      case I32:
        this.advance(4);
        return;
      default:
        throw malformed(`protobuf wire type ${wireType} is not supported`);
    }
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw truncated();
    this.pos += n;
  }
}

/** Reads a tag and checks the field number. @internal */
export function readTag(r: ProtoReader): number {
  const tag = r.uint();
  if (tag < 8 || tag > 0xffffffff) throw malformed(`protobuf tag ${tag} is not valid`);
  return tag;
}

/** Refuses a known field that arrives with the wrong wire type. @internal */
export function expectWireType(tag: number, wireType: number, what: string): void {
  if ((tag & 7) !== wireType) {
    throw malformed(`protobuf field ${what} has wire type ${tag & 7}, expected ${wireType}`);
  }
}

function truncated(): Error {
  return malformed("protobuf data is truncated");
}
