import {
  CloudEvent,
  decodeData,
  differences,
  encodeData,
  equivalent,
  isPosthornError,
} from "@posthorn/core";
import { describe, expect, it } from "vitest";

// "café" in Latin-1: é is the single byte 0xe9, which is no UTF-8.
const latin1Cafe = new Uint8Array([0x63, 0x61, 0x66, 0xe9]);
const utf8 = (text: string) => new TextEncoder().encode(text);
// The bytes as plain numbers: in Node, UTF-8 comes back as a Buffer, which toEqual tells apart.
const plain = (bytes: Uint8Array | undefined) => (bytes === undefined ? undefined : [...bytes]);

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

describe("encodeData of a string under a text content type", () => {
  it("writes the string in the Latin-1 charset its content type names", () => {
    for (const type of [
      "text/plain; charset=iso-8859-1",
      "text/plain; charset=ISO-8859-1",
      "text/plain; charset=latin1",
      'text/csv; charset="ISO_8859-1:1987"',
    ]) {
      expect(plain(encodeData("café", type)), type).toEqual(plain(latin1Cafe));
    }
  });

  it("writes US-ASCII as ASCII bytes", () => {
    expect(plain(encodeData("abc", "text/plain; charset=us-ascii"))).toEqual([0x61, 0x62, 0x63]);
  });

  it("refuses a character the charset has not with InvalidEvent on data", () => {
    for (const [text, type, point] of [
      ["price: 5€", "text/plain; charset=iso-8859-1", "U+20AC at index 8"],
      ["café", "text/plain; charset=us-ascii", "U+00E9 at index 3"],
      ["a🌍", "text/plain; charset=latin1", "U+1F30D at index 1"],
    ] as const) {
      const err = thrown(() => encodeData(text, type));
      expect(isPosthornError(err, "InvalidEvent"), `${text} under ${type}`).toBe(true);
      expect((err as { attribute?: string }).attribute).toBe("data");
      expect((err as Error).message).toContain(point);
    }
  });

  it("refuses a charset it cannot write with NotSupported naming the charset", () => {
    for (const charset of ["windows-1252", "utf-16", "shift_jis", "binary"]) {
      const err = thrown(() => encodeData("abc", `text/plain; charset=${charset}`));
      expect(isPosthornError(err, "NotSupported"), charset).toBe(true);
      expect((err as { attribute?: string }).attribute).toBe("datacontenttype");
      expect((err as Error).message).toContain(`"${charset}"`);
      expect((err as { retryable?: boolean }).retryable).toBe(false);
    }
    // Bytes are the way to send such data: they go as they are.
    expect(encodeData(latin1Cafe, "text/csv; charset=windows-1252")).toBe(latin1Cafe);
  });

  it("writes UTF-8 without a charset, under UTF-8, under a type that is not text, and JSON", () => {
    const bytes = plain(utf8("café"));
    expect(plain(encodeData("café", "text/plain"))).toEqual(bytes);
    expect(plain(encodeData("café", "text/plain; charset=UTF-8"))).toEqual(bytes);
    expect(plain(encodeData("café", "application/octet-stream; charset=iso-8859-1"))).toEqual(
      bytes,
    );
    // RFC 8259 8.1: JSON is UTF-8; a charset parameter means nothing there.
    expect(plain(encodeData("café", "application/json; charset=iso-8859-1"))).toEqual(
      plain(utf8('"café"')),
    );
  });
});

describe("text data under a Latin-1 charset, sent and received", () => {
  const event = (data: string | Uint8Array) =>
    new CloudEvent({
      specversion: "1.0",
      id: "1",
      source: "/s",
      type: "t",
      datacontenttype: "text/plain; charset=iso-8859-1",
      data,
    });

  it("comes back as the Latin-1 bytes, equivalent to the string sent", () => {
    const sent = event("café");
    const bytes = encodeData(sent.data, sent.datacontenttype) as Uint8Array;
    const received = event(decodeData(bytes, sent.datacontenttype) as Uint8Array);
    expect(received.data).toEqual(latin1Cafe);
    expect(differences(sent, received)).toEqual([]);
    expect(equivalent(sent, event(utf8("café")))).toBe(false);
  });
});
