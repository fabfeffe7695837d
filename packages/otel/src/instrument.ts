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
  PosthornError,
  type Publisher,
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

function refused(name: string, rule: string, value: unknown): PosthornError {
  const shown =
    value === null ? "null" : typeof value === "string" ? JSON.stringify(value) : typeof value;
  return new PosthornError("NotSupported", `${name} must be ${rule}, got ${shown}`, {
    attribute: name,
  });
}

// Checked where the wrapper is made: a missing option would otherwise name every span
// `send undefined`, and a missing publisher or subscriber fail later with a TypeError.
function checkOptions(options: InstrumentOptions | undefined): Tracer {
  if (typeof options !== "object" || options === null) {
    throw refused("options", "an object with system and destination", options);
  }
  for (const name of ["system", "destination"] as const) {
    const value = options[name];
    if (typeof value !== "string" || value === "") {
      throw refused(name, "a non-empty string", value);
    }
  }
  if (options.tracer !== undefined && typeof options.tracer?.startSpan !== "function") {
    throw refused("tracer", "an OpenTelemetry Tracer", options.tracer);
  }
  return options.tracer ?? defaultTracer();
}

// The wrapped object with `own` in place of its members of the same name; every other member
// (a NATS publisher's flush(), an AMQP link's address) reads from the wrapped object, methods
// bound to it.
function forwarding<W extends object>(wrapped: W, own: Record<PropertyKey, unknown>): W {
  return new Proxy(wrapped, {
    get(target, key) {
      if (Object.hasOwn(own, key)) return own[key];
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
    has: (target, key) => Object.hasOwn(own, key) || Reflect.has(target, key),
  });
}

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
 * `traceparent`/`tracestate` extensions. The span is a child of the active span; with none
 * active, of the trace a single event already carries in its `traceparent`. The span ends when
 * the transport acknowledged, with an error status when it did not.
 *
 * The wrapper has the wrapped publisher's type: every other member (`close()`, a NATS
 * publisher's `flush()`, an AMQP publisher's `address` and `ready`) passes through to it.
 *
 * @param publisher - the publisher to wrap
 * @param options - the tracer, `messaging.system` and `messaging.destination.name`
 * @throws {@link PosthornError} `NotSupported` naming the option, when `system` or `destination`
 *   is not a non-empty string, or `publisher` has no `publish` method
 */
// biome-ignore lint/suspicious/noExplicitAny: any publisher, whatever its options
export function instrumentPublisher<P extends Publisher<any>>(
  publisher: P,
  options: InstrumentOptions,
): P {
  const tracer = checkOptions(options);
  if (typeof (publisher as Partial<Publisher> | null)?.publish !== "function") {
    throw refused("publisher", "a Publisher (an object with publish and close)", publisher);
  }
  return forwarding(publisher, {
    async publish(
      events: CloudEventLike | readonly CloudEventLike[],
      publishOptions?: Parameters<P["publish"]>[1],
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
      // With no span active, the trace an event already carries (a traceparent set upstream, or
      // an event forwarded as received) is the parent: starting a new trace would overwrite that
      // traceparent and cut the event off from it. A batch has no single such trace.
      let parent = contextApi.active();
      const active = trace.getSpanContext(parent);
      if (list.length === 1 && !(active && trace.isSpanContextValid(active))) {
        parent = extractTraceContext(list[0] as CloudEvent, parent);
      }
      const span = tracer.startSpan(
        `send ${options.destination}`,
        { kind: SpanKind.PRODUCER, attributes },
        parent,
      );
      const ctx = trace.setSpan(parent, span);
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
  });
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
 * across transports) and linked to it. The span ends when the delivery is first settled; `release`
 * and `reject` set an error status, and so does a settlement that fails (the error is recorded on
 * the span and rethrown). Every other member of the subscriber (`ready`, `close()`, an AMQP
 * subscriber's `address`) passes through to it.
 *
 * @param subscriber - the subscriber to wrap
 * @param options - the tracer, `messaging.system` and `messaging.destination.name`
 * @throws {@link PosthornError} `NotSupported` naming the option, when `system` or `destination`
 *   is not a non-empty string, or `subscriber` is not async iterable
 */
export function instrumentSubscriber<T, S extends Subscriber<T> = Subscriber<T>>(
  subscriber: S & Subscriber<T>,
  options: InstrumentOptions,
): Omit<S, typeof Symbol.asyncIterator> & Subscriber<T> & AsyncIterable<TracedDelivery<T>> {
  const tracer = checkOptions(options);
  if (typeof (subscriber as Partial<Subscriber> | null)?.[Symbol.asyncIterator] !== "function") {
    throw refused("subscriber", "a Subscriber (an async iterable of deliveries)", subscriber);
  }
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
    let ended = false;
    const settle = async (
      outcome: string,
      action: () => Promise<void>,
      failed: boolean,
    ): Promise<void> => {
      // A second settlement goes to the delivery (which refuses it) and leaves the ended span be.
      if (ended) return action();
      ended = true;
      try {
        await action();
        span.setAttribute("messaging.operation.settlement", outcome);
        span.setStatus(
          failed ? { code: SpanStatusCode.ERROR, message: outcome } : { code: SpanStatusCode.OK },
        );
      } catch (err) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message });
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
  return forwarding<Subscriber<T>>(subscriber, {
    async *[Symbol.asyncIterator]() {
      for await (const delivery of subscriber as Subscriber<T>) yield wrap(delivery);
    },
  }) as unknown as Omit<S, typeof Symbol.asyncIterator> &
    Subscriber<T> &
    AsyncIterable<TracedDelivery<T>>;
}
