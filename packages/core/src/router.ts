import type { Delivery } from "./envelopes.js";
import { isPosthornError } from "./errors.js";
import { type CloudEvent, withDataAsIs } from "./event.js";
import { checkCountOption } from "./options.js";

/**
 * The Standard Schema interface (standardschema.dev, v1): what zod, valibot, ArkType, typebox and
 * others implement. Declared here structurally so no validator library becomes a dependency.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  /** The standard's members, under a name no validator uses for anything else. */
  readonly "~standard": {
    /** The version of the standard; 1. */
    readonly version: 1;
    /** The library that made the schema, e.g. `zod`. */
    readonly vendor: string;
    /** Checks a value: the (possibly transformed) value, or the issues found; may be async. */
    readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>;
    /** Carries the input and output types for inference only; never read at run time. */
    readonly types?:
      | {
          /** The type the schema accepts. */
          readonly input: Input;
          /** The type validation produces. */
          readonly output: Output;
        }
      | undefined;
  };
}

/** A Standard Schema validation result. */
export type StandardResult<Output> =
  | {
      /** The validated value, possibly transformed by the schema (the router hands it on). */
      readonly value: Output;
      /** Absent on success. */
      readonly issues?: undefined;
    }
  | {
      /** What the validator found wrong; the router sends the delivery to the fallback. */
      readonly issues: readonly StandardIssue[];
    };

/** One problem a Standard Schema validator found. */
export interface StandardIssue {
  /** What is wrong, in the validator's words. */
  readonly message: string;
  /** Where in the value, from the root: keys and indexes, bare or wrapped. */
  readonly path?:
    | ReadonlyArray<
        | PropertyKey
        | {
            /** One key or index of the path. */
            readonly key: PropertyKey;
          }
      >
    | undefined;
}

/** The output type of a Standard Schema. */
export type InferOutput<S> = S extends StandardSchemaV1<unknown, infer O> ? O : unknown;

/** Which events a route takes: an exact `type`, or patterns where `*` matches any run of characters. */
export interface RouteMatch {
  /** The event type, exactly, or a pattern with `*`. */
  readonly type: string;
  /** The event's `source`, exactly or as a `*` pattern; any source when left out. */
  readonly source?: string;
  /**
   * The event's `subject`, exactly or as a `*` pattern; any subject when left out. An event
   * without a subject matches no route that names one.
   */
  readonly subject?: string;
}

/** A route's handler: gets the event with validated, typed data, and the delivery to settle. */
export type RouteHandler<T> = (
  event: CloudEvent<T>,
  delivery: Delivery<T>,
) => unknown | Promise<unknown>;

/** Why a delivery went to the fallback. */
export type FallbackReason = "not-an-event" | "unknown-type" | "invalid-data";

/** Handles what no route takes. The default rejects (dead-letters) it. */
export type RouterFallback = (
  delivery: Delivery,
  reason: FallbackReason,
  issues: readonly StandardIssue[] | undefined,
) => unknown | Promise<unknown>;

/** Options for {@link EventRouter}. */
export interface EventRouterOptions {
  /** What happens to unknown types, invalid data and undecodable messages. Default: reject. */
  fallback?: RouterFallback;
  /**
   * Called with errors the router handled itself (a failed handler, a settlement that failed).
   * An error it throws is ignored: the router goes on.
   */
  onError?: (error: unknown, delivery: Delivery) => void;
}

/** Options for {@link EventRouter.run}. */
export interface RouterRunOptions {
  /**
   * How many deliveries are handled at once: a whole number, 1 or more, or `Infinity` for no
   * limit. Default 1 (in order).
   */
  concurrency?: number;
}

interface Route {
  readonly match: RouteMatch;
  readonly type: RegExp | undefined;
  readonly source: RegExp | undefined;
  readonly subject: RegExp | undefined;
  readonly schema: StandardSchemaV1 | undefined;
  readonly handler: RouteHandler<unknown>;
}

function pattern(text: string | undefined): RegExp | undefined {
  if (text === undefined || !text.includes("*")) return undefined;
  const escaped = text.split("*").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${escaped.join(".*")}$`);
}

function checkMatch(m: RouteMatch): void {
  if (typeof m !== "object" || m === null || typeof m.type !== "string" || m.type === "") {
    throw new TypeError(
      'a route needs an event type: on("com.example.type", ...) or on({ type, source?, subject? }, ...)',
    );
  }
  for (const field of ["source", "subject"] as const) {
    if (m[field] !== undefined && typeof m[field] !== "string") {
      throw new TypeError(`a route's ${field} must be a string (exact, or a * pattern)`);
    }
  }
}

