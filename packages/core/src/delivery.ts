import type { Delivery, Message, ReleaseOptions, SettlementCapabilities } from "./envelopes.js";
import { isPosthornError, PosthornError } from "./errors.js";
import type { CloudEvent } from "./event.js";
import { checkTimeOption } from "./options.js";

/** What a binding supplies to {@link createDelivery}: the transport's own settlement actions. */
export interface DeliveryInit<T> {
  /** The transport message as received; becomes {@link Delivery.message}. */
  readonly message: Message;
  /** The decoded event, or `undefined` when the message is not a valid CloudEvent. */
  readonly event: CloudEvent<T> | undefined;
  /** Why a message that claimed to be a CloudEvent did not decode; omit when it did. */
  readonly error?: PosthornError | undefined;
  /** Deliveries of this message so far, this one included (1 on the first). */
  readonly deliveryCount: number;
  /**
   * What the transport can do. A settlement it excludes fails with `NotSupported` before the
   * action below is called.
   */
  readonly capabilities: SettlementCapabilities;
  /**
   * Acknowledges the message on the transport. Called at most once, and only if no other
   * settlement was. A throw becomes `SettlementFailed` unless it is a `PosthornError` already.
   */
  accept(): Promise<void> | void;
  /**
   * Hands the message back for redelivery. Omit it, or set `capabilities.release` to `"none"`,
   * where the transport cannot; `options.delayMs` arrives only if `capabilities.releaseDelay`.
   */
  release?(options: ReleaseOptions): Promise<void> | void;
  /**
   * Dead-letters the message. Receives the consumer's reason as text (an `Error`'s message), or
   * `undefined`. Omit it, or set `capabilities.reject` to `"none"`, where there is no
   * dead-letter path.
   */
  reject?(reason: string | undefined): Promise<void> | void;
  /**
   * Extends the consumer's ownership of the message; may be called more than once, never after
   * a settlement. Needs `capabilities.inProgress`.
   */
  inProgress?(): Promise<void> | void;
  /**
   * What the `NotSupported` error of a settlement `capabilities` excludes says after "is not
   * supported: ", per settlement: why this transport or this subscriber cannot, and what to
   * configure where something can be (e.g. a dead-letter topic). A module constant, not made per
   * delivery. Omitted, or for a settlement not named, a generic reason.
   */
  readonly unsupported?: UnsupportedSettlements;
}

/** Why a binding cannot release, reject or extend a delivery: see {@link DeliveryInit.unsupported}. */
export interface UnsupportedSettlements {
  /** Why `release()` is `NotSupported`, and what to do about it. */
  readonly release?: string;
  /** Why `release({ delayMs })` is `NotSupported` (redelivery without a delay may still work). */
  readonly releaseDelay?: string;
  /** Why `reject()` is `NotSupported`, and what to do about it. */
  readonly reject?: string;
  /** Why `inProgress()` is `NotSupported`. */
  readonly inProgress?: string;
}

/**
 * Makes a {@link Delivery} from a binding's settlement actions, enforcing the rules every binding
 * shares: a delivery settles once (a second settlement is `SettlementFailed`), and what the
 * capabilities exclude is `NotSupported`, never silently ignored.
 *
 * @param init - the message, its decoded event or error, and the transport's actions
 * @returns a delivery whose settlements call `init`'s actions at most once between them
 */
