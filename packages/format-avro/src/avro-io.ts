import { ByteWriter, decodeKey, decodeText, malformed, type TextSource } from "@posthorn/core";

// Avro 1.11 specification, "Binary Encoding": int and long are zig-zag varints, strings and bytes
// a long length then the bytes, double 8 bytes little-endian, unions a long branch index then the
// value, maps and arrays blocks of (count, items) ended by a zero count.

const scratch = new DataView(new ArrayBuffer(8));

/**
 * A growable output buffer, reused across calls (encoders are synchronous, so one per module is
 * enough). `finish()` copies out the bytes written.
 *
 * @internal
 */
export class AvroWriter extends ByteWriter {
  /** A long given as a JS number in the safe-integer range (zig-zag, then base-128 varint). */
  long(n: number): void {
    this.varint(n >= 0 ? n * 2 : -n * 2 - 1);
  }

  /** A long given as a bigint (timestamp-micros). */
  bigLong(n: bigint): void {
    let z = n >= 0n ? n << 1n : (-n << 1n) - 1n;
    this.ensure(10);
    while (z >= 128n) {
      this.buf[this.pos++] = Number(z & 127n) | 128;
      z >>= 7n;
    }
    this.buf[this.pos++] = Number(z);
  }

  double(x: number): void {
    this.ensure(8);
    scratch.setFloat64(0, x, true);
    for (let i = 0; i < 8; i++) this.buf[this.pos++] = scratch.getUint8(i);
  }

  bytes(data: Uint8Array): void {
    this.long(data.length);
    this.raw(data);
  }

  /** A string: its UTF-8 length as a long (a non-negative long zig-zags to twice itself). */
  string(s: string): void {
    this.utf8(s, 2);
  }
}

/**
 * Reads Avro binary data with every length and count checked against the bytes that remain, so
 * truncated or hostile input fails fast with `MalformedInput` and never allocates more than the
 * input's size.
 *
 * @internal
 */
export class AvroReader {
  readonly buf: Uint8Array;
  /** A Node Buffer view of `buf`, made on first use. */
  view: TextSource["view"] = undefined;
  pos = 0;
  readonly end: number;

  constructor(buf: Uint8Array) {
    this.buf = buf;
    this.end = buf.length;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  /** A long as a JS number; values beyond 2^53 lose precision, which every caller bounds anyway. */
  long(): number {
    const b = this.buf;
    let p = this.pos;
    if (p >= this.end) throw truncated();
    let byte = b[p++] as number;
    if (byte < 128) {
      this.pos = p;
      return byte & 1 ? -(byte + 1) / 2 : byte / 2;
    }
    let z = byte & 127;
    let scale = 128;
    for (let i = 1; ; i++) {
      if (i >= 10) throw malformed("Avro varint is longer than 10 bytes");
      if (p >= this.end) throw truncated();
      byte = b[p++] as number;
      z += (byte & 127) * scale;
      if (byte < 128) break;
      scale *= 128;
    }
    this.pos = p;
    return z % 2 === 1 ? -(z + 1) / 2 : z / 2;
  }

  /** A long as a number when it is exact as one (below 2^53), otherwise as a bigint. */
  exactLong(): number | bigint {
    const start = this.pos;
    const n = this.long();
    if (Math.abs(n) < 2 ** 52) return n;
    this.pos = start;
    return this.bigLong();
  }

  /** A long as a bigint, exact over the whole 64-bit range. */
  bigLong(): bigint {
    let z = 0n;
    let shift = 0n;
    for (let i = 0; ; i++) {
      if (i >= 10) throw malformed("Avro varint is longer than 10 bytes");
      if (this.pos >= this.end) throw truncated();
      const byte = this.buf[this.pos++] as number;
      z |= BigInt(byte & 127) << shift;
      if (byte < 128) break;
      shift += 7n;
    }
    return z & 1n ? -((z + 1n) >> 1n) : z >> 1n;
  }

  int(): number {
    const n = this.long();
    if (n < -2147483648 || n > 2147483647) throw malformed("Avro int is out of the 32-bit range");
    return n;
  }

  boolean(): boolean {
    if (this.pos >= this.end) throw truncated();
    const b = this.buf[this.pos++];
    if (b === 0) return false;
    if (b === 1) return true;
    throw malformed("Avro boolean is neither 0 nor 1");
  }

  double(): number {
    if (this.end - this.pos < 8) throw truncated();
    for (let i = 0; i < 8; i++) scratch.setUint8(i, this.buf[this.pos++] as number);
    return scratch.getFloat64(0, true);
  }

  /** A union branch index, checked against the number of branches. */
  branch(count: number): number {
    const i = this.long();
    if (i < 0 || i >= count || !Number.isInteger(i)) {
      throw malformed(`Avro union branch ${i} does not exist (the union has ${count})`);
    }
    return i;
  }

  /** A length prefix, checked against the remaining bytes before anything is allocated. */
  length(): number {
    const n = this.long();
    if (n < 0) throw malformed("Avro length is negative");
    if (n > this.end - this.pos) throw truncated(n);
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
    return decodeKey(this, start, start + n, "Avro string");
  }

  string(): string {
    return this.stringOf(this.length());
  }

  private stringOf(n: number): string {
    const start = this.pos;
    this.pos = start + n;
    return decodeText(this, start, start + n, "Avro string");
  }

  /**
   * The item count of the next map or array block (0 at the end). A negative count is followed by
   * the block's size in bytes, which is read and checked. Each item takes at least `minItemBytes`,
   * so a count larger than the remaining bytes allow is refused before looping.
   */
  blockCount(minItemBytes: number): number {
    let n = this.long();
    if (n < 0) {
      n = -n;
      this.length();
    }
    if (n * minItemBytes > this.end - this.pos) {
      throw malformed(`Avro block claims ${n} items, more than the remaining bytes can hold`);
    }
    return n;
  }

  expectEnd(what: string): void {
    if (this.pos !== this.end) {
      throw malformed(`${what} has ${this.end - this.pos} bytes after the end of the record`);
    }
  }
}

function truncated(claimed?: number): Error {
  return malformed(
    claimed === undefined
      ? "Avro data is truncated"
      : `Avro length ${claimed} exceeds the remaining bytes (truncated or corrupted input)`,
  );
}
