import { corkForThisTick } from "@posthorn/core";
import { describe, expect, it } from "vitest";

describe("corkForThisTick", () => {
  it("corks once per tick and uncorks after the tick's nextTick callbacks queued before it", async () => {
    const calls: string[] = [];
    const stream = {
      cork: () => calls.push("cork"),
      uncork: () => calls.push("uncork"),
    };
    process.nextTick(() => calls.push("library flush"));
    corkForThisTick(stream);
    corkForThisTick(stream);
    expect(calls).toEqual(["cork"]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toEqual(["cork", "library flush", "uncork"]);
    corkForThisTick(stream);
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toEqual(["cork", "library flush", "uncork", "cork", "uncork"]);
  });

  it("does nothing for no stream or a stream that cannot cork", () => {
    expect(() => corkForThisTick(undefined)).not.toThrow();
    expect(() => corkForThisTick({})).not.toThrow();
  });
});
