import { ByteReader, ByteWriter, isPosthornError, varintSize } from "@posthorn/core";
import { describe, expect, it } from "vitest";

function expectMalformed(read: () => unknown, message: RegExp): void {
  let thrown: unknown;
  try {
    read();
  } catch (err) {
    thrown = err;
  }
  expect(isPosthornError(thrown, "MalformedInput"), String(thrown)).toBe(true);
  expect((thrown as Error).message).toMatch(message);
}

describe("ByteWriter and ByteReader", () => {
  it("write varints low bits first and read them back across the safe-integer range", () => {
    const w = new ByteWriter();
    w.varint(300);
    expect([...w.finish()]).toEqual([0xac, 0x02]);
    const values = [0, 1, 127, 128, 16383, 16384, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER];
    for (const v of values) w.varint(v);
    const bytes = w.finish();
    const r = new ByteReader(bytes, "test", 0, bytes.length);
    for (const v of values) expect(r.varint()).toBe(v);
    expect(r.pos).toBe(bytes.length);
    expect(values.map(varintSize)).toEqual([1, 1, 1, 2, 2, 3, 5, 5, 8]);
  });

  it("grow past the initial buffer and drop a large buffer after finish", () => {
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

  it("prefix UTF-8 strings with their byte count, or its zig-zag, whatever their length", () => {
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
      const out = w.finish();
      const r = new ByteReader(out, "test", 0, out.length);
      for (const s of strings) {
        const n = r.varint();
        expect(n % scale).toBe(0);
        expect(r.text(n / scale, "a string")).toBe(s);
      }
      expect(r.pos).toBe(r.end);
    }
  });

  it("read bytes as views and keys as cached strings", () => {
    const bytes = new Uint8Array([1, 2, 3, 0x6b, 0x65, 0x79]);
    const r = new ByteReader(bytes, "test", 0, 3);
    const view = r.take(3);
    expect([...view]).toEqual([1, 2, 3]);
    expect(view.buffer).toBe(bytes.buffer);
    r.end = 6;
    expect(r.keyText(3, "a key")).toBe("key");
  });

  it("refuse truncated, overlong and non-UTF-8 input with MalformedInput naming the format", () => {
    expectMalformed(
      () => new ByteReader(new Uint8Array([0x80]), "Test", 0, 1).varint(),
      /^Test data/,
    );
    expectMalformed(
      () => new ByteReader(new Uint8Array(11).fill(0xff), "Test", 0, 11).varint(),
      /Test varint is longer than 10 bytes/,
    );
    expectMalformed(
      () => new ByteReader(new Uint8Array([0xff, 0xfe]), "Test", 0, 2).text(2, "a name"),
      /a name/,
    );
    // The range ends before the buffer does: the reader stops at `end`.
    expectMalformed(
      () => new ByteReader(new Uint8Array([0x80, 0x01]), "Test", 0, 1).varint(),
      /truncated/,
    );
  });
});
