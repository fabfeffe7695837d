import { avroCompactFormat } from "@posthorn/format-avro";
import { describeFormatConformance, validVectors } from "@posthorn/testkit";
import { expect, it } from "vitest";

// timestamp-micros cannot hold a nanosecond time; the encoder refuses it (tested in compact.test.ts).
const coverage = describeFormatConformance(avroCompactFormat(), {
  skip: (v) => (v.name === "time-nanos" ? "time finer than a microsecond" : undefined),
});

it("round-trips every valid vector but the nanosecond time", () => {
  expect(coverage.cases).toEqual(validVectors.map((v) => v.name));
  expect(coverage.skipped).toEqual(["time-nanos (time finer than a microsecond)"]);
});