function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  if ((typeof value !== "object" && typeof value !== "function") || value === null) return false;
  const standard = (value as { "~standard"?: { validate?: unknown } })["~standard"];
  return (
    typeof standard === "object" && standard !== null && typeof standard.validate === "function"
  );
}

function matches(
  value: string | undefined,
  exact: string | undefined,
  re: RegExp | undefined,
): boolean {
  if (exact === undefined) return true;
  if (value === undefined) return false;
  return re ? re.test(value) : value === exact;
}

async function defaultFallback(delivery: Delivery): Promise<void> {
  try {
    await delivery.reject("no route took this delivery");
  } catch (err) {
    // Transports with no dead-letter path (core NATS, WebSocket) cannot reject: dropping is all
    // that is left, and the error callback hears about it.
    if (isPosthornError(err, "NotSupported")) await delivery.accept();
    else throw err;
  }
}

/**
 * Dispatches deliveries from any subscriber to handlers by event `type` (and optionally `source`
 * and `subject` patterns), validating `data` with a Standard Schema so the handler receives a
 * typed event.
 *
 * Settlement: a handler that returns accepts the delivery (unless it settled it itself); one that
 * throws releases it where the transport can redeliver, and rejects it otherwise. Unknown types,
 * invalid data and messages that are not CloudEvents go to the fallback (default: reject).
 *
 * @example
 * ```ts
 * const router = new EventRouter();
 * router.on("com.example.order.created", OrderSchema, async (event) => {
 *   await ship(event.data.orderId); // data is typed by the schema
 * });
 * await router.run(subscriber);
 * ```
 */
export class EventRouter {
  readonly #exact = new Map<string, Route[]>();
  readonly #patterns: Route[] = [];
  readonly #fallback: RouterFallback;
  readonly #onError: ((error: unknown, delivery: Delivery) => void) | undefined;

  /**
   * Makes a router with no routes.
   *
   * @param options - the fallback and the error callback
   */
  constructor(options: EventRouterOptions = {}) {
    this.#fallback = options.fallback ?? defaultFallback;
    this.#onError = options.onError;
  }

  /**
   * Adds a route. Routes for an exact type are tried before pattern routes; within each, in the
   * order added; the first whose `source` and `subject` match takes the delivery.
   *
   * @param match - the event type (exact, or a `*` pattern), or a type with `source` and `subject`
   * @param schema - a Standard Schema for `data` (an object or, as ArkType's, a function with a
   *   `~standard` member); data it rejects goes to the fallback (`invalid-data`), and its output,
   *   when different, replaces `data` as it is, even where `datacontenttype` would not allow it
   *   (an object decoded from `application/avro` bytes): the handler's event is for reading, and
   *   `delivery.event` is the event as received
   * @param handler - gets the event with typed data and the delivery
   * @returns this router, for chaining
   * @throws TypeError when `match` has no `type` string, `schema` is not a Standard Schema, or
   *   `handler` is not a function
   */
  on<S extends StandardSchemaV1>(
    match: string | RouteMatch,
    schema: S,
    handler: RouteHandler<InferOutput<S>>,
  ): this;
  /**
   * Adds a route that takes `data` as it is, unvalidated (typed `T` by the caller's word alone).
   *
   * @param match - the event type (exact, or a `*` pattern), or a type with `source` and `subject`
   * @param handler - gets the event and the delivery
   * @returns this router, for chaining
   * @throws TypeError when `match` has no `type` string, or `handler` is not a function (a
   *   schema given without a handler included)
   */
  on<T = unknown>(match: string | RouteMatch, handler: RouteHandler<T>): this;
  on(
    match: string | RouteMatch,
    schemaOrHandler: StandardSchemaV1 | RouteHandler<unknown>,
    maybeHandler?: RouteHandler<unknown>,
  ): this {
    const m: RouteMatch = typeof match === "string" ? { type: match } : match;
    checkMatch(m);
    // Three arguments are (match, schema, handler), whatever the schema is: an ArkType type is a
    // function, and was taken for the handler (it then "handled" every event, and the real
    // handler never ran).
    const withSchema = maybeHandler !== undefined;
    const schema = withSchema ? schemaOrHandler : undefined;
    const handler = (withSchema ? maybeHandler : schemaOrHandler) as RouteHandler<unknown>;
    if (schema !== undefined && !isStandardSchema(schema)) {
      throw new TypeError(
        "the schema of a route must implement Standard Schema v1 (a '~standard' member with validate(), as zod 3.24+, valibot 1 and ArkType 2 have); to take data unvalidated, pass the handler alone",
      );
    }
    if (typeof handler !== "function" || (!withSchema && isStandardSchema(handler))) {
      throw new TypeError("a route needs a handler function");
    }
    const route: Route = {
      match: m,
      type: pattern(m.type),
      source: pattern(m.source),
      subject: pattern(m.subject),
      schema,
      handler,
    };
    if (route.type) this.#patterns.push(route);
    else this.#exact.set(m.type, [...(this.#exact.get(m.type) ?? []), route]);
    return this;
  }

