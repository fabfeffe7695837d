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
