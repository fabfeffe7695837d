import { NameIndex, quoted } from "@posthorn/core";
import { describe, expect, it } from "vitest";

describe("NameIndex", () => {
  it("finds every name at the position it was added, before and after it switches to a map", () => {
    const index = new NameIndex();
    for (let i = 0; i < 40; i++) {
      expect(index.indexOf(`n${i}`)).toBe(-1);
      expect(index.add(`n${i}`)).toBe(i);
      for (let j = 0; j <= i; j++) expect(index.indexOf(`n${j}`)).toBe(j);
    }
    expect(index.names).toHaveLength(40);
    expect(index.indexOf("__proto__")).toBe(-1);
    expect(index.indexOf("N0")).toBe(-1);
  });
});

describe("quoted", () => {
  it("quotes text for a message, control characters visible, cut after 40 characters", () => {
    expect(quoted("a\r\nb")).toBe('"a\\r\\nb"');
    expect(quoted("x".repeat(100))).toBe(`"${"x".repeat(40)}..."`);
  });
});
