import { withFormerMaxDepth } from "@posthorn/core";
import { describe, expect, it } from "vitest";

describe("withFormerMaxDepth (a binding's deprecated depth option beside json.maxDepth)", () => {
  it("returns json itself when the former option is not given", () => {
    const json = { maxDepth: 8 };
    expect(withFormerMaxDepth(json, undefined)).toBe(json);
    expect(withFormerMaxDepth(undefined, undefined)).toBeUndefined();
  });
  it("takes the former option when json has no depth, and json.maxDepth when it has one", () => {
    expect(withFormerMaxDepth(undefined, 8)).toEqual({ maxDepth: 8 });
    expect(withFormerMaxDepth({}, 8)).toEqual({ maxDepth: 8 });
    expect(withFormerMaxDepth({ maxDepth: 9 }, 8)).toEqual({ maxDepth: 9 });
  });
});
