import { type CloudEvent, PosthornError } from "@posthorn/core";
import { describe, expect, it } from "vitest";
import {
  describeBindingConformance,
  describeFormatConformance,
  describeFormatProperties,
  expectTypedError,
  propertyRuns,
  vector,
} from "../src/index.js";

describe("expectTypedError", () => {
  it("passes on a synchronous PosthornError of an accepted code", () => {
    expectTypedError(() => {
      throw new PosthornError("MalformedInput", "bad bytes");
    }, ["MalformedInput"]);
  });

  it("fails, saying why, on an action that returns a promise, and leaves no unhandled rejection", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      expect(() =>
        expectTypedError(async () => {
          throw new PosthornError("InvalidEvent", "async failure");
        }),
      ).toThrow(/returned a promise: use await expect\(promise\)\.rejects/);
      await new Promise((r) => setTimeout(r, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});

describe("vector", () => {
  it("says which names exist, and where an invalid vector is found", () => {
    expect(vector("minimal").name).toBe("minimal");
    expect(() => vector("typo")).toThrow(/no valid vector named "typo"; the names are minimal, /);
    expect(() => vector("missing-id")).toThrow(
      /"missing-id" is an invalid vector: take it from invalidVectors/,
    );
  });
});

describe("describeBindingConformance, given a harness it cannot run", () => {
  const roundTrip = (e: CloudEvent) => e;
  const json = { name: "json" }; // only its presence is checked here
  it.each([
    [{ name: "none", paths: [], roundTrip }, /harness "none" has no paths/],
    [
      { name: "s", paths: [{ mode: "structured" }], roundTrip },
      /the structured path of "s" needs its format, e\.g\. \{ mode: "structured", format: json \}/,
    ],
    [{ name: "m", paths: [{ mode: "stuctured" }], roundTrip }, /mode must be .*got "stuctured"/],
    [
      { name: "b", paths: [{ mode: "batch", format: json }], roundTrip },
      /"b" has a batch path but no roundTripBatch/,
    ],
    [{ name: "r", paths: [{ mode: "binary" }] }, /the harness needs roundTrip/],
  ])("refuses %j where it is called", (harness, message) => {
    expect(() => describeBindingConformance(harness as never)).toThrow(message);
  });
});

describe("propertyRuns", () => {
  const saved = { runs: process.env.POSTHORN_PROPERTY_RUNS, ci: process.env.CI };
  const restore = () => {
    for (const [key, value] of [
      ["POSTHORN_PROPERTY_RUNS", saved.runs],
      ["CI", saved.ci],
    ] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  };

  it("reads CI as inCi() does, and refuses a run count that is not a whole number", () => {
    try {
      delete process.env.POSTHORN_PROPERTY_RUNS;
      process.env.CI = "false";
      expect(propertyRuns()).toBe(300);
      process.env.CI = "true";
      expect(propertyRuns()).toBe(1000);
      process.env.POSTHORN_PROPERTY_RUNS = "50";
      expect(propertyRuns()).toBe(50);
      for (const bad of ["2.5", "lots", "0"]) {
        process.env.POSTHORN_PROPERTY_RUNS = bad;
        expect(() => propertyRuns()).toThrow(
          `POSTHORN_PROPERTY_RUNS must be a whole number of runs, 1 or more, got "${bad}"`,
        );
      }
    } finally {
      restore();
    }
  });
});

describe("the format suites, given something that is not a format", () => {
  it.each([
    [undefined, /describeFormatConformance: the format must be an EventFormat .*, got undefined/],
    [{ name: "x", encode: () => new Uint8Array(0) }, /got an object with name, encode/],
    [
      { name: "half", encode: () => {}, decode: () => {}, encodeBatch: () => {} },
      /format "half" has only one of encodeBatch and decodeBatch/,
    ],
  ])("describeFormatConformance refuses %j where it is called", (format, message) => {
    expect(() => describeFormatConformance(format as never)).toThrow(message);
  });

  it("describeFormatProperties refuses it too", () => {
    expect(() => describeFormatProperties({} as never)).toThrow(
      /describeFormatProperties: the format must be an EventFormat .*got an object with no keys/,
    );
  });
});
