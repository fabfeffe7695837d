import { CloudEvent, isPosthornError } from "@posthorn/core";
import { avro, avroCompactFormat } from "@posthorn/format-avro";
import { describeFormatProperties } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { long } from "./avro-bytes.js";

// Arbitrary events round-trip, arbitrary and mutated bytes end in an event or a typed error
// (>= 1,000 cases per property under CI=true). Length fields claiming gigabytes and deep JSON
// nesting have their named tests in hostile-input.test.ts.
describeFormatProperties(avro);
// timestamp-micros cannot hold nanoseconds, so the compact format is exercised on the attacks only.

const bytesOf = (s: string) => [...Buffer.from(s, "latin1")];
const str = (s: string) => [...long(Buffer.byteLength(s, "latin1")), ...bytesOf(s)];

function expectTyped(decode: () => unknown, codes: readonly string[]): void {
  let thrown: unknown;
  try {
    decode();
  } catch (err) {
    thrown = err;
  }
  expect(isPosthornError(thrown), `expected a typed error, got ${String(thrown)}`).toBe(true);
  expect(codes).toContain((thrown as { code: string }).code);
}

/** The CloudEvents Avro record: an attribute map (string -> union) and a data union (1: null, 6: string). */
function record(attrs: Array<[string, number[]]>, data: number[] = long(1)): Uint8Array {
  const entries = attrs.flatMap(([k, v]) => [...str(k), ...v]);
  return new Uint8Array([...long(attrs.length), ...entries, ...long(0), ...data]);
}
// attribute union branches of the reference schema: 0 null, 1 boolean, 2 int, 3 string, 4 bytes
const s = (v: string) => [...long(3), ...str(v)];
const required: Array<[string, number[]]> = [
  ["specversion", s("1.0")],
  ["id", s("1")],
  ["source", s("/s")],
  ["type", s("t")],
];

describe("named attacks on the Avro format", () => {
  it("the hand-built record decodes (the attacks below differ from it in one place)", () => {
    expect(avro.decode(record(required)).id).toBe("1");
  });

  it("__proto__, constructor and prototype as attribute names pollute nothing", () => {
    // __proto__ is no valid attribute name; constructor and prototype are, and stay own values.
    expectTyped(
      () => avro.decode(record([...required, ["__proto__", s("x")]])),
      ["InvalidEvent", "MalformedInput"],
    );
    for (const name of ["constructor", "prototype"]) {
      const event = avro.decode(record([...required, [name, s("x")]])) as unknown as Record<
        string,
        unknown
      >;
      expect(Object.hasOwn(event, name) && event[name]).toBe("x");
    }
    expect(Object.keys(Object.prototype)).toEqual([]);
  });

  it("invalid UTF-8 in an attribute value and in text data is MalformedInput", () => {
    const bad = [...long(3), ...long(2), 0xc0, 0xa0]; // overlong encoding of a space
    expectTyped(() => avro.decode(record([...required, ["subject", bad]])), ["MalformedInput"]);
    const withText: Array<[string, number[]]> = [...required, ["datacontenttype", s("text/plain")]];
    expectTyped(
      () => avro.decode(record(withText, [...long(6), ...long(2), 0xed, 0xa0])),
      ["MalformedInput"],
    );
  });

  it("attributes repeated with a different case are refused", () => {
    expectTyped(
      () => avro.decode(record([...required, ["ID", s("2")]])),
      ["InvalidEvent", "MalformedInput"],
    );
  });

  it("specversion other than 1.0 is refused", () => {
    for (const v of ["0.3", "1.1", "2.0", ""]) {
      const attrs = required.map(([k, x]): [string, number[]] => [
        k,
        k === "specversion" ? s(v) : x,
      ]);
      expectTyped(() => avro.decode(record(attrs)), ["InvalidEvent", "MalformedInput"]);
    }
  });

  it("the compact format refuses a gigabyte length and a foreign specversion alike", () => {
    const compact = avroCompactFormat();
    expectTyped(() => compact.decode(new Uint8Array(long(2 ** 31))), ["MalformedInput"]);
    const ok = compact.encode(
      new CloudEvent({ specversion: "1.0", id: "1", source: "/s", type: "t" }),
    );
    expect(compact.decode(ok).id).toBe("1");
  });
});
