import {
  asciiText,
  base64Decode,
  base64DecodeBytes,
  base64Encode,
  bytesEqual,
  inputBytes,
  isBase64,
  lastIndexOfAscii,
  toUint8Array,
  utf8Decode,
  utf8Encode,
  utf8EncodeSpliced,
} from "@posthorn/core";
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";

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
  it.each([
    "abc",
    "ab=c",
    "a===",
    "ab$d",
    "YQ==YQ==",
    "YQ=a",
    "====",
    "ab-_",
    "YWJj ZGVm",
    "YWJj\nZGVm",
    "YWJjZGV\u00e9",
    "YW\u0000j",
  ])("rejects %j", (text) => {
    expect(isBase64(text)).toBe(false);
    expect(() => base64Decode(text)).toThrowError(
      expect.objectContaining({ code: "MalformedInput" }),
    );
  });
});

describe("base64DecodeBytes", () => {
  it("decodes base64 given as its bytes as base64Decode decodes the text", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (data) => {
        const bytes = utf8Encode(base64Encode(data));
        expect(bytesEqual(base64DecodeBytes(bytes), data)).toBe(true);
      }),
    );
  });
  it("refuses bytes that are not standard base64, one wrong byte anywhere", () => {
    const text = utf8Encode(base64Encode(Uint8Array.from({ length: 3000 }, (_, i) => i & 0xff)));
    for (const bad of [0x20, 0x2d, 0x5f, 0x3d, 0x2a, 0xc1, 0x41 + 0x80, 0x00]) {
      for (const at of [0, 1, 1999, text.length - 3]) {
        const broken = Uint8Array.from(text);
        broken[at] = bad;
        expect(() => base64DecodeBytes(broken), `${bad} at ${at}`).toThrowError(
          expect.objectContaining({ code: "MalformedInput" }),
        );
      }
    }
  });
});

describe("base64Decode on random text", () => {
  // Node's decoder is lenient (it skips foreign characters, reads the URL-safe alphabet, stops at
  // padding), so base64Decode checks what it gave back; this holds that check to the
  // character-by-character reading of isBase64, and the bytes to the platform's atob.
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const char = fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...alphabet) },
    {
      weight: 1,
      // U+0141 and U+0130 have the low bytes of "A" and "0": Node's decoder reads only those.
      arbitrary: fc.constantFrom(
        "=",
        "-",
        "_",
        " ",
        "\n",
        "!",
        "\u00e9",
        "\u0000",
        "\u0141",
        "\u0130",
      ),
    },
  );
  it("accepts exactly what isBase64 accepts, with the bytes atob reads", () => {
    fc.assert(
      fc.property(fc.array(char, { maxLength: 24 }), (chars) => {
        const text = chars.join("");
        if (isBase64(text)) {
          const expected = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
          expect(bytesEqual(base64Decode(text), expected)).toBe(true);
        } else {
          expect(() => base64Decode(text)).toThrowError(
            expect.objectContaining({ code: "MalformedInput" }),
          );
        }
      }),
      { numRuns: 20_000 },
    );
  });
  it("rejects one foreign character anywhere in a long text", () => {
    const text = base64Encode(Uint8Array.from({ length: 3000 }, (_, i) => (i * 31) & 0xff));
    for (const bad of [" ", "-", "_", "=", "*", "\u00e9", "\u0141", "\u{1f600}"]) {
      for (const at of [0, 1, 1999, text.length - 3]) {
        const broken = text.slice(0, at) + bad + text.slice(at + 1);
        expect(() => base64Decode(broken), `${JSON.stringify(bad)} at ${at}`).toThrowError(
          expect.objectContaining({ code: "MalformedInput" }),
        );
      }
    }
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

// The helpers behind the JSON format's large binary data, in Node (Buffer) and as a runtime
// without Buffer runs them (the module loaded again with Buffer hidden).
describe("utf8EncodeSpliced, lastIndexOfAscii, asciiText", async () => {
  const node = { utf8EncodeSpliced, lastIndexOfAscii, asciiText };
  const saved = globalThis.Buffer;
  let web: typeof node;
  try {
    vi.resetModules();
    (globalThis as { Buffer?: unknown }).Buffer = undefined;
    web = await import("../src/bytes.js");
  } finally {
    globalThis.Buffer = saved;
  }
  it("loads the module again without Buffer", () => {
    expect(Buffer.isBuffer(node.utf8EncodeSpliced("a", "b", "c"))).toBe(true);
    expect(Buffer.isBuffer(web.utf8EncodeSpliced("a", "b", "c"))).toBe(false);
  });
  const ascii = fc.string({
    unit: fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)),
  });
  const any = fc.string({ unit: "binary" });

  for (const [runtime, impl] of [
    ["Node", node],
    ["no Buffer", web],
  ] as const) {
    it(`${runtime}: utf8EncodeSpliced gives the UTF-8 bytes of the joined text`, () => {
      fc.assert(
        fc.property(any, ascii, any, (before, middle, after) => {
          const out = impl.utf8EncodeSpliced(before, middle, after);
          expect(Array.from(out)).toEqual(Array.from(utf8Encode(before + middle + after)));
        }),
      );
    });

    it(`${runtime}: lastIndexOfAscii finds what String.lastIndexOf finds`, () => {
      fc.assert(
        fc.property(
          fc.uint8Array({ maxLength: 200 }).map((b) => b.map((x) => 0x61 + (x % 3))),
          fc.string({ unit: fc.constantFrom("a", "b", "c"), minLength: 1, maxLength: 4 }),
          fc.integer({ min: -5, max: 210 }),
          (bytes, needle, from) => {
            const text = String.fromCharCode(...bytes);
            const expected = from < 0 ? -1 : text.lastIndexOf(needle, from);
            // Also through a view that starts inside a larger buffer.
            const padded = new Uint8Array(bytes.length + 7).fill(0x61);
            padded.set(bytes, 3);
            const view = padded.subarray(3, 3 + bytes.length);
            expect(impl.lastIndexOfAscii(bytes, needle, from)).toBe(expected);
            expect(impl.lastIndexOfAscii(view, needle, from)).toBe(expected);
          },
        ),
      );
    });

    it(`${runtime}: asciiText reads ASCII bytes one character each, long ones too`, () => {
      fc.assert(
        fc.property(
          fc.oneof(
            ascii,
            ascii.map((t) => t.repeat(700)),
          ),
          (text) => {
            const bytes = utf8Encode(`..${text}`).subarray(2);
            expect(impl.asciiText(bytes)).toBe(text);
          },
        ),
      );
    });
  }
});

describe("inputBytes", () => {
  it("passes bytes through and views an ArrayBuffer or another view as bytes", () => {
    const bytes = new Uint8Array([1, 2, 3, 4]);
    expect(inputBytes(bytes, "x")).toBe(bytes);
    expect(inputBytes(bytes.buffer, "x")).toEqual(bytes);
    expect(inputBytes(new DataView(bytes.buffer, 1, 2), "x")).toEqual(new Uint8Array([2, 3]));
  });

  it("refuses anything else with MalformedInput saying what was given", () => {
    expect(() => inputBytes("{}", "json.decode")).toThrowError(
      /json.decode takes bytes .* not a string: encode the text first/,
    );
    expect(() => inputBytes(null, "x")).toThrowError(/not null$/);
    expect(() => inputBytes([1], "x")).toThrowError(/not an array$/);
    expect(() => inputBytes(7, "x")).toThrowError(
      expect.objectContaining({ code: "MalformedInput" }),
    );
  });
});
