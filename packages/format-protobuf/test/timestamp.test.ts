import { formatInstant } from "@posthorn/core";
import { describe, expect, it } from "vitest";
import { formatUtc, fromProtoTimestamp, toProtoTimestamp } from "../src/timestamp.js";

describe("protobuf Timestamp conversion", () => {
  it("formats like core's formatInstant across the whole range", () => {
    const samples = [-62135596800, -1, 0, 1, 68169600, 951782400, 1714557600, 253402300799];
    for (let i = 0; i < 2000; i++) {
      samples.push(Math.floor(-62135596800 + ((i * 2654435761) % 315537897599)));
    }
    for (const s of samples) expect(formatUtc(s, "5"), String(s)).toBe(formatInstant(s, "5"));
  });

  it("round-trips nanoseconds and offsets to the same instant", () => {
    const t = toProtoTimestamp("1985-04-12T23:20:50.52-08:00");
    expect(t).toEqual({ seconds: 482224850, nanos: 520000000 });
    expect(fromProtoTimestamp(t?.seconds as number, t?.nanos as number)).toBe(
      "1985-04-13T07:20:50.52Z",
    );
    expect(toProtoTimestamp("2024-01-01T00:00:00.1234567891Z")).toBeUndefined();
  });
});

describe("parseRfc3339", () => {
  it("agrees with core's parseTimestamp", async () => {
    const { parseTimestamp } = await import("@posthorn/core");
    const { parseRfc3339 } = await import("../src/timestamp.js");
    const texts = [
      "2024-05-01T10:00:00Z",
      "2024-05-01t10:00:00.000z",
      "1985-04-12T23:20:50.52-08:00",
      "2024-05-01T10:00:00+05:30",
      "2024-02-29T23:59:59.999999999Z",
      "2023-02-29T00:00:00Z",
      "2024-02-30T00:00:00Z",
      "2016-12-31T23:59:60Z",
      "0001-01-01T00:00:00Z",
      "9999-12-31T23:59:59.1Z",
      "1969-12-31T23:59:59.5Z",
      "2024-05-01T10:00:00",
      "2024-05-01T10:00:00.Z",
      "2024-05-01T24:00:00Z",
      "2024-13-01T00:00:00Z",
      "2024-05-01T10:00:00+24:00",
      "yesterday at noon",
      "2024-05-01 10:00:00Z",
    ];
    for (let i = 0; i < 500; i++) {
      const d = new Date(-62135596800000 + ((i * 7919 * 86400007) % 315537897599000));
      texts.push(d.toISOString());
    }
    for (const t of texts) expect(parseRfc3339(t), t).toEqual(parseTimestamp(t));
  });
});
