import { isPosthornError } from "@posthorn/core";
import { protobuf } from "@posthorn/format-protobuf";
import { describeFormatProperties } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { field, HEAD, str } from "./proto-bytes.js";

// Arbitrary events round-trip (alone and in batches), arbitrary and mutated bytes end in an event
// or a typed error (>= 1,000 cases per property under CI=true). Length fields claiming gigabytes
// and deep JSON nesting have their named tests in hostile-input.test.ts.
describeFormatProperties(protobuf);

/** An attributes map entry (field 5): key, and a CloudEventAttributeValue with ce_string (3). */
const attr = (key: string, value: number[]) =>
  field(5, [...str(1, key), ...field(2, field(3, value))]);

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

describe("named attacks on the Protobuf format", () => {
  it("the hand-built event decodes (the attacks below differ from it in one place)", () => {
    const event = protobuf.decode(new Uint8Array([...HEAD, ...attr("subject", [0x61])]));
    expect(event.subject).toBe("a");
  });

  it("__proto__ as an attribute name is refused; constructor and prototype stay own values", () => {
    expectTyped(
      () => protobuf.decode(new Uint8Array([...HEAD, ...attr("__proto__", [0x78])])),
      ["InvalidEvent", "MalformedInput"],
    );
    for (const name of ["constructor", "prototype"]) {
      const event = protobuf.decode(
        new Uint8Array([...HEAD, ...attr(name, [0x78])]),
      ) as unknown as Record<string, unknown>;
      expect(Object.hasOwn(event, name) && event[name]).toBe("x");
    }
    expect(Object.keys(Object.prototype)).toEqual([]);
  });

  it("invalid UTF-8 in a required attribute, an extension and text data is MalformedInput", () => {
    const overlong = [0xc0, 0xa0];
    expectTyped(
      () => protobuf.decode(new Uint8Array([...field(1, overlong), ...HEAD.slice(3)])),
      ["MalformedInput"],
    );
    expectTyped(
      () => protobuf.decode(new Uint8Array([...HEAD, ...attr("subject", [0xed, 0xa0, 0x80])])),
      ["MalformedInput"],
    );
    expectTyped(
      () => protobuf.decode(new Uint8Array([...HEAD, ...field(7, [0xff, 0xfe])])),
      ["MalformedInput"],
    );
  });

  it("an attribute repeated with a different case is refused", () => {
    expectTyped(
      () => protobuf.decode(new Uint8Array([...HEAD, ...attr("Subject", [0x61])])),
      ["InvalidEvent", "MalformedInput"],
    );
    expectTyped(
      () => protobuf.decode(new Uint8Array([...HEAD, ...attr("ID", [0x32])])),
      ["InvalidEvent", "MalformedInput"],
    );
  });

  it("specversion other than 1.0 is refused", () => {
    for (const v of ["0.3", "1.1", "2.0", ""]) {
      const bytes = [...str(1, "1"), ...str(2, "/s"), ...str(3, v), ...str(4, "t")];
      expectTyped(() => protobuf.decode(new Uint8Array(bytes)), ["InvalidEvent", "MalformedInput"]);
    }
  });
});
