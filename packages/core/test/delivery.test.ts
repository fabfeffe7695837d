import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import {
  AsyncQueue,
  asJob,
  CloudEvent,
  closeOnReturn,
  createDelivery,
  isPosthornError,
  type SettlementCapabilities,
} from "@posthorn/core";
import { describe, expect, it } from "vitest";

const full: SettlementCapabilities = {
  release: "native",
  releaseDelay: true,
  reject: "native",
  inProgress: true,
  deliveryCount: "native",
};
const none: SettlementCapabilities = {
  release: "none",
  releaseDelay: false,
  reject: "none",
  inProgress: false,
  deliveryCount: "none",
};
const event = new CloudEvent({ specversion: "1.0", id: "1", source: "/s", type: "t" });
const message = { body: new Uint8Array(0), properties: {} };

describe("createDelivery", () => {
  it("settles once and calls the transport action", async () => {
    const calls: string[] = [];
    const d = createDelivery({
      message,
      event,
      deliveryCount: 2,
      capabilities: full,
      accept: () => void calls.push("accept"),
      release: (o) => void calls.push(`release ${o.delayMs}`),
    });
    expect(d.settled).toBe(false);
    await d.accept();
    expect(d.settled).toBe(true);
    await expect(d.release({ delayMs: 5 })).rejects.toMatchObject({ code: "SettlementFailed" });
    expect(calls).toEqual(["accept"]);
  });
  it("passes the delay and the reason through", async () => {
    const calls: unknown[] = [];
    const d1 = createDelivery({
      message,
      event,
      deliveryCount: 1,
      capabilities: full,
      accept: () => {},
      release: (o) => void calls.push(o),
    });
    await d1.release({ delayMs: 250 });
    const d2 = createDelivery({
      message,
      event,
      deliveryCount: 1,
      capabilities: full,
      accept: () => {},
      reject: (r) => void calls.push(r),
    });
    await d2.reject(new Error("bad order"));
    expect(calls).toEqual([{ delayMs: 250 }, "bad order"]);
  });
  it("refuses a release delay that is no finite number of milliseconds, leaving the delivery unsettled", async () => {
    const calls: unknown[] = [];
    const d = createDelivery({
      message,
      event,
      deliveryCount: 1,
      capabilities: full,
      accept: () => {},
      release: (o) => void calls.push(o.delayMs),
    });
    for (const delayMs of [Number.NaN, -1, Number.POSITIVE_INFINITY]) {
      await expect(d.release({ delayMs })).rejects.toMatchObject({
        code: "NotSupported",
        attribute: "release({ delayMs })",
      });
    }
    expect(d.settled).toBe(false);
    await d.release({ delayMs: 0 });
    expect(calls).toEqual([0]);
  });
  it("says why a settlement is NotSupported in the binding's words when it gives them, else generically", async () => {
    const unsupported = {
      release: "core NATS redelivers nothing",
      releaseDelay: "no delays here",
      reject: "give it deadLetterTopic",
      inProgress: "no ack wait to extend",
    };
    const d = createDelivery({
      message,
      event,
      deliveryCount: 1,
      capabilities: none,
      unsupported,
      accept: () => {},
    });
    const said = async (p: Promise<unknown>) => ((await p.catch((e: Error) => e)) as Error).message;
    expect(await said(d.release())).toBe(
      "release() is not supported: core NATS redelivers nothing",
    );
    expect(await said(d.reject("x"))).toBe("reject() is not supported: give it deadLetterTopic");
    expect(await said(d.inProgress())).toBe("inProgress() is not supported: no ack wait to extend");
    const delayed = createDelivery({
      message,
      event,
      deliveryCount: 1,
      capabilities: { ...full, releaseDelay: false },
      unsupported,
      accept: () => {},
      release: () => {},
    });
    expect(await said(delayed.release({ delayMs: 5 }))).toBe(
      "release({ delayMs }) is not supported: no delays here",
    );
    // Without words of the binding's own, the generic ones.
    const plain = createDelivery({
      message,
      event,
      deliveryCount: 1,
      capabilities: none,
      accept: () => {},
    });
    expect(await said(plain.reject())).toBe(
      "reject() is not supported: this transport has no dead-letter path configured",
    );
  });

  it("says NotSupported for what the capabilities exclude, leaving the delivery unsettled", async () => {
    const d = createDelivery({
      message,
      event,
      deliveryCount: 1,
      capabilities: none,
      accept: () => {},
    });
    await expect(d.release()).rejects.toMatchObject({ code: "NotSupported" });
    await expect(d.reject("x")).rejects.toMatchObject({ code: "NotSupported" });
    await expect(d.inProgress()).rejects.toMatchObject({ code: "NotSupported" });
    expect(d.settled).toBe(false);
    const delayed = createDelivery({
      message,
      event,
      deliveryCount: 1,
      capabilities: { ...full, releaseDelay: false },
      accept: () => {},
      release: () => {},
    });
    await expect(delayed.release({ delayMs: 10 })).rejects.toMatchObject({ code: "NotSupported" });
  });
  it("wraps a failing transport action in SettlementFailed with the cause", async () => {
    const cause = new Error("link detached");
    const d = createDelivery({
      message,
      event,
      deliveryCount: 1,
      capabilities: full,
      accept: () => Promise.reject(cause),
    });
    await expect(d.accept()).rejects.toMatchObject({ code: "SettlementFailed", cause });
  });
  it("passes on a PosthornError from another copy of core as it is, without instanceof", async () => {
    // Two copies of core installed side by side: same name and code, different class.
    const foreign = Object.assign(new Error("link gone"), {
      name: "PosthornError",
      code: "ConnectionFailed",
      retryable: true,
    });
    const d = createDelivery({
      message,
      event,
      deliveryCount: 1,
      capabilities: full,
      accept: () => Promise.reject(foreign),
      inProgress: () => Promise.reject(foreign),
    });
    await expect(d.inProgress()).rejects.toBe(foreign);
    await expect(d.accept()).rejects.toBe(foreign);
  });
  it("wraps a client error from inProgress() in SettlementFailed and leaves the delivery unsettled", async () => {
    const cause = new TypeError("socket closed");
    let working = 0;
    const d = createDelivery({
      message,
      event,
      deliveryCount: 1,
      capabilities: full,
      accept: () => {},
      inProgress: () => {
        working++;
        if (working === 1) throw cause;
      },
    });
    const err = await d.inProgress().catch((e: unknown) => e);
    expect(isPosthornError(err, "SettlementFailed")).toBe(true);
    expect((err as Error).cause).toBe(cause);
    expect((err as Error).message).toContain("socket closed");
    expect(d.settled).toBe(false);
    // Still the consumer's: it can extend again and settle.
    await d.inProgress();
    await d.accept();
    expect(working).toBe(2);
    expect(d.settled).toBe(true);
  });
  it("asJob exposes the attempt for deliveries with an event", () => {
    const d = createDelivery({
      message,
      event,
      deliveryCount: 3,
      capabilities: full,
      accept: () => {},
    });
    expect(asJob(d)?.attempt).toBe(3);
    expect(asJob(d)?.event).toBe(event);
    expect(
      asJob(
        createDelivery({
          message,
          event: undefined,
          deliveryCount: 1,
          capabilities: full,
          accept: () => {},
        }),
      ),
    ).toBeUndefined();
  });
});

