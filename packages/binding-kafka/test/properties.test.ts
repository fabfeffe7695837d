import {
  fromKafkaRecord,
  type KafkaHeaders,
  type KafkaRecord,
  readKafkaRecord,
  toKafkaRecord,
} from "@posthorn/binding-kafka";
import { avro } from "@posthorn/format-avro";
import { json } from "@posthorn/format-json";
import { protobuf } from "@posthorn/format-protobuf";
import {
  arbitraryHeaders,
  contentModePaths,
  describeMappingProperties,
  expectTypedError,
} from "@posthorn/testkit";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const formats = [json, avro, protobuf];

/** The record as kafkajs delivers it: every header value a Buffer. */
function asReceived(r: ReturnType<typeof toKafkaRecord>): KafkaRecord {
  const headers: Record<string, Buffer> = {};
  for (const [name, value] of Object.entries(r.headers)) headers[name] = Buffer.from(value);
  return { key: r.key, value: r.value === null ? null : Buffer.from(r.value), headers };
}

/** What the subscriber does with a record: an event, a Message, or a typed error. */
function receive(record: KafkaRecord): unknown {
  const read = readKafkaRecord(record, { formats });
  if (read.error) throw read.error;
  return read.event ?? read.message;
}

const required = { ce_specversion: "1.0", ce_id: "1", ce_source: "/s", ce_type: "t" };

const headerValue = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.uint8Array({ maxLength: 20 }).map((b) => Buffer.from(b)),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
);

const hostileMessages: fc.Arbitrary<KafkaRecord> = fc.record({
  key: fc.oneof(fc.constant(null), fc.string({ maxLength: 8 })),
  value: fc.oneof(
    fc.constant(null),
    fc.uint8Array({ maxLength: 128 }).map((b) => Buffer.from(b)),
    fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v))),
  ),
  headers: fc.oneof(
    arbitraryHeaders("ce_") as fc.Arbitrary<KafkaHeaders>,
    arbitraryHeaders("CE_").map((h): KafkaHeaders => ({ ...required, ...h })),
    arbitraryHeaders("ce_").map((h): KafkaHeaders => ({ ...required, ...h })),
    fc.dictionary(
      fc.constantFrom("ce_id", "ce_time", "content-type", "ce_specversion", "x"),
      headerValue,
    ) as fc.Arbitrary<KafkaHeaders>,
  ),
});

describeMappingProperties({
  name: "kafka",
  paths: contentModePaths(
    (e, mode) => fromKafkaRecord(asReceived(toKafkaRecord(e, mode)), { formats }),
    formats,
  ),
  hostileMessages,
  decode: receive,
});

const buf = (s: string) => Buffer.from(s);

// Named attacks not already in mapping.test.ts (which covers ce___proto__ names, repeated
// headers, prefixes differing in case, invalid UTF-8 header values and the size limits).
describe("named attacks on the Kafka mapping", () => {
  it("a __proto__ member of JSON data stays a plain member", () => {
    const data = '{"__proto__":{"polluted":true}}';
    const binary = fromKafkaRecord(
      { key: null, value: buf(data), headers: { ...required, "content-type": "application/json" } },
      { formats },
    );
    const structured = fromKafkaRecord(
      {
        key: null,
        value: buf(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":${data}}`),
        headers: { "content-type": json.contentType },
      },
      { formats },
    );
    for (const e of [binary, structured])
      expect(Object.hasOwn(e.data as object, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("deeply nested JSON data is MalformedInput, not a stack overflow", () => {
    const deep = buf(`${"[".repeat(100_000)}${"]".repeat(100_000)}`);
    expectTypedError(
      () =>
        fromKafkaRecord(
          { key: null, value: deep, headers: { ...required, "content-type": "application/json" } },
          { formats },
        ),
      ["MalformedInput"],
    );
  });

  it("invalid UTF-8 in text data arrives as the bytes sent (text that is not UTF-8 stays bytes)", () => {
    const bad = new Uint8Array([0x61, 0xf0, 0x28, 0x8c, 0x28]);
    const event = fromKafkaRecord(
      {
        key: null,
        value: Buffer.from(bad),
        headers: { ...required, "content-type": "text/plain; charset=utf-8" },
      },
      { formats },
    );
    // A view of the record's Buffer: the bytes, not a copy.
    expect(event.data).toBeInstanceOf(Uint8Array);
    expect(Uint8Array.from(event.data as Uint8Array)).toEqual(bad);
  });

  it("attribute names differing in case are refused, not merged", () => {
    expectTypedError(
      () =>
        fromKafkaRecord(
          { key: null, value: null, headers: { ...required, ce_ID: "2" } },
          { formats },
        ),
      ["InvalidEvent", "MalformedInput"],
    );
  });

  it("specversion other than 1.0 is refused in binary and structured mode", () => {
    for (const v of ["0.3", "1.1", "2.0"]) {
      expectTypedError(
        () =>
          fromKafkaRecord(
            { key: null, value: null, headers: { ...required, ce_specversion: v } },
            { formats },
          ),
        ["InvalidEvent", "MalformedInput"],
      );
      expectTypedError(
        () =>
          fromKafkaRecord(
            {
              key: null,
              value: buf(JSON.stringify({ specversion: v, id: "1", source: "/s", type: "t" })),
              headers: { "content-type": json.contentType },
            },
            { formats },
          ),
        ["InvalidEvent", "MalformedInput"],
      );
    }
  });
});