  #find(event: CloudEvent): Route | undefined {
    const fits = (r: Route) =>
      matches(event.source, r.match.source, r.source) &&
      matches(event.subject, r.match.subject, r.subject);
    const exact = this.#exact.get(event.type)?.find(fits);
    if (exact) return exact;
    return this.#patterns.find((r) => (r.type as RegExp).test(event.type) && fits(r));
  }

  /**
   * Handles one delivery: routes, validates, calls the handler and settles. Never rejects:
   * errors go to `onError`.
   *
   * @param delivery - a delivery from any subscriber
   */
  async dispatch(delivery: Delivery): Promise<void> {
    try {
      await this.#route(delivery);
    } catch (err) {
      // A handler, a schema's validate or the fallback threw (or the accept after a handler
      // failed): onError hears it once, and a delivery still unsettled is given back.
      this.#report(err, delivery);
      if (delivery.settled) return;
      try {
        await this.#retryOrReject(delivery, err);
      } catch (settleErr) {
        this.#report(settleErr, delivery);
      }
    }
  }

  // An onError that throws is not let out: dispatch() would reject, and run() would stop reading
  // and leave the other deliveries' rejections unhandled (which ends a Node process).
  #report(err: unknown, delivery: Delivery): void {
    try {
      this.#onError?.(err, delivery);
    } catch {
      // nothing more can be done with it
    }
  }

  async #route(delivery: Delivery): Promise<void> {
    const event = delivery.event;
    if (event === undefined) {
      await this.#fallback(delivery, "not-an-event", undefined);
      return;
    }
    const route = this.#find(event);
    if (!route) {
      await this.#fallback(delivery, "unknown-type", undefined);
      return;
    }
    let typed: CloudEvent = event;
    if (route.schema) {
      const result = await route.schema["~standard"].validate(event.data);
      if (result.issues) {
        await this.#fallback(delivery, "invalid-data", result.issues);
        return;
      }
      // The output as it is, without checking it against datacontenttype: a schema may turn
      // bytes under application/avro into an object, or text into a list, and checking would
      // refuse that on every redelivery (the handler never ran).
      if (result.value !== event.data) typed = withDataAsIs(event, result.value);
    }
    await route.handler(typed, delivery);
    if (!delivery.settled) await delivery.accept();
  }

  // Redelivery where the transport can, else the dead-letter place, else (at most once: core
  // NATS, WebSocket, MQTT without a session or dead-letter topic) the delivery is let go, so that
  // an acknowledgement held back does not stall the connection; onError has heard the failure.
  async #retryOrReject(delivery: Delivery, err: unknown): Promise<void> {
    const reason = err instanceof Error ? err.message : String(err);
    if (delivery.capabilities.release !== "none") return delivery.release();
    if (delivery.capabilities.reject !== "none") return delivery.reject(reason);
    return delivery.accept();
  }

  /**
   * Dispatches every delivery of a subscriber until it ends (or is closed), then waits for the
   * deliveries still being handled. When the subscriber's iteration fails, it waits for them too,
   * then rejects with that error.
   *
   * @param deliveries - the subscriber, or any async iterable of deliveries
   * @param options - how many deliveries are handled at once (default 1, in order)
   * @throws {@link PosthornError} `NotSupported` (the returned promise rejects, before any delivery
   *   is read) when `concurrency` is not a whole number of 1 or more, nor `Infinity`
   */
  async run(deliveries: AsyncIterable<Delivery>, options: RouterRunOptions = {}): Promise<void> {
    const concurrency = checkCountOption("concurrency", options.concurrency) ?? 1;
    const running = new Set<Promise<void>>();
    try {
      for await (const delivery of deliveries) {
        const p: Promise<void> = this.dispatch(delivery).finally(() => running.delete(p));
        running.add(p);
        if (running.size >= concurrency) await Promise.race(running);
      }
    } finally {
      // Also when the subscriber fails (a lost connection): the caller, told of it, closes
      // things, and handlers still running would then settle on a closed client.
      await Promise.all(running);
    }
  }
}