export function createDelivery<T>(init: DeliveryInit<T>): Delivery<T> {
  const caps = init.capabilities;
  const settle = async (what: string, action: () => Promise<void> | void): Promise<void> => {
    if (delivery.settled)
      throw new PosthornError(
        "SettlementFailed",
        `cannot ${what}: the delivery is already settled`,
      );
    delivery.settled = true;
    try {
      await action();
    } catch (err) {
      throw settlementFailed(what, err);
    }
  };
  // `settled` is a data property that settle() updates, not a getter: an accessor in an object
  // literal costs a fresh hidden class per delivery. Views made with Object.create (asJob, the
  // OpenTelemetry wrapper) read it through the prototype, so they see the update.
  const delivery: { -readonly [K in keyof Delivery<T>]: Delivery<T>[K] } = {
    message: init.message,
    event: init.event,
    error: init.error,
    deliveryCount: init.deliveryCount,
    capabilities: caps,
    settled: false,
    accept: () => settle("accept", () => init.accept()),
    release: (options: ReleaseOptions = {}) => {
      if (caps.release === "none" || !init.release) {
        return Promise.reject(
          notSupported("release()", init.unsupported?.release ?? "this transport cannot redeliver"),
        );
      }
      if (options.delayMs !== undefined && !caps.releaseDelay) {
        return Promise.reject(
          notSupported(
            "release({ delayMs })",
            init.unsupported?.releaseDelay ?? "this transport cannot delay a redelivery",
          ),
        );
      }
      // A finite number of milliseconds, 0 or more: NaN went out over HTTP as "Retry-After: NaN".
      try {
        checkTimeOption("release({ delayMs })", options.delayMs, 0, Number.MAX_SAFE_INTEGER);
      } catch (err) {
        return Promise.reject(err);
      }
      const release = init.release;
      return settle("release", () => release(options));
    },
    reject: (reason?: string | Error) => {
      if (caps.reject === "none" || !init.reject) {
        return Promise.reject(
          notSupported(
            "reject()",
            init.unsupported?.reject ?? "this transport has no dead-letter path configured",
          ),
        );
      }
      const reject = init.reject;
      const text = reason instanceof Error ? reason.message : reason;
      return settle("reject", () => reject(text));
    },
    inProgress: async () => {
      if (!caps.inProgress || !init.inProgress)
        throw notSupported(
          "inProgress()",
          init.unsupported?.inProgress ?? "this transport cannot extend ownership",
        );
      if (delivery.settled) {
        throw new PosthornError("SettlementFailed", "inProgress() after settlement");
      }
      // Like a settlement, a client's own error comes out as a PosthornError; unlike one, a
      // failed inProgress() leaves the delivery unsettled, to be settled or extended again.
      try {
        await init.inProgress();
      } catch (err) {
        throw settlementFailed("inProgress", err);
      }
    },
  };
  return delivery;
}

/** A transport's failure as a PosthornError: its own when it is one, else `SettlementFailed`. */
function settlementFailed(what: string, err: unknown): PosthornError {
  return isPosthornError(err)
    ? err
    : new PosthornError("SettlementFailed", `${what} failed: ${(err as Error)?.message ?? err}`, {
        cause: err,
      });
}

function notSupported(what: string, why: string): PosthornError {
  return new PosthornError("NotSupported", `${what} is not supported: ${why}`);
}

/**
 * Makes leaving iteration close the subscriber, as the `Subscriber` contract asks: the
 * iterator's `return()`, which `break`, `return` and a throw out of a `for await` loop call,
 * waits for `close()` and then ends `iterator`. Every binding wraps the iterator it hands out
 * with it, so that a consumer that stops pulling also stops holding deliveries (an ack held back,
 * a queue-group share, an uncommitted offset, a request waiting for an answer).
 *
 * @param iterator - the subscriber's own iterator, e.g. an {@link AsyncQueue}'s
 * @param close - the subscriber's `close()` (idempotent, as the contract requires)
 * @returns an iterator that pulls from `iterator` and closes the subscriber on `return()`
 * @example
 * ```ts
 * [Symbol.asyncIterator]: () => closeOnReturn(queue[Symbol.asyncIterator](), close),
 * ```
 */
export function closeOnReturn<T>(
  iterator: AsyncIterator<T>,
  close: () => Promise<void>,
): AsyncIterator<T> {
  return {
    next: () => iterator.next(),
    return: async () => {
      try {
        await close();
      } finally {
        await iterator.return?.();
      }
      return { value: undefined, done: true };
    },
  };
}

