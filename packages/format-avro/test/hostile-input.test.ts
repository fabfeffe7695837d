import { isPosthornError } from "@posthorn/core";
import { avro, avroCompactFormat, avroDataCodec, avroFormat } from "@posthorn/format-avro";
import { refusedOption } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { long } from "./avro-bytes.js";

const str = (s: string) => [...long(s.length), ...Buffer.from(s)];
const GIB = 2 ** 30;

function expectMalformedFast(decode: () => unknown): void {
  const started = performance.now();
  let thrown: unknown;
  try {
    decode();
  } catch (err) {
    thrown = err;
  }
  expect(isPosthornError(thrown, "MalformedInput"), String(thrown)).toBe(true);
  expect(performance.now() - started).toBeLessThan(100);
}

describe("Avro decoding refuses lengths and counts the input cannot hold", () => {
  const compact = avroCompactFormat();
  const cases: Record<string, number[]> = {
    "an attribute map claiming 2^40 entries": [...long(2 ** 40), ...str("id")],
    "a negative block count claiming 2^40 entries": [...long(-(2 ** 40)), ...long(10)],
    "an attribute name claiming 4 GiB": [...long(1), ...long(4 * GIB)],
    "an attribute value claiming 2 GiB of bytes": [
      ...long(1),
      ...str("x"),
      ...long(4),
      ...long(2 * GIB),
    ],
    "data bytes claiming 8 GiB": [0, ...long(0), ...long(8 * GIB)],
    "a data array claiming 2^50 items": [0, ...long(4), ...long(2 ** 50)],
    "a data map claiming 2^31 members": [0, ...long(3), ...long(2 ** 31)],
    "a varint longer than ten bytes": [...Array(12).fill(0xff)],
    "an unknown union branch": [0, ...long(9)],
  };
  for (const [name, bytes] of Object.entries(cases)) {
    it(name, () => expectMalformedFast(() => avro.decode(new Uint8Array(bytes))));
  }

  it("JSON data nested deeper than the limit", () => {
    // data: array of boxes, each box { value: array of boxes ... } 1000 levels deep
    const level = [...long(1), ...long(1), ...str("value"), ...long(3)];
    const bytes = [0, ...long(4), ...Array(1000).fill(level).flat()];
    expectMalformedFast(() => avro.decode(new Uint8Array(bytes)));
  });

  it("compact: an id claiming 4 GiB and an extension map claiming 2^40 entries", () => {
    expectMalformedFast(() => compact.decode(new Uint8Array(long(4 * GIB))));
    const head = [...str("1"), ...str("/s"), ...str("t"), 0, 0, 0, 0];
    expectMalformedFast(() => compact.decode(new Uint8Array([...head, ...long(2 ** 40)])));
  });

  it("data codec: arrays, strings and zero-size items beyond the input", () => {
    const ints = avroDataCodec({ type: "array", items: "int" });
    expectMalformedFast(() => ints.decode(new Uint8Array(long(2 ** 40))));
    const nulls = avroDataCodec({ type: "array", items: "null" });
    expectMalformedFast(() => nulls.decode(new Uint8Array(long(2 ** 50))));
    const text = avroDataCodec("string");
    expectMalformedFast(() => text.decode(new Uint8Array(long(4 * GIB))));
  });

  it("data codec: refuses a __proto__ map key", () => {
    const map = avroDataCodec({ type: "map", values: "int" });
    const bytes = [...long(1), ...str("__proto__"), ...long(1), 0];
    expectMalformedFast(() => map.decode(new Uint8Array(bytes)));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("refuses trailing bytes after the record", () => {
    const bytes = avro.encode({ specversion: "1.0", id: "1", source: "/s", type: "t" });
    expectMalformedFast(() => avro.decode(new Uint8Array([...bytes, 0])));
  });

  it("keeps a __proto__ member of JSON data as a plain member", () => {
    const data = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}');
    const event = { specversion: "1.0", id: "1", source: "/s", type: "t", data } as const;
    const back = avro.decode(avro.encode(event)).data as Record<string, unknown>;
    expect(Object.hasOwn(back, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
  });
});

describe("data doubles that are no JSON number", () => {
  it("refuses NaN and the infinities in the data union", () => {
    // specversion 1.0, id 1, source /s, type t, datacontenttype application/json; then the data
    // union's double branch (index 5) holding `nan`.
    const head =
      "0a167370656376657273696f6e0606312e300469640602310c736f7572636506042f7308747970650602741e64617461636f6e74656e747479706506206170706c69636174696f6e2f6a736f6e00";
    for (const double of ["000000000000f87f", "000000000000f07f", "000000000000f0ff"]) {
      expect(() => avro.decode(Buffer.from(`${head}0a${double}`, "hex")), double).toThrowError(
        expect.objectContaining({ code: "MalformedInput" }),
      );
    }
    // A finite double there is data all the same.
    expect(avro.decode(Buffer.from(`${head}0a000000000000f03f`, "hex")).data).toBe(1);
  });
});

describe("decoding limits given to the Avro factories", () => {
  it("refuse NaN, negatives and fractions with NotSupported, naming the limit", () => {
    // NaN compared false and turned the limit off.
    const cases: [() => unknown, string, string][] = [
      [() => avroFormat({ maxDepth: Number.NaN }), "maxDepth", "NaN"],
      [() => avroCompactFormat({ maxDepth: -1 }), "maxDepth", "-1"],
      [() => avroDataCodec("string", { maxDepth: 2.5 }), "maxDepth", "2.5"],
      [() => avroDataCodec("string", { maxZeroSizeItems: Number.NaN }), "maxZeroSizeItems", "NaN"],
    ];
    for (const [make, option, shown] of cases) {
      expect(make).toThrow(refusedOption(option, shown));
    }
    expect(() =>
      avroDataCodec("string", { maxZeroSizeItems: Infinity, maxDepth: 0 }),
    ).not.toThrow();
  });
});
