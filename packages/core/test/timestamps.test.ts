import { formatInstant, parseTimestamp } from "@posthorn/core";
import { describe, expect, it } from "vitest";

// parseTimestamp and formatInstant work by calendar arithmetic, not Date: check them against Date
// across the whole RFC 3339 range (Date holds milliseconds, so whole seconds are compared).
describe("timestamps by calendar arithmetic", () => {
  it("formatInstant agrees with Date across years 0001 to 9999", () => {
    const samples = [-62135596800, -1, 0, 1, 68169600, 951782400, 1714557600, 253402300799];
    for (let i = 0; i < 2000; i++)
      samples.push(Math.floor(-62135596800 + ((i * 2654435761) % 315537897599)));
    for (const s of samples) {
      const iso = new Date(s * 1000).toISOString();
      expect(formatInstant(s, "5"), String(s)).toBe(`${iso.slice(0, 19)}.5Z`);
      expect(formatInstant(s, "500"), String(s)).toBe(`${iso.slice(0, 19)}.5Z`);
    }
  });

  it("parseTimestamp agrees with Date on valid times and refuses invalid ones", () => {
    for (let i = 0; i < 500; i++) {
      const d = new Date(-62135596800000 + ((i * 7919 * 86400007) % 315537897599000));
      const t = parseTimestamp(d.toISOString());
      expect(t?.epochSeconds, d.toISOString()).toBe(Math.floor(d.getTime() / 1000));
    }
    expect(parseTimestamp("1985-04-12T23:20:50.52-08:00")).toEqual({
      epochSeconds: 482224850,
      fraction: "52",
    });
    expect(parseTimestamp("2024-05-01t10:00:00.000z")).toEqual(
      parseTimestamp("2024-05-01T10:00:00Z"),
    );
    expect(parseTimestamp("2016-12-31T23:59:60Z")?.epochSeconds).toBe(1483228800);
    for (const bad of [
      "2023-02-29T00:00:00Z",
      "2024-02-30T00:00:00Z",
      "2024-05-01T10:00:00",
      "2024-05-01T10:00:00.Z",
      "2024-05-01T24:00:00Z",
      "2024-13-01T00:00:00Z",
      "2024-05-01T10:00:00+24:00",
      "yesterday at noon",
      "2024-05-01 10:00:00Z",
    ]) {
      expect(parseTimestamp(bad), bad).toBeUndefined();
    }
  });
});
