import {
  type CloudEvent,
  type ContentMode,
  type Delivery,
  differences,
  isPosthornError,
  type Message,
  type Publisher,
  type Subscriber,
  utf8Decode,
} from "@posthorn/core";
import { json } from "@posthorn/format-json";
import type { TransportTraits } from "./driver.js";
import { type Endpoint, openEndpoint } from "./endpoint.js";
import { type FormatName, withPort } from "./endpoint-url.js";
import { describeError } from "./redact.js";

/** One way to carry events over a transport: a mode and, except for binary, a format. */
export interface MatrixPath {
  readonly mode: ContentMode;
  readonly format?: FormatName;
}

/** `binary`, `structured/avro`, `batch/json`. */
export function pathName(path: MatrixPath): string {
  return path.format === undefined ? path.mode : `${path.mode}/${path.format}`;
}

/**
 * One row of the matrix: a transport (or a variant of one, like MQTT 3.1.1 or JetStream) and how
 * to make a fresh destination URL on it for each cell.
 */
export interface MatrixRow {
  /** Shown in the matrix: `kafka`, `mqtt 5`, `nats jetstream`, ... */
  readonly label: string;
  /** The transport name (`openEndpoint(...).transport`). */
  readonly transport: string;
  /** A URL for a new, unique destination; `mode` and `format` are added by the runner. */
  url(unique: string): Promise<string> | string;
  /** What backs this row, for the report (`RabbitMQ at 127.0.0.1:5672`, `embedded aedes`). */
  readonly backend: string;
  /** Why a vector cannot travel this row on a path, or `undefined`. */
  skip?(vector: { name: string; tags: readonly string[] }, path: MatrixPath): string | undefined;
}

/** Every path a row's endpoint supports. */
export async function pathsOf(row: MatrixRow): Promise<MatrixPath[]> {
  const endpoint = await openEndpoint(await row.url("probe"));
  const paths: MatrixPath[] = [];
  if (endpoint.support.binary === true) paths.push({ mode: "binary" });
  for (const mode of ["structured", "batch"] as const) {
    const formats = endpoint.support[mode];
    if (typeof formats === "string") continue;
    for (const format of formats) paths.push({ mode, format });
  }
  return paths;
}

/** Adds `mode` and `format` to a URL's query. */
export function withPath(url: string, path: MatrixPath): string {
  const q = url.indexOf("?");
  const params = new URLSearchParams(q < 0 ? "" : url.slice(q + 1));
  params.set("mode", path.mode);
  if (path.format !== undefined) params.set("format", path.format);
  else params.delete("format");
  return `${q < 0 ? url : url.slice(0, q)}?${params.toString()}`;
}

/** An open cell: its endpoint, a subscriber already receiving, and a publisher. */
export interface OpenCell {
  readonly endpoint: Endpoint;
  readonly publisher: Publisher;
  readonly subscriber: Subscriber;
  /** Pulls the next delivery, or `undefined` after `timeoutMs`. */
  next(timeoutMs: number): Promise<Delivery | undefined>;
  close(): Promise<void>;
}

/**
 * Opens the subscriber first (so nothing published is missed), then the publisher. An http:// or
 * ws:// URL with port 0 listens on a port the system picks, and the publisher sends there.
 */
export async function openCell(url: string, timeoutMs = 10_000): Promise<OpenCell> {
  const endpoint = await openEndpoint(url, { timeoutMs });
  const subscriber = await endpoint.createSubscriber();
  let publisher: Publisher;
  try {
    const port = subscriber.listeningPort;
    const target =
      port === undefined ? endpoint : await openEndpoint(withPort(url, port), { timeoutMs });
    publisher = await target.createPublisher();
  } catch (err) {
    await subscriber.close();
    throw err;
  }
  const iterator = subscriber[Symbol.asyncIterator]();
  // A pull that timed out stays pending; the next call takes its result instead of pulling again.
  let pending: Promise<IteratorResult<Delivery>> | undefined;
  return {
    endpoint,
    publisher,
    subscriber,
    async next(ms) {
      pending ??= iterator.next();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), ms);
      });
      const result = await Promise.race([pending, timeout]);
      clearTimeout(timer);
      if (result === "timeout") return undefined;
      pending = undefined;
      return result.done ? undefined : result.value;
    },
    async close() {
      await Promise.allSettled([publisher.close(), subscriber.close()]);
    },
  };
}

