import {
  type Context,
  context as contextApi,
  createTraceState,
  type SpanContext,
  TraceFlags,
  trace,
} from "@opentelemetry/api";
import { CloudEvent, type CloudEventLike, invalidEvent } from "@posthorn/core";

// W3C Trace Context level 1, section 3.2: version "00", 32 hex trace id, 16 hex parent id, 2 hex
// flags; all-zero ids are invalid. Later versions may append fields after another dash.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * Reads a `traceparent` value (the distributed-tracing extension, W3C Trace Context).
 *
 * @param traceparent - the `traceparent` value, e.g. `00-<32 hex>-<16 hex>-01`
 * @param tracestate - the `tracestate` value, when the event carries one
 * @returns the remote span context (only the sampled flag kept), or `undefined` when the value is
 *   not a valid traceparent (a value that is not a string included)
 */
export function parseTraceparent(
  traceparent: string,
  tracestate?: string,
): SpanContext | undefined {
  if (typeof traceparent !== "string") return undefined;
  const m = TRACEPARENT.exec(traceparent.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [
    string,
    string,
    string,
    string,
    string,
    string | undefined,
  ];
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return {
    traceId,
    spanId,
    traceFlags: Number.parseInt(flags, 16) & TraceFlags.SAMPLED,
    isRemote: true,
    ...(typeof tracestate === "string" && tracestate !== ""
      ? { traceState: createTraceState(tracestate) }
      : {}),
  };
}

/**
 * Writes a span context as a `traceparent` value (version `00`).
 *
 * @param spanContext - the span context; its ids are written as they are, unchecked
 */
export function formatTraceparent(spanContext: SpanContext): string {
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, "0");
  return `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`;
}

/**
 * A copy of the event carrying the span context of `ctx` (default: the active context) in the
 * `traceparent` and `tracestate` extensions. Returns the event unchanged when there is no valid
 * span in that context.
 *
 * @param event - the event; one that is not a Posthorn `CloudEvent` is validated first
 * @param ctx - the context whose span to carry (default: the active context)
 * @throws {@link PosthornError} `InvalidEvent` when `event` is not a valid event
 */
export function injectTraceContext<T>(
  event: CloudEventLike<T>,
  ctx: Context = contextApi.active(),
): CloudEvent<T> {
  const e = CloudEvent.from(event);
  const sc = trace.getSpanContext(ctx);
  if (!sc || !trace.isSpanContextValid(sc)) return e;
  const tracestate = sc.traceState?.serialize();
  return e.cloneWith({
    traceparent: formatTraceparent(sc),
    tracestate: tracestate ? tracestate : undefined,
  });
}

/**
 * The context an event's `traceparent`/`tracestate` extensions describe, set as the remote parent
 * on `parent`. Without a valid traceparent, `parent` is returned.
 *
 * @param event - the received event
 * @param parent - the context to set the remote parent on (default: the active context)
 * @throws {@link PosthornError} `InvalidEvent` when `event` is not an object
 */
export function extractTraceContext(
  event: CloudEventLike,
  parent: Context = contextApi.active(),
): Context {
  if (typeof event !== "object" || event === null) {
    throw invalidEvent("an event must be an object");
  }
  const traceparent = (event as Record<string, unknown>).traceparent;
  if (typeof traceparent !== "string") return parent;
  const tracestate = (event as Record<string, unknown>).tracestate;
  const sc = parseTraceparent(traceparent, typeof tracestate === "string" ? tracestate : undefined);
  return sc ? trace.setSpanContext(parent, sc) : parent;
}