describe("AsyncQueue", () => {
  it("hands items to waiting and later consumers in order, then ends", async () => {
    const q = new AsyncQueue<number>();
    const it = q[Symbol.asyncIterator]();
    const first = it.next();
    q.push(1);
    q.push(2);
    q.push(3);
    q.end();
    q.push(4);
    expect(await first).toEqual({ value: 1, done: false });
    const rest: number[] = [];
    for await (const n of { [Symbol.asyncIterator]: () => it }) rest.push(n);
    expect(rest).toEqual([2, 3]);
  });
  it("throws the failure after queued items", async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.fail(new Error("connection lost"));
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const n of q) seen.push(n);
      })(),
    ).rejects.toThrow("connection lost");
    expect(seen).toEqual([1]);
  });
  it("keeps memory bounded while streaming many items", async () => {
    const q = new AsyncQueue<number>();
    let sum = 0;
    const consumer = (async () => {
      for await (const n of q) sum += n;
    })();
    for (let i = 0; i < 5000; i++) q.push(1);
    q.end();
    await consumer;
    expect(sum).toBe(5000);
    expect(q.size).toBe(0);
  });
  it("lets go of an item once it is pulled, with others still queued", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const q = new AsyncQueue<object>();
    const it = q[Symbol.asyncIterator]();
    const refs: WeakRef<object>[] = [];
    for (let i = 0; i < 3; i++) {
      const item = { i };
      refs.push(new WeakRef(item));
      q.push(item);
    }
    await it.next();
    await it.next();
    // A macrotask, so that nothing on the stack or in a settled promise still holds the items.
    await new Promise((resolve) => setTimeout(resolve, 0));
    gc();
    expect(refs.map((r) => r.deref() === undefined)).toEqual([true, true, false]);
    expect(q.size).toBe(1);
  });
});

