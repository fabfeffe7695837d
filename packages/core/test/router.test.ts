import {
  CloudEvent,
  createDelivery,
  type Delivery,
  EventRouter,
  type SettlementCapabilities,
} from "@posthorn/core";
import { describe, expect, expectTypeOf, it } from "vitest";
import { z } from "zod";

const caps: SettlementCapabilities = {
  release: "native",
  releaseDelay: true,
  reject: "native",
  inProgress: false,
  deliveryCount: "native",
};
const atMostOnce: SettlementCapabilities = {
  release: "none",
  releaseDelay: false,
  reject: "none",
  inProgress: false,
  deliveryCount: "none",
};

function delivery(event: CloudEvent | undefined, capabilities = caps) {
  const outcome: string[] = [];
  const d = createDelivery({
    message: { body: new Uint8Array(0), properties: {} },
    event,
    deliveryCount: 1,
    capabilities,
    accept: () => void outcome.push("accept"),
    release: () => void outcome.push("release"),
    reject: (r) => void outcome.push(`reject: ${r}`),
  });
  return { d: d as Delivery, outcome };
}

const ev = (type: string, data: unknown, extra: Record<string, unknown> = {}) =>
  new CloudEvent({
    specversion: "1.0",
    id: "1",
    source: "/orders/eu",
    type,
    datacontenttype: "application/json",
    data,
    ...extra,
  });

const Order = z.object({ orderId: z.number(), total: z.number().default(0) });

