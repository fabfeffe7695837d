import { prefixedName } from "@posthorn/core";
import { describe, expect, it } from "vitest";

describe("prefixedName", () => {
  it("is the prefix followed by the name, for any prefix", () => {
    expect(prefixedName("ce_", "id")).toBe("ce_id");
    expect(prefixedName("ce-", "id")).toBe("ce-id");
    expect(prefixedName("cloudEvents:", "traceparent")).toBe("cloudEvents:traceparent");
  });

  it("keeps giving the right name past its bounds (many names, many prefixes)", () => {
    for (let i = 0; i < 2000; i++) expect(prefixedName("x-", `n${i}`)).toBe(`x-n${i}`);
    for (let i = 0; i < 40; i++) expect(prefixedName(`p${i}:`, "id")).toBe(`p${i}:id`);
    expect(prefixedName("ce_", "__proto__")).toBe("ce___proto__");
    expect(prefixedName("ce_", "constructor")).toBe("ce_constructor");
  });
});
