import { AsyncQueue, Drain } from "@posthorn/core";
import { afterEach, describe, expect, it, vi } from "vitest";

describe("Drain (what close() waits on for drainTimeoutMs)", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Whether `p` has settled after the pending microtasks ran. */
  async function settled(p: Promise<unknown>): Promise<boolean> {
    let done = false;
    void p.then(() => {
      done = true;
    });
    for (let i = 0; i < 10; i++) await Promise.resolve();
    return done;
  }

  it("does not wait with no time or nothing in hand", async () => {
    const drain = new Drain();
    expect(await settled(drain.wait(0, () => false))).toBe(true);
    expect(await settled(drain.wait(1000, () => true))).toBe(true);
  });

  it("ends at the wake that finds nothing left, not at an earlier one, and leaves no timer", async () => {
    vi.useFakeTimers();
    const drain = new Drain();
    let inHand = 2;
    const waiting = drain.wait(5000, () => inHand === 0);
    inHand = 1;
    drain.wake();
    expect(await settled(waiting)).toBe(false);
    inHand = 0;
    drain.wake();
    expect(await settled(waiting)).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
    // A wake with nothing waiting does nothing.
    drain.wake();
  });

  it("ends after ms with deliveries still in hand", async () => {
    vi.useFakeTimers();
    const drain = new Drain();
    const waiting = drain.wait(300, () => false);
    await vi.advanceTimersByTimeAsync(299);
    expect(await settled(waiting)).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await settled(waiting)).toBe(true);
  });

  it("ends when stop settles, fulfilled or rejected, and clears its timer", async () => {
    vi.useFakeTimers();
    for (const outcome of ["resolve", "reject"] as const) {
      const drain = new Drain();
      let end!: () => void;
      const stop = new Promise<void>((resolve, reject) => {
        end = outcome === "resolve" ? resolve : () => reject(new Error("closed"));
      });
      const waiting = drain.wait(10_000, () => false, stop);
      expect(await settled(waiting)).toBe(false);
      end();
      expect(await settled(waiting)).toBe(true);
      expect(vi.getTimerCount()).toBe(0);
    }
  });

  it("waits with no time limit for Infinity, instead of a timer that fires at once", async () => {
    const drain = new Drain();
    let inHand = 1;
    const waiting = drain.wait(Number.POSITIVE_INFINITY, () => inHand === 0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await settled(waiting)).toBe(false);
    inHand = 0;
    drain.wake();
    expect(await settled(waiting)).toBe(true);
  });
});

describe("AsyncQueue.onDrainedTo (flow control)", () => {
  it("fires once, at the first pull that leaves at most the level queued", async () => {
    const queue = new AsyncQueue<number>();
    for (let i = 0; i < 4; i++) queue.push(i);
    let fired = 0;
    queue.onDrainedTo(2, () => fired++);
    const it = queue[Symbol.asyncIterator]();
    await it.next();
    expect(fired).toBe(0);
    await it.next();
    expect(fired).toBe(1);
    await it.next();
    await it.next();
    expect(fired).toBe(1);
  });

  it("fires at a pull on an empty queue too (a consumer already waiting)", () => {
    const queue = new AsyncQueue<number>();
    let fired = 0;
    queue.onDrainedTo(0, () => fired++);
    void queue[Symbol.asyncIterator]().next();
    expect(fired).toBe(1);
  });
});
