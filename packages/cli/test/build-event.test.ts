import { describe, expect, it } from "vitest";
import { buildEvent } from "../src/input.js";

const base = { type: "com.example.t", source: "/cli" };

describe("buildEvent --ext", () => {
  it("adds extensions", () => {
    const event = buildEvent({ ...base, extensions: ["region=eu", "tier2=gold"] });
    expect(event.region).toBe("eu");
    expect(event.tier2).toBe("gold");
    expect(event.type).toBe(base.type);
  });

  it.each([
    "type",
    "source",
    "id",
    "subject",
    "time",
    "specversion",
    "datacontenttype",
    "data",
    "data_base64",
  ])("refuses --ext %s=..., which would replace an attribute its own option sets", (name) => {
    expect(() => buildEvent({ ...base, id: "given", extensions: [`${name}=x`] })).toThrowError(
      expect.objectContaining({ code: "InvalidEvent", attribute: name }),
    );
  });

  it.each(["__proto__", "Region", "re-gion", "constructor_x"])("refuses the name %j", (name) => {
    expect(() => buildEvent({ ...base, extensions: [`${name}=x`] })).toThrowError(
      expect.objectContaining({ code: "InvalidEvent" }),
    );
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it("refuses an extension given twice", () => {
    expect(() => buildEvent({ ...base, extensions: ["a=1", "a=2"] })).toThrowError(
      expect.objectContaining({ code: "InvalidEvent", attribute: "a" }),
    );
  });
});
