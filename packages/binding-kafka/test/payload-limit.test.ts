import { fromKafkaRecord, type KafkaDecodeOptions, toKafkaRecord } from "@posthorn/binding-kafka";
import { CloudEvent, isPosthornError } from "@posthorn/core";
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
