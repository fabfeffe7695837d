import { describe, expect, it } from "vitest";
import { PosthornError, settleWithin } from "../src/index.js";

const timedOut = () => new PosthornError("Timeout", "too late");

describe("settleWithin", () => {
  it("is the work itself with neither a limit nor a signal", () => {
    const work = Promise.resolve(1);
    expect(settleWithin(work, { timedOut })).toBe(work);
  });

  it("gives the work's outcome when it settles in time, and removes its listener", async () => {
    const controller = new AbortController();
    let listeners = 0;
    const signal = controller.signal;
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    signal.addEventListener = ((...args: Parameters<typeof add>) => {
      listeners++;
      add(...args);
    }) as typeof add;
    signal.removeEventListener = ((...args: Parameters<typeof remove>) => {
      listeners--;
      remove(...args);
    }) as typeof remove;
    await expect(
      settleWithin(Promise.resolve("v"), { timeoutMs: 1000, signal, timedOut }),
    ).resolves.toBe("v");
    await expect(
      settleWithin(Promise.reject(new Error("no")), { timeoutMs: 1000, signal, timedOut }),
    ).rejects.toThrow("no");
    expect(listeners).toBe(0);
  });

  it("fails with timedOut() when the limit passes first; a later rejection of the work is handled", async () => {
    let fail: (err: Error) => void = () => undefined;
    const work = new Promise<void>((_, reject) => {
      fail = reject;
    });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      await expect(settleWithin(work, { timeoutMs: 10, timedOut })).rejects.toMatchObject({
        code: "Timeout",
      });
      fail(new Error("late"));
      await new Promise((r) => setTimeout(r, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("without timedOut() or aborted(), fails with a Timeout or an Aborted PosthornError", async () => {
    const never = new Promise<number>(() => {});
    await expect(settleWithin(never, { timeoutMs: 5 })).rejects.toMatchObject({
      code: "Timeout",
      message: "the wait took longer than 5 ms",
    });
    await expect(settleWithin(never, { signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: "Aborted",
    });
  });

  it("fails with aborted() when the signal aborts, at once when it already has", async () => {
    const never = new Promise<void>(() => undefined);
    const controller = new AbortController();
    const waiting = settleWithin(never, {
      signal: controller.signal,
      timedOut,
      aborted: () => new PosthornError("Aborted", "stopped"),
    });
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: "Aborted", message: "stopped" });
    await expect(
      settleWithin(never, { signal: controller.signal, timedOut }),
    ).rejects.toMatchObject({ code: "Aborted" });
  });
});
