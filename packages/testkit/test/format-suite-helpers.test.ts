import { type CloudEvent, type EventFormat, PosthornError } from "@posthorn/core";
import { describe, expect, it } from "vitest";
import {
  describeBindingConformance,
  describeFormatConformance,
  describeFormatProperties,
  detectableInvalidVectors,
  expectTypedError,
  type FormatSuiteCoverage,
  propertyRuns,
  validVectors,
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

describe("describeFormatConformance's coverage", () => {
  // Formats that cannot carry anything: the suites are registered in a skipped describe, only to
  // read what they list. One has batch functions, one has not.
  const refuse = (): never => {
    throw new PosthornError("MalformedInput", "not a format");
  };
  const single = {
    name: "nothing",
    contentType: "application/x-nothing",
    encode: refuse,
    decode: refuse,
  } as unknown as EventFormat;
  const batched = {
    ...single,
    name: "nothing-batched",
    batchContentType: "application/x-nothings",
    encodeBatch: refuse,
    decodeBatch: refuse,
  } as unknown as EventFormat;
  let withoutBatch: FormatSuiteCoverage | undefined;
  let withBatch: FormatSuiteCoverage | undefined;
  describe.skip("registered only to be listed", () => {
    withoutBatch = describeFormatConformance(single, {
      skip: (v) => (v.name === "minimal" ? "left out here" : undefined),
    });
    withBatch = describeFormatConformance(batched);
  });

  it("lists every case it runs, by kind, and keeps cases to the round-trips", () => {
    const rejects = detectableInvalidVectors({ typed: true, caseSensitive: true }).map(
      (v) => `rejects: ${v.name}`,
    );
    const corrupted = validVectors
      .filter((v) => !v.tags.includes("large") && v.name !== "minimal")
      .slice(0, 20)
      .map(
        (v) => `corrupted: ${v.name}: every corruption decodes to a typed error or a valid event`,
      );
    const jsonData = [
      "json-data: Number, String and Boolean objects, toJSON results, members with no JSON left out",
      "json-data: an encode nested in another (data's toJSON encoding an event) leaves both whole",
    ];
    const roundTrips = validVectors.map((v) => `round-trip: ${v.name}`);
    expect(withoutBatch?.allCases).toEqual([
      "count: carries at least 40 vectors",
      ...roundTrips,
      ...jsonData,
      ...rejects,
      ...corrupted,
    ]);
    expect(withoutBatch?.cases).toEqual(validVectors.map((v) => v.name));
    expect(withoutBatch?.skipped).toEqual(["minimal (left out here)"]);

    const batchCases = (withBatch?.allCases ?? []).filter((c) => c.startsWith("batch: "));
    expect(batchCases).toEqual([
      "batch: round-trips every vector in one batch, in order",
      "batch: round-trips an empty batch",
      "batch: rejects a batch holding an invalid event",
    ]);
    expect(withBatch?.allCases.length).toBe(
      1 + roundTrips.length + 3 + jsonData.length + rejects.length + 20,
    );
  });
});
