import {
  canonicalTimestamp,
  dateToTimestamp,
  formatInstant,
  isTimestamp,
  parseTimestamp,
} from "@posthorn/core";
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

describe("dateToTimestamp", () => {
  it("writes what toISOString writes, for every year 0-9999 and the edges of each field", () => {
    const edges = [
      Date.UTC(0, 0, 1),
      Date.UTC(9, 11, 31, 23, 59, 59, 999),
      Date.UTC(99, 0, 1, 0, 0, 0, 1),
      Date.UTC(999, 5, 15, 12, 30, 30, 10),
      Date.UTC(1970, 0, 1),
      -1,
      Date.UTC(2000, 1, 29, 9, 5, 7, 100),
      Date.UTC(2024, 4, 1, 10, 0, 0, 0),
      Date.UTC(9999, 11, 31, 23, 59, 59, 999),
    ];
    // Years 0-99 through Date.UTC mean 1900-1999; setUTCFullYear gives the real ones.
    const lowYears = [0, 9, 99, 999].map((y) => new Date(0).setUTCFullYear(y, 2, 4));
    let seed = 7;
    const random = Array.from({ length: 2000 }, () => {
      seed = (seed * 48271) % 2147483647;
      return -62167219200000 + (seed / 2147483647) * (253402300799999 + 62167219200000);
    });
    for (const ms of [...edges, ...lowYears, ...random.map(Math.floor)]) {
      const d = new Date(ms);
      expect(dateToTimestamp(d)).toBe(d.toISOString());
    }
  });

  it("leaves years outside 0-9999 to toISOString, and refuses an invalid date as it does", () => {
    for (const ms of [-62167219200001, 253402300800000, 8.64e15, -8.64e15]) {
      const d = new Date(ms);
      expect(dateToTimestamp(d)).toBe(d.toISOString());
    }
    expect(() => dateToTimestamp(new Date(Number.NaN))).toThrowError(RangeError);
  });
});

describe("canonicalTimestamp of times an offset moves out of the years 0000 to 9999", () => {
  it("writes ISO 8601's expanded year, as Date.toISOString does, one form per instant", () => {
    const cases: Array<[string, string]> = [
      ["0000-01-01T00:00:00+00:01", "-000001-12-31T23:59:00Z"],
      ["0000-01-01T05:00:00.5+14:00", "-000001-12-31T15:00:00.5Z"],
      ["9999-12-31T23:59:59-00:01", "+010000-01-01T00:00:59Z"],
      ["9999-12-31T16:00:00-08:00", "+010000-01-01T00:00:00Z"],
    ];
    for (const [time, canonical] of cases) {
      expect(isTimestamp(time)).toBe(true);
      expect(canonicalTimestamp(time)).toBe(canonical);
      // The same instant as JavaScript names it, where Date reaches (milliseconds).
      expect(new Date(canonical).getTime()).toBe(new Date(Date.parse(time)).getTime());
    }
    // Inside the range nothing changes.
    expect(canonicalTimestamp("0000-01-01T00:01:00+00:01")).toBe("0000-01-01T00:00:00Z");
    expect(canonicalTimestamp("9999-12-31T23:59:59Z")).toBe("9999-12-31T23:59:59Z");
  });
});
