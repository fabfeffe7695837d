import { CloudEvent, type CloudEventLike } from "./event.js";

/**
 * The event as a plain object of the `cloudevents` package's `CloudEventV1` shape, ready for
 * `new CloudEvent(...)` from that package: attributes and extensions as top-level properties,
 * and `data` (binary data stays a `Uint8Array`, which that package turns into `data_base64`).
 *
 * Going the other way needs no function: every Posthorn API accepts that package's instances and
 * plain `CloudEventV1` objects, and {@link CloudEvent.from} converts one explicitly.
 *
 * @param input - the event; one that is not a Posthorn `CloudEvent` is validated first
 * @returns a new plain object
 * @throws {@link PosthornError} `InvalidEvent` when `input` is not a valid event
 */
export function toCloudEventV1(input: CloudEventLike): Record<string, unknown> {
  const event = CloudEvent.from(input);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(event)) out[key] = event[key];
  return out;
}
