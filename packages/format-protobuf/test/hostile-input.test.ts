import { isPosthornError } from "@posthorn/core";
import { protobuf, protobufFormat } from "@posthorn/format-protobuf";
import { refusedOption } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { HEAD, str, varint } from "./proto-bytes.js";

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

describe("Protobuf decoding refuses lengths the input cannot hold", () => {
  const cases: Record<string, number[]> = {
    "an id claiming 4 GiB": [0x0a, ...varint(4 * GIB)],
    "binary_data claiming 2 GiB": [...HEAD, 0x32, ...varint(2 * GIB), 1, 2, 3],
    "an attributes entry claiming 1 GiB": [...HEAD, 0x2a, ...varint(GIB), 0x0a, 0x01, 0x61],
    "an attribute key claiming 3 GiB inside a short entry": [
      ...HEAD,
      0x2a,
      0x06,
      0x0a,
      ...varint(3 * GIB),
    ],
    "an attribute value overrunning its entry": [...HEAD, 0x2a, 0x04, 0x0a, 0x01, 0x61, 0x12, 0x7f],
    "an unknown field claiming 2^50 bytes": [...HEAD, 0x7a, ...varint(2 ** 50)],
    "a varint longer than ten bytes": [0x08, ...Array(11).fill(0xff), 0x01],
    "a group wire type": [...HEAD, 0x0b],
    "a known field with the wrong wire type": [0x08, 0x01],
    "field number zero": [0x02, 0x00],
    "a Timestamp with nanos out of range": [
      ...HEAD,
      0x2a,
      0x10,
      ...str(1, "time"),
      0x12,
      0x09,
      0x3a,
      0x07,
      0x10,
      ...varint(2 * 10 ** 9),
      0,
      0,
    ],
  };
  for (const [name, bytes] of Object.entries(cases)) {
    it(name, () => expectMalformedFast(() => protobuf.decode(new Uint8Array(bytes))));
  }

  it("a batch whose event claims 4 GiB", () => {
    expectMalformedFast(() =>
      protobuf.decodeBatch?.(new Uint8Array([0x0a, ...varint(4 * GIB), 0x0a])),
    );
  });

  it("JSON text data nested deeper than the limit", () => {
    const deep = `${"[".repeat(1000)}${"]".repeat(1000)}`;
    const bytes = [...HEAD, ...str(5, ""), 0x3a, ...varint(deep.length), ...Buffer.from(deep)];
    // The attributes entry above is empty (no key, no value) and carries nothing.
    const withType = [
      ...HEAD,
      0x2a,
      0x23,
      ...str(1, "datacontenttype"),
      0x12,
      0x12,
      ...str(3, "application/json"),
      0x3a,
      ...varint(deep.length),
      ...Buffer.from(deep),
    ];
    expect(protobuf.decode(new Uint8Array(bytes)).data).toBe(deep);
    expectMalformedFast(() => protobuf.decode(new Uint8Array(withType)));
  });

  it("refuses required attributes and data in the attributes map", () => {
    for (const key of ["id", "specversion", "data"]) {
      const entry = [...str(1, key), 0x12, 0x03, ...str(3, "x")];
      const bytes = [...HEAD, 0x2a, entry.length, ...entry];
      let thrown: unknown;
      try {
        protobuf.decode(new Uint8Array(bytes));
      } catch (err) {
        thrown = err;
      }
      expect(isPosthornError(thrown, "InvalidEvent"), key).toBe(true);
    }
  });

  it("skips unknown fields it can measure", () => {
    // field 15 varint, field 16 fixed64, field 13 fixed32, field 12 length-delimited
    const fixed64 = [0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8];
    const unknown = [0x78, 0x05, ...fixed64, 0x6d, 1, 2, 3, 4, ...str(12, "future")];
    const bytes = [...HEAD, ...unknown];
    expect(protobuf.decode(new Uint8Array(bytes)).id).toBe("1");
  });
});

describe("JSON text_data past the range of a double", () => {
  it("is MalformedInput, not an event whose data holds Infinity", () => {
    // id "1", source "/s", specversion "1.0", type "t", datacontenttype application/json,
    // text_data "[1e999]".
    const hex =
      "0a013112022f731a03312e302201742a250a0f64617461636f6e74656e747479706512121a106170706c69636174696f6e2f6a736f6e3a075b31653939395d";
    expect(() => protobuf.decode(Buffer.from(hex, "hex"))).toThrowError(
      expect.objectContaining({ code: "MalformedInput" }),
    );
  });
});

describe("protobufFormat({ maxDepth })", () => {
  it("refuses NaN, negatives and fractions with NotSupported, when the format is made", () => {
    // NaN compared false and turned the nesting limit of JSON data off.
    for (const [maxDepth, shown] of [
      [Number.NaN, "NaN"],
      [-1, "-1"],
      [2.5, "2.5"],
    ] as const) {
      expect(() => protobufFormat({ maxDepth })).toThrow(refusedOption("maxDepth", shown));
    }
    expect(() => protobufFormat({ maxDepth: Infinity })).not.toThrow();
  });
});
