import {
  base64Decode,
  base64Encode,
  bytesEqual,
  isBase64,
  toUint8Array,
  utf8Decode,
} from "@posthorn/core";
import { describe, expect, it } from "vitest";

describe("base64", () => {
  it("round-trips every length and byte value", () => {
    for (let n = 0; n < 300; n++) {
      const bytes = new Uint8Array(n);
      for (let i = 0; i < n; i++) bytes[i] = (i * 7 + n) & 0xff;
      const text = base64Encode(bytes);
      expect(isBase64(text)).toBe(true);
      expect(bytesEqual(base64Decode(text), bytes)).toBe(true);
    }
  });
  it.each(["abc", "ab=c", "a===", "ab$d", "YQ==YQ=="])("rejects %j", (text) => {
    expect(isBase64(text)).toBe(false);
    expect(() => base64Decode(text)).toThrowError(
      expect.objectContaining({ code: "MalformedInput" }),
    );
  });
});

describe("utf8Decode", () => {
  it("rejects invalid UTF-8 with a typed error instead of replacement characters", () => {
    expect(() => utf8Decode(new Uint8Array([0xc0, 0xa0]))).toThrowError(
      expect.objectContaining({ code: "MalformedInput" }),
    );
    expect(() => utf8Decode(new Uint8Array([0xed, 0xa0, 0x80]))).toThrowError(
      expect.objectContaining({ code: "MalformedInput" }),
    );
  });
  it("decodes astral characters", () => {
    expect(utf8Decode(new Uint8Array([0xf0, 0x9f, 0x9a, 0x80]))).toBe("🚀");
  });
});

describe("toUint8Array", () => {
  it("views Buffers, ArrayBuffers and DataViews without copying", () => {
    const buffer = new ArrayBuffer(8);
    const view = toUint8Array(new DataView(buffer, 2, 4));
    view[0] = 9;
    expect(new Uint8Array(buffer)[2]).toBe(9);
    expect(toUint8Array(buffer).byteLength).toBe(8);
  });
});
