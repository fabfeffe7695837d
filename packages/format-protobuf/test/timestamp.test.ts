import { describe, expect, it } from "vitest";
import { fromProtoTimestamp, toProtoTimestamp } from "../src/timestamp.js";

describe("protobuf Timestamp conversion", () => {
  it("round-trips nanoseconds and offsets to the same instant", () => {
    const t = toProtoTimestamp("1985-04-12T23:20:50.52-08:00");
    expect(t).toEqual({ seconds: 482224850, nanos: 520000000 });
    expect(fromProtoTimestamp(t?.seconds as number, t?.nanos as number)).toBe(
      "1985-04-13T07:20:50.52Z",
    );
    expect(toProtoTimestamp("2024-01-01T00:00:00.1234567891Z")).toBeUndefined();
  });
});
