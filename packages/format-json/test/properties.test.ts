import { json } from "@posthorn/format-json";
import { describeFormatProperties } from "@posthorn/testkit";
import { expect, it } from "vitest";

const coverage = describeFormatProperties(json);

it("runs every format property, batches included", () => {
  expect(coverage.cases).toEqual([
    "arbitrary valid events round-trip equivalently",
    "arbitrary batches round-trip equivalently",
    "arbitrary bytes give an event or a typed error",
    "mutated encodings give an event or a typed error",
  ]);
});