describe("closeOnReturn", () => {
  /** A subscriber-shaped object over a queue, as bindings build them. */
  function subscriberOver(q: AsyncQueue<number>) {
    const calls: string[] = [];
    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= (async () => {
        calls.push("close started");
        await new Promise((r) => setTimeout(r, 20));
        q.end();
        calls.push("close done");
      })();
      return closing;
    };
    return {
      calls,
      close,
      [Symbol.asyncIterator]: () => closeOnReturn(q[Symbol.asyncIterator](), close),
    };
  }

  it("closes the subscriber when a for await loop is left with break, and waits for the close", async () => {
    const q = new AsyncQueue<number>();
    for (const n of [1, 2, 3]) q.push(n);
    const sub = subscriberOver(q);
    const seen: number[] = [];
    for await (const n of sub) {
      seen.push(n);
      if (n === 2) break;
    }
    sub.calls.push("after loop");
    expect(seen).toEqual([1, 2]);
    expect(sub.calls).toEqual(["close started", "close done", "after loop"]);
    expect(q.ended).toBe(true);
  });

  it("closes on return and on a throw out of the loop, and close stays idempotent", async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    const sub = subscriberOver(q);
    const first = await (async () => {
      for await (const n of sub) return n;
      return undefined;
    })();
    expect(first).toBe(1);
    expect(sub.calls).toEqual(["close started", "close done"]);

    const q2 = new AsyncQueue<number>();
    q2.push(7);
    const sub2 = subscriberOver(q2);
    await expect(
      (async () => {
        for await (const n of sub2) throw new Error(`handler failed on ${n}`);
      })(),
    ).rejects.toThrow("handler failed on 7");
    expect(sub2.calls).toEqual(["close started", "close done"]);
    // A close() after leaving the loop is the same close, not a second one.
    await sub2.close();
    expect(sub2.calls).toEqual(["close started", "close done"]);
  });

  it("ends a pending pull, and ends the inner iterator even when close() fails", async () => {
    const q = new AsyncQueue<number>();
    const it = closeOnReturn(q[Symbol.asyncIterator](), () => Promise.resolve(q.end()));
    const pending = it.next();
    await it.return?.();
    expect(await pending).toEqual({ value: undefined, done: true });

    const q2 = new AsyncQueue<number>();
    const failing = closeOnReturn(q2[Symbol.asyncIterator](), () =>
      Promise.reject(new Error("close failed")),
    );
    await expect(failing.return?.()).rejects.toThrow("close failed");
    expect(q2.ended).toBe(true);
  });

  it("is what AsyncQueue's own return() is not: that only ends the queue", async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    let closed = 0;
    for await (const _ of q) break;
    expect(q.ended).toBe(true);
    expect(closed).toBe(0);
    const q2 = new AsyncQueue<number>();
    q2.push(1);
    const wrapped = {
      [Symbol.asyncIterator]: () =>
        closeOnReturn(q2[Symbol.asyncIterator](), async () => void closed++),
    };
    for await (const _ of wrapped) break;
    expect(closed).toBe(1);
  });
});
