import { protobuf } from "@posthorn/format-protobuf";
import { describeFormatConformance, validVectors } from "@posthorn/testkit";
import { expect, it } from "vitest";

const coverage = describeFormatConformance(protobuf);

it("round-trips every valid vector, skipping none", () => {
  expect(coverage.cases).toEqual(validVectors.map((v) => v.name));
  expect(coverage.skipped).toEqual([]);
});

it("runs the count, JSON-data, invalid-vector and corruption cases besides the round-trips with its batch cases", () => {
  const kinds = [...new Set(coverage.allCases.map((c) => c.slice(0, c.indexOf(":"))))];
  expect(kinds).toEqual(["count", "round-trip", "batch", "json-data", "rejects", "corrupted"]);
  expect(coverage.allCases.filter((c) => c.startsWith("round-trip: "))).toEqual(
    validVectors.map((v) => `round-trip: ${v.name}`),
  );
});