/**
 * A push-to-pull queue: a binding pushes deliveries as the client library emits them, and the
 * subscriber's async iterator pulls them. `end()` finishes iteration after what is queued;
 * `fail(err)` makes the next pull throw. Its iterator's `return()` only ends the queue: a
 * subscriber hands it out through {@link closeOnReturn}, so that leaving a loop closes it.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #head = 0;
  readonly #waiting: Array<{
    resolve: (r: IteratorResult<T>) => void;
    reject: (e: unknown) => void;
  }> = [];
  #ended = false;
  #error: unknown = undefined;
  #lowWater = 0;
  #onLowWater: (() => void) | undefined;

  /** How many items wait to be pulled. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Whether `end()` or `fail()` was called. */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Adds an item, handing it straight to a waiting consumer when there is one. Does nothing
   * once the queue has ended.
   *
   * @param item - the item to queue
   */
  push(item: T): void {
    if (this.#ended) return;
    const waiter = this.#waiting.shift();
    if (waiter) waiter.resolve({ value: item, done: false });
    else this.#items.push(item);
  }

  /** Ends iteration once queued items are consumed. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    for (const w of this.#waiting.splice(0)) w.resolve({ value: undefined, done: true });
  }

  /**
   * Ends iteration with an error, thrown to the consumer after queued items. Does nothing once
   * the queue has ended.
   *
   * @param error - what the next pull past the queued items rejects with (once)
   */
  fail(error: unknown): void {
    if (this.#ended) return;
    this.#error = error;
    this.#ended = true;
    for (const w of this.#waiting.splice(0)) w.reject(error);
  }

  /**
   * Calls `fn` once, at the first pull that leaves at most `level` items queued: flow control,
   * for a binding that stopped reading its source when too many waited. A later call replaces an
   * earlier one that has not fired.
   *
   * @param level - how many items may still wait
   * @param fn - what to call, e.g. resuming the socket
   */
  onDrainedTo(level: number, fn: () => void): void {
    this.#lowWater = level;
    this.#onLowWater = fn;
  }

  /** Removes and returns every queued item (for releasing them on close). */
  drain(): T[] {
    const rest = this.#items.slice(this.#head);
    this.#items.length = 0;
    this.#head = 0;
    return rest;
  }

  #next(): Promise<IteratorResult<T>> {
    const result = this.#take();
    if (this.#onLowWater !== undefined && this.size <= this.#lowWater) {
      const fn = this.#onLowWater;
      this.#onLowWater = undefined;
      fn();
    }
    return result;
  }

  #take(): Promise<IteratorResult<T>> {
    if (this.#head < this.#items.length) {
      const items = this.#items;
      const value = items[this.#head] as T;
      // The slot lets go of the item at once: a consumed delivery still referenced here would
      // live through garbage collections until the next compaction, and with it its event.
      (items as Array<T | undefined>)[this.#head++] = undefined;
      if (this.#head === items.length) {
        items.length = 0;
        this.#head = 0;
      } else if (this.#head > 1024 && this.#head * 2 > items.length) {
        items.splice(0, this.#head);
        this.#head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.#ended) {
      if (this.#error !== undefined) {
        const err = this.#error;
        this.#error = undefined;
        return Promise.reject(err);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  /**
   * An iterator over the queued and future items. Its `return()` ends the queue (a subscriber
   * hands it out through {@link closeOnReturn}). Every iterator pulls from the same queue.
   */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => this.#next(),
      return: () => {
        this.end();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/** The longest delay a timer holds; `setTimeout` fires a longer one at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * `setTimeout` for a time limit a user gave: no timer at all (`undefined`, which `clearTimeout`
 * accepts) when `ms` is past what a timer holds, `Infinity` included, so that such a limit means
 * none; `setTimeout` would fire it after 1 ms (with a `TimeoutOverflowWarning` in Node). A
 * negative `ms` fires at once, as `setTimeout` does.
 *
 * @param callback - what to run when the time is up
 * @param ms - the limit in milliseconds
 * @returns the timer, or `undefined` when there is none
 */
export function limitTimer(
  callback: () => void,
  ms: number,
): ReturnType<typeof setTimeout> | undefined {
  return ms > MAX_TIMER_MS ? undefined : setTimeout(callback, Math.max(0, ms));
}

/** The bounds of {@link settleWithin}: a time limit, a signal, and the errors each ends with. */
export interface WaitBounds {
  /** Milliseconds to wait at most; `undefined` (or past `MAX_TIMER_MS`) for no limit. */
  readonly timeoutMs?: number | undefined;
  /** Ends the wait when it aborts (at once when it already has). */
  readonly signal?: AbortSignal | undefined;
  /** The error when `timeoutMs` pass first. Default a `Timeout` `PosthornError`. */
  timedOut?(): PosthornError;
  /** The error when `signal` aborts first. Default an `Aborted` `PosthornError`. */
  aborted?(): PosthornError;
}

/**
 * `work`'s outcome, unless `bounds.timeoutMs` pass or `bounds.signal` aborts first: then the
 * error `bounds` makes for it. `work` itself is not recalled (a send goes on), and its outcome,
 * once nobody waits for it, is ignored rather than left unhandled. The timer and the listener are
 * removed whichever way it ends. With neither a limit nor a signal, it is `work` itself.
 *
 * For a binding's waits on its client (a publish acknowledged, a dead-letter copy written).
 *
 * @param work - what to wait for
 * @param bounds - the limit, the signal, and the error for each
 */
export function settleWithin<T>(work: Promise<T>, bounds: WaitBounds): Promise<T> {
  const { timeoutMs, signal } = bounds;
  if (timeoutMs === undefined && signal === undefined) return work;
  const abortError = (): PosthornError =>
    bounds.aborted?.() ?? new PosthornError("Aborted", "the wait was aborted");
  if (signal?.aborted) {
    work.catch(() => undefined);
    return Promise.reject(abortError());
  }
  return new Promise<T>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const cleanup = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    const onAbort = (): void => {
      cleanup();
      reject(abortError());
    };
    if (timeoutMs !== undefined) {
      timer = limitTimer(() => {
        cleanup();
        reject(
          bounds.timedOut?.() ??
            new PosthornError("Timeout", `the wait took longer than ${timeoutMs} ms`),
        );
      }, timeoutMs);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    // Also handles a rejection that comes after the wait ended (rejecting again does nothing).
    work.then(
      (value) => {
        cleanup();
        resolve(value);
      },
      (err: unknown) => {
        cleanup();
        reject(err);
      },
    );
  });
}

/**
 * What a `close()` waits on for a bounded time: a subscriber's deliveries in the application's
 * hands being settled (`drainTimeoutMs`), a publisher's messages being acknowledged or written
 * (`closeTimeoutMs`). The binding calls {@link Drain.wake} whenever one is settled or lost (a
 * no-op when nothing waits), and `close()` awaits {@link Drain.wait}.
 */
export class Drain {
  #wake: (() => void) | undefined;

  /** Tells a waiting {@link Drain.wait} to check again. */
  wake(): void {
    this.#wake?.();
  }

  /**
   * Resolves once `idle()` holds (checked now and at every wake), after `ms`, or when `stop`
   * settles, whichever is first; at once when `ms` is not positive; with no time limit when `ms`
   * is past what a timer holds (`Infinity`). Leaves no timer behind.
   *
   * @param ms - the longest wait (`drainTimeoutMs`, `closeTimeoutMs`)
   * @param idle - whether nothing is left to wait for
   * @param stop - ends the wait early, e.g. the connection closing (nothing can be settled then)
   */
  async wait(ms: number, idle: () => boolean, stop?: Promise<unknown>): Promise<void> {
    if (!(ms > 0) || idle()) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      const end = (): void => resolve();
      timer = limitTimer(end, ms);
      this.#wake = () => {
        if (idle()) end();
      };
      stop?.then(end, end);
    });
    clearTimeout(timer);
    this.#wake = undefined;
  }
}
