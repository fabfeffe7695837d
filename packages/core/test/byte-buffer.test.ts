import { ByteWriter, reusedWriter, utf8Decode, varintSize } from "@posthorn/core";
import { describe, expect, it } from "vitest";

/** Reads the varint at `at`, independently of the writer: low seven bits first. */
function readVarint(bytes: Uint8Array, at: number): [value: number, next: number] {
  let value = 0;
  let scale = 1;
  for (;;) {
    const b = bytes[at++] as number;
    value += (b & 127) * scale;
    if (b < 128) return [value, at];
    scale *= 128;
  }
}

describe("ByteWriter", () => {
  it("writes varints low bits first across the safe-integer range, in varintSize bytes", () => {
    const w = new ByteWriter();
    w.varint(300);
    expect([...w.finish()]).toEqual([0xac, 0x02]);
    const values = [0, 1, 127, 128, 16383, 16384, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER];
    for (const v of values) w.varint(v);
    const bytes = w.finish();
    let at = 0;
    for (const v of values) {
      const [value, next] = readVarint(bytes, at);
      expect(value).toBe(v);
      expect(next - at).toBe(varintSize(v));
      at = next;
    }
    expect(at).toBe(bytes.length);
    expect(values.map(varintSize)).toEqual([1, 1, 1, 2, 2, 3, 5, 5, 8]);
  });

  it("grows past the initial buffer and drops a large buffer after finish", () => {
    const w = new ByteWriter();
    const big = new Uint8Array(3 * 1024 * 1024).fill(7);
    w.byte(1);
    w.raw(big);
    const out = w.finish();
    expect(out.length).toBe(big.length + 1);
    expect(out[0]).toBe(1);
    expect(out[out.length - 1]).toBe(7);
    expect(w.buf.length).toBeLessThanOrEqual(1024 * 1024);
    expect(w.finish().length).toBe(0);
  });

  it("prefixes UTF-8 strings with their byte count, or its zig-zag, whatever their length", () => {
    const strings = [
      "",
      "id",
      "x".repeat(63),
      "x".repeat(64),
      "x".repeat(200),
      "é🚀",
      "é".repeat(100),
    ];
    for (const scale of [1, 2] as const) {
      const w = new ByteWriter();
      for (const s of strings) w.utf8(s, scale);
      const bytes = w.finish();
      let at = 0;
      for (const s of strings) {
        const [prefix, start] = readVarint(bytes, at);
        expect(prefix % scale).toBe(0);
        at = start + prefix / scale;
        expect(utf8Decode(bytes.subarray(start, at))).toBe(s);
      }
      expect(at).toBe(bytes.length);
    }
  });

  it("forgets a failed write after reset", () => {
    const w = new ByteWriter();
    w.utf8("half", 1);
    w.reset();
    w.byte(9);
    expect([...w.finish()]).toEqual([9]);
  });
});

describe("reusedWriter", () => {
  it("keeps one writer, gives a nested encode its own, and starts empty after a failure", () => {
    let made = 0;
    const encodeWith = reusedWriter(() => {
      made++;
      return new ByteWriter();
    });
    expect(encodeWith((w) => w.byte(1))).toEqual(new Uint8Array([1]));
    // A nested encode in the middle of another: both come out whole.
    let inner: Uint8Array | undefined;
    const outer = encodeWith((w) => {
      w.byte(7);
      inner = encodeWith((n) => n.raw(new Uint8Array([8, 9])));
      w.byte(10);
    });
    expect(outer).toEqual(new Uint8Array([7, 10]));
    expect(inner).toEqual(new Uint8Array([8, 9]));
    expect(made).toBe(2);
    expect(() =>
      encodeWith((w) => {
        w.byte(5);
        throw new Error("bad data");
      }),
    ).toThrow("bad data");
    expect(encodeWith((w) => w.byte(6))).toEqual(new Uint8Array([6]));
    expect(made).toBe(2);
  });
});
