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
