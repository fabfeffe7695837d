// Binary formats (Avro, Protobuf) write lengths and integers as base-128 varints: seven bits a
// byte, low bits first, the high bit set on every byte but the last. What a varint holds (a plain
// length, a zig-zag long, a tag) is the format's business; the writer only moves the bytes.
// (Readers stay in each format: a reader class shared by both formats measured 2-5% slower
// decoding when both run in one process, its methods seeing two receiver shapes.)

const encoder = new TextEncoder();
const INITIAL_SIZE = 8 * 1024;
// A writer that grew past this for one large value drops back to the initial size afterwards, so
// one big payload does not pin megabytes for the life of the process.
const RETAIN_LIMIT = 1024 * 1024;

/**
 * Number of bytes the base-128 varint of a non-negative integer below 2^53 takes.
 *
 * @param z - the integer, already zig-zagged where the format wants that
 * @returns the size in bytes, 1 to 8
 */
export function varintSize(z: number): number {
  let size = 1;
  while (z >= 128) {
    z = Math.floor(z / 128);
    size++;
  }
  return size;
}

/**
 * A growable output buffer for a binary encoder, reused across calls (encoders are synchronous,
 * so one per module is enough). `finish()` copies out the bytes written. Formats extend it with
 * their own integer and length encodings.
 *
 * @example
 * ```ts
 * const w = new ByteWriter();
 * w.varint(300);
 * w.raw(payload);
 * const bytes = w.finish();
 * ```
 */
export class ByteWriter {
  /** The buffer written into; replaced by a larger one as it grows, so do not keep it. */
  buf: Uint8Array = new Uint8Array(INITIAL_SIZE);
  /** Number of bytes written so far: the offset in `buf` of the next one. */
  pos = 0;

  /** Drops what was written (after a failed encode). */
  reset(): void {
    this.pos = 0;
  }

  /**
   * Makes room for `extra` more bytes, doubling the buffer as often as needed.
   *
   * @param extra - bytes about to be written
   */
  ensure(extra: number): void {
    const need = this.pos + extra;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  /**
   * @returns a copy of the bytes written; the writer is empty afterwards
   */
  finish(): Uint8Array {
    const out = this.buf.slice(0, this.pos);
    if (this.buf.length > RETAIN_LIMIT) this.buf = new Uint8Array(INITIAL_SIZE);
    this.pos = 0;
    return out;
  }

  /**
   * Writes one byte.
   *
   * @param b - the byte, 0 to 255
   */
  byte(b: number): void {
    if (this.pos >= this.buf.length) this.ensure(1);
    this.buf[this.pos++] = b;
  }

  /**
   * Writes bytes as they are, with no length before them.
   *
   * @param data - the bytes to copy in
   */
  raw(data: Uint8Array): void {
    this.ensure(data.length);
    this.buf.set(data, this.pos);
    this.pos += data.length;
  }

  /**
   * Writes the varint of a non-negative integer below 2^53.
   *
   * @param z - the integer, already zig-zagged where the format wants that
   */
  varint(z: number): void {
    this.ensure(10);
    const b = this.buf;
    let p = this.pos;
    while (z >= 128) {
      b[p++] = (z % 128) | 128;
      z = Math.floor(z / 128);
    }
    b[p++] = z;
    this.pos = p;
  }

  /**
   * Writes the UTF-8 bytes of a string after a varint of their count times `lengthScale`.
   *
   * @param s - the string
   * @param lengthScale - 1 writes the byte count itself (Protobuf), 2 its zig-zag encoding, as
   *   Avro's long (a non-negative n zig-zags to 2n)
   */
  utf8(s: string, lengthScale: 1 | 2): void {
    const n = s.length;
    if (n * lengthScale < 128) {
      // Short ASCII strings (most attribute names and values): the length is one byte.
      this.ensure(n + 1);
      const b = this.buf;
      const start = this.pos;
      let p = start + 1;
      for (let i = 0; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) {
          this.longUtf8(s, lengthScale);
          return;
        }
        b[p++] = c;
      }
      b[start] = n * lengthScale;
      this.pos = p;
      return;
    }
    this.longUtf8(s, lengthScale);
  }

  private longUtf8(s: string, lengthScale: number): void {
    const max = s.length * 3;
    const reserved = varintSize(max * lengthScale);
    // Room for the string and for the final length, so nothing below reallocates mid-write.
    this.ensure(reserved + max + 10);
    const start = this.pos;
    const { written } = encoder.encodeInto(s, this.buf.subarray(start + reserved));
    const actual = varintSize(written * lengthScale);
    if (actual < reserved) {
      this.buf.copyWithin(start + actual, start + reserved, start + reserved + written);
    }
    this.varint(written * lengthScale);
    this.pos += written;
  }
}

/**
 * An encode function over one writer kept from call to call (no buffer to allocate per event),
 * safe against re-entry: data's `toJSON` runs in the middle of an encode and may itself encode an
 * event in the same format, and on the shared writer that overwrote the outer event's bytes (an
 * encode that succeeded, bytes no decoder reads). While the kept writer is in use, a nested
 * encode gets a fresh one. A failed encode leaves the writer empty.
 *
 * @param make - makes a writer (once for keeping, and for each nested encode)
 * @returns `encodeWith(write)`: runs `write` on a writer and returns the bytes it wrote
 * @example
 * ```ts
 * const encodeWith = reusedWriter(() => new ByteWriter());
 * const bytes = encodeWith((w) => { w.byte(1); w.raw(payload); });
 * ```
 */
export function reusedWriter<W extends ByteWriter>(
  make: () => W,
): (write: (writer: W) => void) => Uint8Array {
  const kept = make();
  let busy = false;
  return (write) => {
    if (busy) {
      const own = make();
      write(own);
      return own.finish();
    }
    busy = true;
    kept.reset();
    try {
      write(kept);
      return kept.finish();
    } catch (err) {
      kept.reset();
      throw err;
    } finally {
      busy = false;
    }
  };
}
