import {
  type Attributes,
  type Context,
  context as contextApi,
  type Link,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import {
  CloudEvent,
  type CloudEventLike,
  type Delivery,
  type Publisher,
  type PublishOptions,
  type Subscriber,
} from "@posthorn/core";
import { extractTraceContext, injectTraceContext } from "./trace-context.js";

/** Options for {@link instrumentPublisher} and {@link instrumentSubscriber}. */
export interface InstrumentOptions {
  /** The tracer spans come from. Default: `trace.getTracer("@posthorn/otel")`. */
  tracer?: Tracer;
  /** `messaging.system`: `kafka`, `rabbitmq`, `mqtt`, `nats`, `http`, `websocket`, ... */
  system: string;
  /** `messaging.destination.name`: the topic, queue, subject or URL path. */
  destination: string;
}

const defaultTracer = (): Tracer => trace.getTracer("@posthorn/otel");

/**
 * CloudEvents semantic-convention attributes of an event (`cloudevents.event_*`), plus
 * `messaging.message.id` (the event `id`).
 *
 * @param event - the event
 */
export function eventAttributes(event: CloudEvent): Attributes {
  const attrs: Attributes = {
    "cloudevents.event_id": event.id,
    "cloudevents.event_source": event.source,
    "cloudevents.event_type": event.type,
    "cloudevents.event_spec_version": event.specversion,
    "messaging.message.id": event.id,
  };
  if (event.subject !== undefined) attrs["cloudevents.event_subject"] = event.subject;
  return attrs;
}

/**
 * Wraps a publisher so each `publish` runs in a PRODUCER span named `send <destination>` (OpenTelemetry
 * messaging semantic conventions), and every event leaves carrying that span's context in its
 * `traceparent`/`tracestate` extensions. The span ends when the transport acknowledged, with an
 * error status when it did not.
 *
 * @param publisher - the publisher to wrap; `close()` passes through to it
 * @param options - the tracer, `messaging.system` and `messaging.destination.name`
 */
export function instrumentPublisher<O extends PublishOptions>(
  publisher: Publisher<O>,
  options: InstrumentOptions,
): Publisher<O> {
  const tracer = options.tracer ?? defaultTracer();
  return {
    async publish(
      events: CloudEventLike | readonly CloudEventLike[],
      publishOptions?: O,
    ): Promise<void> {
      const list = Array.isArray(events)
        ? (events as readonly CloudEventLike[]).map((e) => CloudEvent.from(e))
        : [CloudEvent.from(events as CloudEventLike)];
      const attributes: Attributes = {
        "messaging.system": options.system,
        "messaging.destination.name": options.destination,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
      };
      if (list.length === 1) Object.assign(attributes, eventAttributes(list[0] as CloudEvent));
      else attributes["messaging.batch.message_count"] = list.length;
      const span = tracer.startSpan(`send ${options.destination}`, {
        kind: SpanKind.PRODUCER,
        attributes,
      });
      const ctx = trace.setSpan(contextApi.active(), span);
      try {
        const traced = list.map((e) => injectTraceContext(e, ctx));
        await contextApi.with(ctx, () =>
          publisher.publish(
            Array.isArray(events) ? traced : (traced[0] as CloudEvent),
            publishOptions,
          ),
        );
        span.setStatus({ code: SpanStatusCode.OK });
      } catch (err) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message });
        throw err;
      } finally {
        span.end();
      }
    },
    close: () => publisher.close(),
  };
}

/** A delivery with the span of its processing, and the context to run follow-up work in. */
export interface TracedDelivery<T = unknown> extends Delivery<T> {
  /** The CONSUMER span `process <destination>`; it ends when the delivery is settled. */
  readonly span: Span;
  /** The context with that span active: run handlers in it so what they publish joins the trace. */
  readonly context: Context;
}

/**
 * Wraps a subscriber so each delivery gets a CONSUMER span `process <destination>`, a child of the
 * producer's context carried in the event's `traceparent` (so one trace id follows the event
 * across transports) and linked to it. The span ends when the delivery is settled; `release` and
 * `reject` set an error status.
 *
 * @param subscriber - the subscriber to wrap
 * @param options - the tracer, `messaging.system` and `messaging.destination.name`
 */
export function instrumentSubscriber<T>(
  subscriber: Subscriber<T>,
  options: InstrumentOptions,
): Subscriber<T> & AsyncIterable<TracedDelivery<T>> {
  const tracer = options.tracer ?? defaultTracer();
  const wrap = (delivery: Delivery<T>): TracedDelivery<T> => {
    const parent = delivery.event
      ? extractTraceContext(delivery.event, contextApi.active())
      : contextApi.active();
    const remote = trace.getSpanContext(parent);
    const links: Link[] = remote && trace.isSpanContextValid(remote) ? [{ context: remote }] : [];
    const span = tracer.startSpan(
      `process ${options.destination}`,
      {
        kind: SpanKind.CONSUMER,
        links,
        attributes: {
          "messaging.system": options.system,
          "messaging.destination.name": options.destination,
          "messaging.operation.type": "process",
          "messaging.operation.name": "process",
          "messaging.message.delivery_count": delivery.deliveryCount,
          ...(delivery.event ? eventAttributes(delivery.event) : {}),
        },
      },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    const settle = async (
      outcome: string,
      action: () => Promise<void>,
      failed: boolean,
    ): Promise<void> => {
      try {
        await action();
        span.setAttribute("messaging.operation.settlement", outcome);
        span.setStatus(
          failed ? { code: SpanStatusCode.ERROR, message: outcome } : { code: SpanStatusCode.OK },
        );
      } catch (err) {
        span.recordException(err as Error);
        throw err;
      } finally {
        span.end();
      }
    };
    return Object.assign(Object.create(delivery) as Delivery<T>, {
      span,
      context: ctx,
      accept: () => settle("accept", () => delivery.accept(), false),
      release: (o?: { delayMs?: number }) => settle("release", () => delivery.release(o), true),
      reject: (r?: string | Error) => settle("reject", () => delivery.reject(r), true),
    }) as TracedDelivery<T>;
  };
  return {
    get capabilities() {
      return subscriber.capabilities;
    },
    get ready() {
      return subscriber.ready;
    },
    close: () => subscriber.close(),
    async *[Symbol.asyncIterator]() {
      for await (const delivery of subscriber) yield wrap(delivery);
    },
  };
}
