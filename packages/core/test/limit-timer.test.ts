import { limitTimer, MAX_TIMER_MS } from "@posthorn/core";
import { watchTimerOverflows } from "@posthorn/testkit";
import { afterEach, describe, expect, it } from "vitest";

const overflows = watchTimerOverflows();
afterEach(() => overflows.stop());

const after = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("limitTimer", () => {
  it("fires after the limit, and at once for a negative one", async () => {
    const fired: string[] = [];
    limitTimer(() => fired.push("20 ms"), 20);
    limitTimer(() => fired.push("negative"), -5);
    await after(5);
    expect(fired).toEqual(["negative"]);
    await after(40);
    expect(fired).toEqual(["negative", "20 ms"]);
  });

  it("sets no timer for a limit past what a timer holds, Infinity included", async () => {
    let fired = 0;
    for (const ms of [Number.POSITIVE_INFINITY, MAX_TIMER_MS + 1, 1e12]) {
      expect(limitTimer(() => fired++, ms)).toBeUndefined();
    }
    // setTimeout itself would have fired each after 1 ms, with a TimeoutOverflowWarning.
    await after(30);
    expect(fired).toBe(0);
    expect(overflows.count()).toBe(0);
  });

  it("holds the longest limit a timer can, and can be cleared", async () => {
    let fired = 0;
    const timer = limitTimer(() => fired++, MAX_TIMER_MS);
    expect(timer).toBeDefined();
    clearTimeout(timer);
    clearTimeout(limitTimer(() => fired++, 10));
    await after(30);
    expect(fired).toBe(0);
  });
});