describe("EventRouter", () => {
  it("routes by type, validates data and hands the handler a typed event, then accepts", async () => {
    const seen: number[] = [];
    const router = new EventRouter().on("com.example.order.created", Order, (event) => {
      expectTypeOf(event.data).toEqualTypeOf<{ orderId: number; total: number } | undefined>();
      seen.push(event.data?.orderId ?? -1, event.data?.total ?? -1);
    });
    const { d, outcome } = delivery(ev("com.example.order.created", { orderId: 7 }));
    await router.dispatch(d);
    expect(seen).toEqual([7, 0]);
    expect(outcome).toEqual(["accept"]);
  });

  it("sends invalid data and unknown types to the fallback, which rejects by default", async () => {
    const router = new EventRouter().on("com.example.order.created", Order, () => {});
    const bad = delivery(ev("com.example.order.created", { orderId: "seven" }));
    await router.dispatch(bad.d);
    expect(bad.outcome).toEqual(["reject: no route took this delivery"]);
    const unknown = delivery(ev("com.example.other", {}));
    await router.dispatch(unknown.d);
    expect(unknown.outcome).toEqual(["reject: no route took this delivery"]);
  });

  it("tells a custom fallback why, with the validator's issues", async () => {
    const reasons: unknown[] = [];
    const router = new EventRouter({
      fallback: async (d, reason, issues) => {
        reasons.push(reason, issues?.[0]?.path);
        await d.accept();
      },
    }).on("t", Order, () => {});
    await router.dispatch(delivery(ev("t", { orderId: "x" })).d);
    await router.dispatch(delivery(undefined).d);
    expect(reasons).toEqual(["invalid-data", ["orderId"], "not-an-event", undefined]);
  });

  it("matches source and subject patterns, exact types before patterns", async () => {
    const hits: string[] = [];
    const router = new EventRouter()
      .on({ type: "com.example.*", source: "/orders/*" }, () => void hits.push("pattern"))
      .on(
        { type: "com.example.order.created", source: "/billing/*" },
        () => void hits.push("billing"),
      )
      .on("com.example.order.created", () => void hits.push("exact"));
    await router.dispatch(delivery(ev("com.example.order.created", {})).d);
    await router.dispatch(delivery(ev("com.example.order.shipped", {})).d);
    await router.dispatch(
      delivery(ev("com.example.order.created", {}, { source: "/billing/x" })).d,
    );
    expect(hits).toEqual(["exact", "pattern", "billing"]);
  });

  it("releases when a handler throws, and reports the error", async () => {
    const errors: unknown[] = [];
    const router = new EventRouter({ onError: (e) => errors.push(e) }).on("t", () => {
      throw new Error("database down");
    });
    const { d, outcome } = delivery(ev("t", {}));
    await router.dispatch(d);
    expect(outcome).toEqual(["release"]);
    expect(errors).toHaveLength(1);
  });

  it("leaves a delivery the handler settled itself alone", async () => {
    const router = new EventRouter().on("t", (_e, d) => d.reject("not mine"));
    const { d, outcome } = delivery(ev("t", {}));
    await router.dispatch(d);
    expect(outcome).toEqual(["reject: not mine"]);
  });

  it("drops (accepts) on transports that cannot dead-letter, and says so through onError when a handler fails", async () => {
    const errors: unknown[] = [];
    const router = new EventRouter({ onError: (e) => errors.push(e) }).on("t", () => {
      throw new Error("boom");
    });
    const unknown = delivery(ev("x", {}), atMostOnce);
    await router.dispatch(unknown.d);
    expect(unknown.outcome).toEqual(["accept"]);
    const failing = delivery(ev("t", {}), atMostOnce);
    await router.dispatch(failing.d);
    // Heard once, the handler's own error; the delivery is let go rather than left unsettled
    // (an MQTT acknowledgement held back would stall the connection).
    expect(errors.map((e) => (e as Error).message)).toEqual(["boom"]);
    expect(failing.outcome).toEqual(["accept"]);
  });

  it("gives back a delivery whose schema validator throws, and reports it once", async () => {
    const errors: unknown[] = [];
    const throwing = {
      "~standard": {
        version: 1 as const,
        vendor: "test",
        validate: (): never => {
          throw new Error("validator crashed");
        },
      },
    };
    const router = new EventRouter({ onError: (e) => errors.push(e) }).on("t", throwing, () => {
      throw new Error("never called");
    });
    const { d, outcome } = delivery(ev("t", {}));
    await router.dispatch(d);
    expect(outcome).toEqual(["release"]);
    expect(errors.map((e) => (e as Error).message)).toEqual(["validator crashed"]);
  });

  it("gives back a delivery whose fallback throws before settling it, and reports it once", async () => {
    const errors: unknown[] = [];
    const router = new EventRouter({
      onError: (e) => errors.push(e),
      fallback: () => {
        throw new Error("fallback crashed");
      },
    });
    const { d, outcome } = delivery(ev("unrouted", {}));
    await router.dispatch(d);
    expect(outcome).toEqual(["release"]);
    expect(errors.map((e) => (e as Error).message)).toEqual(["fallback crashed"]);
  });

  it("reports a failed accept after a handler once, and settles nothing twice", async () => {
    const errors: unknown[] = [];
    const router = new EventRouter({ onError: (e) => errors.push(e) }).on("t", () => undefined);
    const d = createDelivery({
      message: { body: new Uint8Array(0), properties: {} },
      event: ev("t", {}),
      deliveryCount: 1,
      capabilities: caps,
      accept: () => {
        throw new Error("connection lost");
      },
      release: () => {
        throw new Error("release must not be called");
      },
    });
    await router.dispatch(d);
    expect(errors.map((e) => (e as { code?: string }).code)).toEqual(["SettlementFailed"]);
  });

  it("runs a whole subscriber with bounded concurrency", async () => {
    let active = 0;
    let peak = 0;
    const router = new EventRouter().on("t", async () => {
      active++;
      peak = Math.max(peak, active);
      await new Promise((r) => setTimeout(r, 5));
      active--;
    });
    const outcomes: string[][] = [];
    async function* source() {
      for (let i = 0; i < 12; i++) {
        const x = delivery(ev("t", { i }));
        outcomes.push(x.outcome);
        yield x.d;
      }
    }
    await router.run(source(), { concurrency: 3 });
    expect(peak).toBe(3);
    expect(outcomes.flat()).toEqual(Array(12).fill("accept"));
  });
  it("hands the handler a schema's output even where datacontenttype would not allow it", async () => {
    // bytes under application/octet-stream turned into an object, text/plain into a list: the
    // handler ran on neither before (InvalidEvent, then release, on every redelivery).
    const decoded: unknown[] = [];
    const sizeOf = {
      "~standard": {
        version: 1 as const,
        vendor: "test",
        validate: (v: unknown) =>
          v instanceof Uint8Array
            ? { value: { size: v.length } }
            : { issues: [{ message: "bytes" }] },
      },
    };
    const router = new EventRouter()
      .on("bin", sizeOf, (event) => void decoded.push(event.data))
      .on(
        "txt",
        z.string().transform((s) => s.split(",")),
        (event) => void decoded.push(event.data),
      );
    const bin = delivery(
      ev("bin", new Uint8Array([1, 2, 3]), { datacontenttype: "application/octet-stream" }),
    );
    const txt = delivery(ev("txt", "a,b", { datacontenttype: "text/plain" }));
    await router.dispatch(bin.d);
    await router.dispatch(txt.d);
    expect(decoded).toEqual([{ size: 3 }, ["a", "b"]]);
    expect([...bin.outcome, ...txt.outcome]).toEqual(["accept", "accept"]);
    // The delivery keeps the event as it came.
    expect(bin.d.event?.data).toEqual(new Uint8Array([1, 2, 3]));
  });

  it("takes a schema that is a function (as ArkType's are) as the schema, not the handler", async () => {
    const seen: unknown[] = [];
    const arkLike = Object.assign(() => "called as a handler", {
      "~standard": {
        version: 1 as const,
        vendor: "arklike",
        validate: (v: unknown) => ({ value: { wrapped: v } }),
      },
    });
    const router = new EventRouter().on("t", arkLike, (event) => void seen.push(event.data));
    const { d, outcome } = delivery(ev("t", 5));
    await router.dispatch(d);
    expect(seen).toEqual([{ wrapped: 5 }]);
    expect(outcome).toEqual(["accept"]);
  });

  it("refuses, when a route is added, a schema that is no Standard Schema, a schema without a handler and a match without a type", () => {
    const router = new EventRouter();
    const legacy = { parse: (v: unknown) => v }; // a validator without '~standard'
    expect(() => router.on("t", legacy as never, () => {})).toThrowError(/Standard Schema v1/);
    expect(() => router.on("t", Order as never)).toThrowError(/handler function/);
    expect(() => router.on({ source: "/orders/*" } as never, () => {})).toThrowError(
      /needs an event type/,
    );
    expect(() => router.on({ type: "t", source: 5 } as never, () => {})).toThrowError(
      /source must be a string/,
    );
  });

  it("goes on when onError throws: dispatch resolves, run reads every delivery", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => void unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      const router = new EventRouter({
        onError: () => {
          throw new Error("logger broke");
        },
      }).on("t", () => {
        throw new Error("handler failed");
      });
      const one = delivery(ev("t", {}));
      await expect(router.dispatch(one.d)).resolves.toBeUndefined();
      expect(one.outcome).toEqual(["release"]);
      const outcomes: string[][] = [];
      async function* source() {
        for (let i = 0; i < 4; i++) {
          const x = delivery(ev("t", { i }));
          outcomes.push(x.outcome);
          yield x.d;
        }
      }
      await router.run(source(), { concurrency: 4 });
      await new Promise((r) => setTimeout(r, 10));
      expect(outcomes.flat()).toEqual(Array(4).fill("release"));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
  it("waits for the deliveries in hand before run() rejects with the subscriber's failure", async () => {
    const log: string[] = [];
    const router = new EventRouter().on("t", async () => {
      await new Promise((r) => setTimeout(r, 20));
      log.push("handled");
    });
    async function* failing() {
      for (let i = 0; i < 2; i++) {
        const x = delivery(ev("t", { i }));
        yield x.d;
      }
      throw new Error("connection lost");
    }
    await expect(router.run(failing(), { concurrency: 4 })).rejects.toThrowError("connection lost");
    expect(log).toEqual(["handled", "handled"]);
  });
});
