import { decodeData, isPosthornError } from "@posthorn/core";
import { describe, expect, it } from "vitest";

// "café" in Latin-1: é is the single byte 0xe9, which is no UTF-8.
const latin1Cafe = new Uint8Array([0x63, 0x61, 0x66, 0xe9]);
const utf8 = (text: string) => new TextEncoder().encode(text);

function thrown(action: () => unknown): unknown {
  try {
    action();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe("decodeData under a text content type", () => {
  it.each([
    ["text/plain; charset=iso-8859-1", latin1Cafe],
    ["text/csv; charset=windows-1252", latin1Cafe],
    ["text/plain", new Uint8Array([0xff, 0xfe, 0x00])],
    ["application/xml", new Uint8Array([0x3c, 0x61, 0xe9, 0x2f, 0x3e])],
    ["text/plain; charset=utf-8", new Uint8Array([0x61, 0xc3])],
  ])("keeps bytes that are not UTF-8 text as the same bytes (%s)", (type, bytes) => {
    expect(decodeData(bytes, type)).toBe(bytes);
  });

  it("keeps bytes under a charset other than UTF-8 as bytes even where they are valid UTF-8", () => {
    // 0xc3 0xa9 is "Ã©" in Latin-1; taken for UTF-8 it would read as "é", other text.
    const bytes = new Uint8Array([0xc3, 0xa9]);
    expect(decodeData(bytes, "text/plain; charset=ISO-8859-1")).toBe(bytes);
    expect(decodeData(bytes, "application/x-thing; charset=latin1")).toBe(bytes);
  });

  it("reads UTF-8 text as a string, without a charset or under UTF-8 or US-ASCII", () => {
    for (const type of [
      "text/plain",
      "text/plain; charset=UTF-8",
      "text/plain; charset=utf8",
      "text/plain; charset=us-ascii",
      "application/xml",
    ]) {
      expect(decodeData(utf8("café"), type), type).toBe("café");
    }
  });

  it("still refuses JSON that is not UTF-8 with MalformedInput", () => {
    const err = thrown(() => decodeData(new Uint8Array([0x22, 0xe9, 0x22]), "application/json"));
    expect(isPosthornError(err, "MalformedInput")).toBe(true);
  });

  it("keeps bytes under application/octet-stream; charset=binary", () => {
    const bytes = new Uint8Array([0x61, 0x62]);
    expect(decodeData(bytes, "application/octet-stream; charset=binary")).toBe(bytes);
  });
});
