import { CloudEvent } from "@posthorn/core";
import { AVRO_COMPACT_CONTENT_TYPE, avroCompactFormat } from "@posthorn/format-avro";
import { describe, expect, it } from "vitest";
import { long } from "./avro-bytes.js";

const compact = avroCompactFormat();
const base = { specversion: "1.0", id: "1", source: "/s", type: "t" } as const;

describe("compact Avro format", () => {
  it("announces the working draft's media type", () => {
    expect(compact.contentType).toBe(AVRO_COMPACT_CONTENT_TYPE);
    expect(AVRO_COMPACT_CONTENT_TYPE).toBe("application/cloudevents+avro-compact");
  });

  for (const [time, expected] of [
    ["0001-01-01T00:00:00.000001Z", "0001-01-01T00:00:00.000001Z"],
    ["0001-01-01T05:29:59+05:30", "0000-12-31T23:59:59Z"],
    ["1800-06-15T12:00:00.5Z", "1800-06-15T12:00:00.5Z"],
    ["1969-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.999999Z"],
    ["2024-05-01T10:00:00+05:30", "2024-05-01T04:30:00Z"],
    ["2200-01-01T00:00:00.000Z", "2200-01-01T00:00:00Z"],
    ["9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"],
  ] as const) {
    it(`carries time ${time} as ${expected}`, () => {
      const back = compact.decode(compact.encode(new CloudEvent({ ...base, time })));
      expect(back.time).toBe(expected);
    });
  }

  it("writes datacontenttype application/json for JSON data that names none", () => {
    const back = compact.decode(compact.encode(new CloudEvent({ ...base, data: { a: 1 } })));
    expect(back.datacontenttype).toBe("application/json");
    expect(back.data).toEqual({ a: 1 });
  });

  it("refuses an extension the map holds twice with MalformedInput, as the other Avro format does", () => {
    const str = (s: string) => [...long(s.length), ...new TextEncoder().encode(s)];
    const bytes = new Uint8Array([
      ...str("1"),
      ...str("/s"),
      ...str("t"),
      0, // datacontenttype: null
      0, // dataschema: null
      0, // subject: null
      0, // time: null
      ...long(2),
      ...str("ext"),
      ...long(3), // string branch
      ...str("a"),
      ...str("ext"),
      ...long(3),
      ...str("b"),
      0, // end of the map
      ...long(1), // data: null
    ]);
    expect(() => compact.decode(bytes)).toThrowError(
      expect.objectContaining({
        code: "MalformedInput",
        message: expect.stringContaining("repeats"),
      }),
    );
  });

  it("says which a time it cannot carry is: finer than a microsecond, or outside 0000 to 9999 in UTC", () => {
    for (const [time, reason] of [
      ["2024-01-01T00:00:00.1234567Z", "finer than a microsecond"],
      ["9999-12-31T23:00:00-05:00", "outside the years 0000 to 9999"],
      ["0000-01-01T00:00:00+01:00", "outside the years 0000 to 9999"],
    ] as const) {
      expect(() => compact.encode(new CloudEvent({ ...base, time }))).toThrowError(
        expect.objectContaining({
          code: "InvalidEvent",
          attribute: "time",
          message: expect.stringContaining(reason),
        }),
      );
    }
  });

  it("refuses specversion other than 1.0 at encoding", () => {
    const unchecked = { ...base, specversion: "0.3" };
    expect(() => compact.encode(unchecked as never)).toThrow(
      expect.objectContaining({ name: "PosthornError" }),
    );
  });
});
