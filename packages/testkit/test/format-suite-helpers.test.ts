import { PosthornError } from "@posthorn/core";
import { describe, expect, it } from "vitest";
import { expectTypedError } from "../src/index.js";

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
