import {
  canonicalString,
  canonicalTimestamp,
  checkValue,
  isAbsoluteUri,
  isInteger,
  isTimestamp,
  isUriReference,
  isValidString,
  parseCanonical,
  parseTimestamp,
} from "@posthorn/core";
import { describe, expect, it } from "vitest";

describe("isInteger", () => {
  it("accepts the signed 32-bit range and nothing else", () => {
    expect(isInteger(0)).toBe(true);
    expect(isInteger(-2147483648)).toBe(true);
    expect(isInteger(2147483647)).toBe(true);
    expect(isInteger(2147483648)).toBe(false);
    expect(isInteger(-2147483649)).toBe(false);
    expect(isInteger(1.5)).toBe(false);
    expect(isInteger(Number.NaN)).toBe(false);
    expect(isInteger("1")).toBe(false);
  });
});

describe("isValidString", () => {
  it("accepts Unicode including astral characters", () => {
    expect(isValidString("héllo 🚀 𝄞 漢字 e\u0301")).toBe(true);
  });
  it.each([
    ["NUL", "\u0000"],
    ["unit separator", "\u001f"],
    ["DEL", "\u007f"],
    ["C1 control", "\u0085"],
    ["noncharacter U+FDD0", "\uFDD0"],
    ["noncharacter U+FFFE", "\uFFFE"],
    ["plane 1 noncharacter U+1FFFF", "\uD83F\uDFFF"],
    ["lone high surrogate", "a\uD800b"],
    ["lone low surrogate", "a\uDC00b"],
  ])("rejects %s", (_name, text) => {
    expect(isValidString(`ok ${text} ok`)).toBe(false);
  });
});

describe("URIs", () => {
  it.each([
    "https://example.com/a?b=c#d",
    "urn:uuid:1234",
    "mailto:a@b.c",
    "/relative",
    "../up",
    "a/b",
    "%41",
    "",
  ])("accepts URI-reference %j", (s) => expect(isUriReference(s)).toBe(true));
  it.each(["has space", 'quote"', "bad%zz", "tab\t", "ünï", "1abc:x"])(
    "rejects URI-reference %j",
    (s) => expect(isUriReference(s)).toBe(false),
  );
  it("an absolute URI needs a scheme", () => {
    expect(isAbsoluteUri("https://example.com")).toBe(true);
    expect(isAbsoluteUri("urn:x")).toBe(true);
    expect(isAbsoluteUri("/schemas/x")).toBe(false);
    expect(isAbsoluteUri("")).toBe(false);
  });
});

describe("timestamps", () => {
  it.each([
    "2018-04-05T17:31:00Z",
    "1985-04-12T23:20:50.52Z",
    "1996-12-19T16:39:57-08:00",
    "2024-05-01T10:00:00.123456789+05:30",
    "2024-02-29T00:00:00z",
    "0001-01-01T00:00:00Z",
  ])("accepts %s", (s) => expect(isTimestamp(s)).toBe(true));
  it.each([
    "2024-02-30T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "2024-13-01T00:00:00Z",
    "2024-01-01 00:00:00Z",
    "2024-01-01T24:00:00Z",
    "2024-01-01T00:00:00",
    "2024-01-01T00:00:00+25:00",
    "yesterday",
  ])("rejects %s", (s) => expect(isTimestamp(s)).toBe(false));
  it("compares instants at full precision across offsets", () => {
    expect(canonicalTimestamp("2024-05-01T10:00:00+05:30")).toBe(
      canonicalTimestamp("2024-05-01T04:30:00Z"),
    );
    expect(canonicalTimestamp("2024-05-01T10:00:00.000Z")).toBe(
      canonicalTimestamp("2024-05-01T10:00:00Z"),
    );
    expect(canonicalTimestamp("2024-05-01T10:00:00.123456789Z")).not.toBe(
      canonicalTimestamp("2024-05-01T10:00:00.123456788Z"),
    );
    expect(canonicalTimestamp("1985-04-12T23:20:50.52-08:00")).toBe("1985-04-13T07:20:50.52Z");
  });
  it("keeps years before 100 as they are", () => {
    expect(canonicalTimestamp("0050-06-01T00:00:00Z")).toBe("0050-06-01T00:00:00Z");
    expect(parseTimestamp("0050-06-01T00:00:00Z")?.epochSeconds).toBeLessThan(-60000000000);
  });
});

describe("canonical strings", () => {
  it("writes each type's canonical form", () => {
    expect(canonicalString(true)).toBe("true");
    expect(canonicalString(false)).toBe("false");
    expect(canonicalString(-42)).toBe("-42");
    expect(canonicalString(new Uint8Array([0, 255, 1]))).toBe("AP8B");
    expect(canonicalString("text")).toBe("text");
  });
  it("reads canonical strings back into typed values", () => {
    expect(parseCanonical("true", "Boolean")).toBe(true);
    expect(parseCanonical("false", "Boolean")).toBe(false);
    expect(parseCanonical("-2147483648", "Integer")).toBe(-2147483648);
    expect(parseCanonical("AP8B", "Binary")).toEqual(new Uint8Array([0, 255, 1]));
    expect(parseCanonical("2024-01-01T00:00:00Z", "Timestamp")).toBe("2024-01-01T00:00:00Z");
  });
  it.each([
    ["TRUE", "Boolean"],
    ["1", "Boolean"],
    ["2147483648", "Integer"],
    ["1.5", "Integer"],
    ["0x10", "Integer"],
    ["", "Integer"],
    ["AP8", "Binary"],
    ["not a time", "Timestamp"],
    ["/relative", "URI"],
  ] as const)("rejects %j as %s with InvalidEvent", (text, type) => {
    expect(() => parseCanonical(text, type, "ext")).toThrowError(
      expect.objectContaining({ code: "InvalidEvent", attribute: "ext" }),
    );
  });
  it("checkValue names the attribute", () => {
    expect(() => checkValue(1.5, "Integer", "count")).toThrowError(/count/);
    expect(() => checkValue("x", "Boolean", "flag")).toThrowError(
      expect.objectContaining({ attribute: "flag" }),
    );
  });
});
