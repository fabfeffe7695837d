import { parseJson, withFormerMaxDepth } from "@posthorn/core";
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

describe("parseJson and numbers past the range of a double", () => {
  const refused = expect.objectContaining({
    code: "MalformedInput",
    message: expect.stringContaining("past the range of a double"),
  });
  it("refuses a literal JSON.parse would read as Infinity, at any depth", () => {
    for (const text of [
      "1e400",
      "-1e400",
      `1${"0".repeat(400)}`,
      '{"n":1e999}',
      '{"a":[1,2,{"b":[3,-1E+400]}]}',
      `[${"[".repeat(100)}1e309${"]".repeat(100)}]`,
    ]) {
      expect(() => parseJson(text), text.slice(0, 40)).toThrowError(refused);
    }
  });
  it("keeps the largest finite numbers, and the text of strings that look like big numbers", () => {
    expect(parseJson("1.7976931348623157e308")).toBe(Number.MAX_VALUE);
    expect(parseJson('{"n":-1e308,"s":"1e400","t":["1e999"]}')).toEqual({
      n: -1e308,
      s: "1e400",
      t: ["1e999"],
    });
    // Underflow is a number all the same: 0.
    expect(parseJson("1e-400")).toBe(0);
  });
  it("walks nesting past what the call stack holds when maxDepth allows it", () => {
    const depth = 20_000;
    const text = `${"[".repeat(depth)}1e400${"]".repeat(depth)}`;
    expect(() => parseJson(text, "JSON", { maxDepth: depth + 1 })).toThrowError(refused);
  });
});
