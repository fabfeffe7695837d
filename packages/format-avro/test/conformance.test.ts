import { avro } from "@posthorn/format-avro";
import { describeFormatConformance, validVectors } from "@posthorn/testkit";
import { expect, it } from "vitest";

const coverage = describeFormatConformance(avro);

it("round-trips every valid vector, skipping none", () => {
  expect(coverage.cases).toEqual(validVectors.map((v) => v.name));
  expect(coverage.skipped).toEqual([]);
});