/** Bytes of a message as it travelled: body plus property names and values. */
export function messageBytes(message: Message): number {
  let total = message.body.byteLength;
  if (message.contentType !== undefined) total += message.contentType.length;
  for (const [name, value] of Object.entries(message.properties)) {
    total += name.length;
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      if (v instanceof Uint8Array) total += v.byteLength;
      else if (v !== null && v !== undefined) total += String(v).length;
    }
  }
  return total;
}

/** An event as JSON text, for reports (never throws). */
export function eventText(event: unknown): string {
  try {
    return utf8Decode(json.encode(event as CloudEvent));
  } catch {
    try {
      return JSON.stringify(event);
    } catch {
      return String(event);
    }
  }
}

/** What one vector did on one path. */
export interface VectorOutcome {
  readonly vector: string;
  readonly kind: "valid" | "invalid" | "batch";
  readonly status: "pass" | "fail" | "skip";
  /** Why it failed or was skipped. */
  readonly reason?: string;
  /** What was sent (JSON event format, or the attributes of an invalid event). */
  readonly sent?: string;
  /** What came back (JSON event format), or the error. */
  readonly received?: string;
}

/** Compares what came back with what was sent, on canonical forms. */
export function compare(sent: CloudEvent, delivery: Delivery | undefined): string | undefined {
  if (!delivery) return "nothing came back";
  if (!delivery.event) {
    return `came back undecoded: ${delivery.error ? `${delivery.error.code}: ${delivery.error.message}` : "not a CloudEvent"}`;
  }
  const diff = differences(sent, delivery.event);
  return diff.length === 0 ? undefined : `not equivalent: ${diff.join("; ")}`;
}

/** What a delivery was, for a report. */
export function receivedText(delivery: Delivery | undefined): string | undefined {
  if (!delivery) return undefined;
  if (delivery.event) return eventText(delivery.event);
  return delivery.error
    ? `error ${delivery.error.code}: ${delivery.error.message}`
    : `a message that is not a CloudEvent (${delivery.message.body.byteLength} bytes)`;
}

/** Settles a delivery the runner has looked at; settlement errors do not change the outcome. */
export async function settle(delivery: Delivery | undefined): Promise<void> {
  if (!delivery || delivery.settled) return;
  await delivery.accept().catch(() => undefined);
}

/** Whether an error thrown by a publish is a typed Posthorn error (what invalid vectors need). */
export function typedRejection(err: unknown): string | undefined {
  return isPosthornError(err) ? `${err.code}: ${describeError(err)}` : undefined;
}

/** Traits of a path on a row, for choosing which invalid vectors it can detect. */
export function traitsOf(cell: OpenCell): TransportTraits {
  return cell.endpoint.traits;
}

/** What {@link exchange} saw. */
export interface Exchange {
  /** The delivery, when one came before the publish failed or the time ran out. */
  readonly delivery: Delivery | undefined;
  /** When the delivery arrived (`performance.now()`). */
  readonly at: number;
  /** Why the publish failed, when it failed before anything came back. */
  readonly publishError: unknown;
  /**
   * The publish's outcome (the error, or `undefined`). Settle the delivery first: an HTTP
   * publish resolves only once the receiver settled.
   */
  readonly published: Promise<unknown>;
}

/**
 * Publishes and pulls at the same time (an HTTP publish waits for the receiver's settlement, so
 * pulling after publishing would deadlock), and returns as soon as a delivery arrives, the
 * publish fails, or `receiveMs` passes.
 */
export async function exchange(
  cell: OpenCell,
  payload: CloudEvent | CloudEvent[],
  receiveMs: number,
): Promise<Exchange> {
  const receiving = cell.next(receiveMs).then((d) => ({ d, at: performance.now() }));
  const published = cell.publisher.publish(payload, { timeoutMs: 10_000 }).then(
    () => undefined,
    (err: unknown) => err ?? new Error("publish failed"),
  );
  const first = await Promise.race([
    receiving.then((r) => ({ kind: "received" as const, r })),
    published.then((e) => ({ kind: "published" as const, e })),
  ]);
  if (first.kind === "published" && first.e !== undefined) {
    return { delivery: undefined, at: performance.now(), publishError: first.e, published };
  }
  const r = first.kind === "received" ? first.r : await receiving;
  return { delivery: r.d, at: r.at, publishError: undefined, published };
}
