import {
  fromKafkaRecord,
  type KafkaDecodeOptions,
  readKafkaRecord,
  toKafkaRecord,
} from "@posthorn/binding-kafka";
import { CloudEvent, isPosthornError } from "@posthorn/core";
import { refusedOption } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { asReceived } from "./wire.js";

// maxPayloadBytes is the size limit's name in every binding; maxValueBytes is its former name here.

/** A binary-mode record, as a client delivers it, whose value is `size` bytes of octets. */
function record(size: number) {
  const event = new CloudEvent({
    specversion: "1.0",
    id: "limit-1",
    source: "/tests",
    type: "t",
    datacontenttype: "application/octet-stream",
    data: new Uint8Array(size),
  });
  return asReceived(toKafkaRecord(event));
}

function tooLarge(size: number, options: KafkaDecodeOptions): boolean {
  try {
    fromKafkaRecord(record(size), options);
    return false;
  } catch (err) {
    if (isPosthornError(err, "PayloadTooLarge")) return true;
    throw err;
  }
}

describe("fromKafkaRecord size limit", () => {
  it("maxPayloadBytes limits the value", () => {
    expect(tooLarge(101, { maxPayloadBytes: 100 })).toBe(true);
    expect(tooLarge(100, { maxPayloadBytes: 100 })).toBe(false);
  });

  it("the deprecated maxValueBytes still limits the value", () => {
    expect(tooLarge(101, { maxValueBytes: 100 })).toBe(true);
    expect(tooLarge(100, { maxValueBytes: 100 })).toBe(false);
  });

  it("maxPayloadBytes wins when both are given", () => {
    expect(tooLarge(150, { maxPayloadBytes: 200, maxValueBytes: 100 })).toBe(false);
    expect(tooLarge(150, { maxPayloadBytes: 100, maxValueBytes: 200 })).toBe(true);
  });
});

describe("what a limit's error says", () => {
  it("names the option that set the limit, and that raising it accepts the record", () => {
    const message = (options: KafkaDecodeOptions, rec = record(101)) =>
      readKafkaRecord(rec, options).error?.message;
    expect(message({ maxPayloadBytes: 100 })).toBe(
      "record value of 101 bytes exceeds the limit of 100 (maxPayloadBytes): raise maxPayloadBytes to accept it",
    );
    expect(message({ maxValueBytes: 100 })).toMatch(/\(maxValueBytes\): raise maxValueBytes/);
    expect(message({}, record(8 * 1024 * 1024 + 1))).toMatch(
      /limit of 8388608 \(maxPayloadBytes, by default\): raise maxPayloadBytes/,
    );
    const headers = Object.fromEntries(
      Array.from({ length: 300 }, (_, i) => [`h${i}`, Buffer.from("v")]),
    );
    const many = { ...record(1), headers: { ...record(1).headers, ...headers } };
    expect(message({}, many)).toBe(
      "the record has more than 256 headers (maxHeaders, by default): raise maxHeaders to accept it",
    );
  });
});

describe("decoding limits given per call", () => {
  it("fromKafkaRecord and readKafkaRecord refuse NaN, negatives and fractions, naming the limit", () => {
    // NaN compared false and turned the limit off (the record decoded); -1 refused every record.
    const cases: [KafkaDecodeOptions, string, string][] = [
      [{ maxPayloadBytes: Number.NaN }, "maxPayloadBytes", "NaN"],
      [{ maxValueBytes: -1 }, "maxValueBytes", "-1"],
      [{ maxHeaders: 1.5 }, "maxHeaders", "1.5"],
      [{ json: { maxDepth: Number.NaN } }, "json.maxDepth", "NaN"],
    ];
    for (const [options, option, shown] of cases) {
      expect(() => fromKafkaRecord(record(10), options)).toThrow(refusedOption(option, shown));
      expect(() => readKafkaRecord(record(10), options)).toThrow(refusedOption(option, shown));
    }
    expect(fromKafkaRecord(record(10), { maxPayloadBytes: Infinity }).id).toBe("limit-1");
  });
});
