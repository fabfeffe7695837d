import { CloudEvent, differences } from "@posthorn/core";
import { avroCompactFormat } from "@posthorn/format-avro";
import { describe, expect, it } from "vitest";

const compact = avroCompactFormat();
const event = (datacontenttype: string, data: Uint8Array | string) =>
  new CloudEvent({ specversion: "1.0", id: "1", source: "/s", type: "t", datacontenttype, data });

describe("compact Avro format, bytes under a text content type", () => {
  // "café" in Latin-1: é is the single byte 0xe9, no UTF-8.
  const latin1 = new Uint8Array([0x63, 0x61, 0x66, 0xe9]);

  it.each([
    ["text/plain; charset=iso-8859-1", latin1],
    ["text/csv; charset=windows-1252", latin1],
    ["text/plain", new Uint8Array([0xff, 0xfe, 0x00])],
    ["application/xml", new Uint8Array([0x3c, 0x61, 0xe9, 0x2f, 0x3e])],
    ["application/octet-stream; charset=binary", new Uint8Array([0x80, 0x81])],
  ])("reads bytes that are not UTF-8 back as the same bytes (%s)", (type, bytes) => {
    const back = compact.decode(compact.encode(event(type, bytes)));
    expect(back.data).toEqual(bytes);
    expect(differences(event(type, bytes), back)).toEqual([]);
  });

  it("keeps bytes under a Latin-1 charset as bytes even when they happen to be valid UTF-8", () => {
    // 0xc3 0xa9 is "Ã©" in Latin-1, and would read as "é" taken for UTF-8.
    const bytes = new Uint8Array([0xc3, 0xa9]);
    const sent = event("text/plain; charset=ISO-8859-1", bytes);
    expect(compact.decode(compact.encode(sent)).data).toEqual(bytes);
    const text = event("text/plain; charset=ISO-8859-1", "Ã©");
    expect(differences(text, compact.decode(compact.encode(text)))).toEqual([]);
  });

  it("still reads UTF-8 text as a string", () => {
    expect(compact.decode(compact.encode(event("text/plain", "café"))).data).toBe("café");
    const utf8 = new TextEncoder().encode("café");
    expect(compact.decode(compact.encode(event("text/plain", utf8))).data).toBe("café");
  });

  it("writes a string under a Latin-1 charset as Latin-1, read back as those bytes", () => {
    const sent = event("text/plain; charset=iso-8859-1", "café");
    const back = compact.decode(compact.encode(sent));
    expect(back.data).toEqual(latin1);
    expect(differences(sent, back)).toEqual([]);
  });
});
