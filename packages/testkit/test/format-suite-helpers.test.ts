import { PosthornError } from "@posthorn/core";
import { describe, expect, it } from "vitest";
import { expectTypedError, vector } from "../src/index.js";

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
