import { context, SpanKind, trace } from "@opentelemetry/api";
import { AsyncHooksContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import {
  AsyncQueue,
  CloudEvent,
  type CloudEventLike,
  createDelivery,
  type Delivery,
  PosthornError,
  type Publisher,
  type SettlementCapabilities,
  type Subscriber,
} from "@posthorn/core";
import {
  extractTraceContext,
  formatTraceparent,
  injectTraceContext,
  instrumentPublisher,
  instrumentSubscriber,
  parseTraceparent,
} from "@posthorn/otel";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer("test");
const manager = new AsyncHooksContextManager();

beforeAll(() => {
  manager.enable();
  context.setGlobalContextManager(manager);
});
afterAll(() => {
  context.disable();
});
beforeEach(() => exporter.reset());

const caps: SettlementCapabilities = {
  release: "native",
  releaseDelay: false,
  reject: "native",
  inProgress: false,
  deliveryCount: "native",
};

// An in-process transport: what is published is delivered to the subscriber as is.
function loopback(ready: Promise<void> = Promise.resolve()): {
  publisher: Publisher;
  subscriber: Subscriber;
  settled: string[];
} {
  const queue = new AsyncQueue<Delivery>();
  const settled: string[] = [];
  const publisher: Publisher = {
    async publish(events) {
      const list = (Array.isArray(events) ? events : [events]) as CloudEventLike[];
      for (const e of list) {
        queue.push(
          createDelivery({
            message: { body: new Uint8Array(0), properties: {} },
            event: CloudEvent.from(e),
            deliveryCount: 1,
            capabilities: caps,
            accept: () => void settled.push("accept"),
            release: () => void settled.push("release"),
            reject: () => void settled.push("reject"),
          }),
        );
      }
    },
    close: async () => queue.end(),
  };
  const subscriber: Subscriber = {
    capabilities: caps,
    ready,
    close: async () => queue.end(),
    [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator](),
  };
  return { publisher, subscriber, settled };
}

const event = new CloudEvent({
  specversion: "1.0",
  id: "e-1",
  source: "/orders",
  type: "com.example.order.created",
  subject: "42",
});

describe("traceparent", () => {
  it("parses and formats W3C traceparent values", () => {
    const value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const sc = parseTraceparent(value, "rojo=00f067aa0ba902b7");
    expect(sc?.traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(sc?.traceState?.get("rojo")).toBe("00f067aa0ba902b7");
    expect(formatTraceparent(sc as never)).toBe(value);
  });
  it.each([
    "",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
  ])("rejects %j", (value) => expect(parseTraceparent(value)).toBeUndefined());
  it("injects the active span and extracts it back", () => {
    const span = tracer.startSpan("outer");
    const injected = injectTraceContext(event, trace.setSpan(context.active(), span));
    span.end();
    expect(injected.traceparent).toBe(formatTraceparent(span.spanContext()));
    expect(trace.getSpanContext(extractTraceContext(injected))?.spanId).toBe(
      span.spanContext().spanId,
    );
    expect(injectTraceContext(event)).toBe(event);
  });
});

describe("instrumented publisher and subscriber", () => {
  it("produce a PRODUCER and a CONSUMER span in one trace, linked, with messaging attributes", async () => {
    const { publisher, subscriber, settled } = loopback();
    const pub = instrumentPublisher(publisher, { tracer, system: "test", destination: "orders" });
    const sub = instrumentSubscriber(subscriber, { tracer, system: "test", destination: "orders" });
    await pub.publish(event);
    for await (const d of sub) {
      expect(d.event?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      await d.accept();
      break;
    }
    expect(settled).toEqual(["accept"]);
    const spans = exporter.getFinishedSpans();
    const producer = spans.find((s) => s.kind === SpanKind.PRODUCER);
    const consumer = spans.find((s) => s.kind === SpanKind.CONSUMER);
    expect(producer?.name).toBe("send orders");
    expect(consumer?.name).toBe("process orders");
    expect(consumer?.spanContext().traceId).toBe(producer?.spanContext().traceId);
    expect(consumer?.links[0]?.context.spanId).toBe(producer?.spanContext().spanId);
    expect(producer?.attributes["messaging.destination.name"]).toBe("orders");
    expect(producer?.attributes["cloudevents.event_type"]).toBe("com.example.order.created");
    expect(consumer?.attributes["messaging.operation.settlement"]).toBe("accept");
  });

  it("publishes an event that already carries a traceparent in its trace when no span is active", async () => {
    const { publisher, subscriber } = loopback();
    const pub = instrumentPublisher(publisher, { tracer, system: "test", destination: "fwd" });
    const upstream = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    await pub.publish(
      event.cloneWith({ traceparent: upstream, tracestate: "rojo=00f067aa0ba902b7" }),
    );
    const producer = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.PRODUCER);
    expect(producer?.spanContext().traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(producer?.parentSpanContext?.spanId).toBe("b7ad6b7169203331");
    for await (const d of subscriber) {
      // The event left in the upstream trace, as a child of the PRODUCER span, its tracestate kept.
      expect(d.event?.traceparent).toBe(formatTraceparent(producer?.spanContext() as never));
      expect(d.event?.tracestate).toBe("rojo=00f067aa0ba902b7");
      await d.accept();
      break;
    }
    // An active span still wins over the event's own traceparent.
    exporter.reset();
    const outer = tracer.startSpan("outer");
    await context.with(trace.setSpan(context.active(), outer), () =>
      pub.publish(event.cloneWith({ traceparent: upstream })),
    );
    outer.end();
    const second = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.PRODUCER);
    expect(second?.spanContext().traceId).toBe(outer.spanContext().traceId);
  });
  it("marks a failed publish and a rejected delivery as errors", async () => {
    const failing: Publisher = {
      publish: () => Promise.reject(new Error("broker down")),
      close: async () => {},
    };
    await expect(
      instrumentPublisher(failing, { tracer, system: "test", destination: "x" }).publish(event),
    ).rejects.toThrow("broker down");
    expect(exporter.getFinishedSpans()[0]?.status.code).toBe(2);
    const { publisher, subscriber } = loopback();
    await publisher.publish(event);
    for await (const d of instrumentSubscriber(subscriber, {
      tracer,
      system: "test",
      destination: "x",
    })) {
      await d.reject("bad");
      break;
    }
    expect(exporter.getFinishedSpans().at(-1)?.status.code).toBe(2);
  });

  it("keeps one trace id across several hops when handlers publish in the delivery's context", async () => {
    const hops = [loopback(), loopback(), loopback(), loopback()];
    const root = tracer.startSpan("request");
    await context.with(trace.setSpan(context.active(), root), () =>
      instrumentPublisher(hops[0]!.publisher, {
        tracer,
        system: "test",
        destination: "hop0",
      }).publish(event),
    );
    root.end();
    for (let i = 0; i < hops.length; i++) {
      const sub = instrumentSubscriber(hops[i]!.subscriber, {
        tracer,
        system: "test",
        destination: `hop${i}`,
      });
      for await (const d of sub) {
        const next = hops[i + 1];
        if (next) {
          await context.with(d.context, () =>
            instrumentPublisher(next.publisher, {
              tracer,
              system: "test",
              destination: `hop${i + 1}`,
            }).publish(d.event as CloudEvent),
          );
        }
        await d.accept();
        break;
      }
    }
    const traceIds = new Set(exporter.getFinishedSpans().map((s) => s.spanContext().traceId));
    expect(traceIds).toEqual(new Set([root.spanContext().traceId]));
    expect(exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.CONSUMER)).toHaveLength(4);
  });

  it("forwards the subscriber's ready, resolved or rejected", async () => {
    const options = { tracer, system: "test", destination: "orders" };
    const { subscriber } = loopback();
    await expect(instrumentSubscriber(subscriber, options).ready).resolves.toBeUndefined();
    const refused = new PosthornError("ConnectionFailed", "the broker refused the subscription");
    const failing = loopback(Promise.reject(refused));
    await expect(instrumentSubscriber(failing.subscriber, options).ready).rejects.toBe(refused);
  });
});

describe("what a user gets wrong", () => {
  const options = { tracer, system: "test", destination: "orders" };

  it.each([
    ["destination", { tracer, system: "test" }],
    ["destination", { tracer, system: "test", destination: "" }],
    ["system", { tracer, destination: "orders" }],
    ["system", { tracer, system: 7, destination: "orders" }],
    ["tracer", { tracer: {}, system: "test", destination: "orders" }],
    ["options", undefined],
  ])("refuses a missing or wrong %s where the wrapper is made", (name, given) => {
    const { publisher, subscriber } = loopback();
    const refusal = expect.objectContaining({
      name: "PosthornError",
      code: "NotSupported",
      attribute: name,
    });
    expect(() => instrumentPublisher(publisher, given as never)).toThrow(refusal);
    expect(() => instrumentSubscriber(subscriber, given as never)).toThrow(refusal);
  });

  it("refuses something that is not a publisher or a subscriber", () => {
    expect(() => instrumentPublisher(undefined as never, options)).toThrow(
      expect.objectContaining({ code: "NotSupported", attribute: "publisher" }),
    );
    expect(() => instrumentSubscriber({} as never, options)).toThrow(
      expect.objectContaining({ code: "NotSupported", attribute: "subscriber" }),
    );
  });

  it("keeps the wrapped publisher's and subscriber's other members (flush, address)", async () => {
    const { publisher, subscriber } = loopback();
    // A class with a private field: its methods only work called on the instance itself.
    class Flushing {
      #flushes = 0;
      readonly address = "orders-queue";
      publish = publisher.publish;
      close = publisher.close;
      async flush(): Promise<number> {
        this.#flushes += 1;
        return this.#flushes;
      }
    }
    const pub = instrumentPublisher(new Flushing(), options);
    await pub.publish(event);
    await expect(pub.flush()).resolves.toBe(1);
    expect(pub.address).toBe("orders-queue");
    const sub = instrumentSubscriber(
      Object.assign(subscriber, { address: "orders-queue" }),
      options,
    );
    expect(sub.address).toBe("orders-queue");
    for await (const d of sub) {
      expect(d.span).toBeDefined();
      await d.accept();
      break;
    }
  });

  it("marks a settlement that fails as an error, and ends the span once", async () => {
    const { publisher } = loopback();
    const refusing: Subscriber = {
      capabilities: caps,
      ready: Promise.resolve(),
      close: async () => {},
      async *[Symbol.asyncIterator]() {
        yield createDelivery({
          message: { body: new Uint8Array(0), properties: {} },
          event,
          deliveryCount: 1,
          capabilities: caps,
          accept: () => {},
          release: () => {},
          reject: () => {
            throw new PosthornError("NotSupported", "reject() is not supported here");
          },
        });
      },
    };
    await publisher.close();
    for await (const d of instrumentSubscriber(refusing, options)) {
      await expect(d.reject("bad")).rejects.toThrow("not supported here");
      // The delivery refuses a second settlement; the span, ended already, is left as it was.
      await expect(d.accept()).rejects.toThrow(
        expect.objectContaining({ code: "SettlementFailed" }),
      );
      break;
    }
    const consumers = exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.CONSUMER);
    expect(consumers).toHaveLength(1);
    expect(consumers[0]?.status).toEqual({ code: 2, message: "reject() is not supported here" });
    expect(consumers[0]?.attributes["messaging.operation.settlement"]).toBeUndefined();
  });

  it("reads a traceparent that is not a string as none, and refuses an event that is not an object", () => {
    expect(parseTraceparent(undefined as never)).toBeUndefined();
    expect(parseTraceparent(42 as never)).toBeUndefined();
    expect(() => extractTraceContext(null as never)).toThrow(
      expect.objectContaining({ name: "PosthornError", code: "InvalidEvent" }),
    );
  });
});
