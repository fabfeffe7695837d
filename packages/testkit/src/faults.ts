import type { ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CloudEvent,
  type CloudEventInit,
  type Delivery,
  isPosthornError,
  type PosthornError,
} from "@posthorn/core";
import { expect } from "vitest";
import type { LaunchedBroker } from "./brokers.js";
import { type BrokerCommand, MOSQUITTO_READY, restartOnPorts, startOnFreePorts } from "./launch.js";

/** The counts of a {@link DeliveryLedger}. */
export interface LedgerCounts {
  /** Events whose publish resolved: the publisher reported them as sent. */
  readonly sent: number;
  /** Distinct sent events received at least once. */
  readonly received: number;
  /** Deliveries beyond the first of an event (redeliveries, resends). */
  readonly duplicates: number;
  /** Sent events never received. */
  readonly lost: number;
  /** Distinct events received whose publish never resolved (stored although the call failed). */
  readonly unconfirmed: number;
  /** Publish attempts that failed with a retryable error and were tried again. */
  readonly retries: number;
}

/**
 * One account of a fault test: what the publisher reported as sent, what the subscriber
 * received, and from both the duplicates and the losses. Every fault test of every binding
 * counts with it, so their summaries mean the same thing.
 *
 * @example
 * ```ts
 * const ledger = new DeliveryLedger("mqtt");
 * await publishWithRetry(() => publisher.publish(e), ledger); ledger.sent(e.id);
 * for await (const d of subscriber) { ledger.received(d.event.id); await d.accept(); }
 * await ledger.waitForAll(30_000);
 * console.log(ledger.summary()); // faults mqtt: sent 10000, received 10000, duplicates 12, lost 0
 * ```
 */
export class DeliveryLedger {
  readonly #sent = new Set<string>();
  readonly #deliveries = new Map<string, number>();
  #retries = 0;
  readonly #retryCodes = new Map<string, number>();
  #waiters: Array<() => void> = [];

  /** @param transport - the name the summary line carries */
  constructor(readonly transport: string) {}

  /**
   * Records that the publish of `id` resolved.
   *
   * @param id - the event's id
   */
  sent(id: string): void {
    this.#sent.add(id);
    this.#wake();
  }

  /**
   * Records one delivery of `id`.
   *
   * @param id - the delivered event's id
   */
  received(id: string): void {
    this.#deliveries.set(id, (this.#deliveries.get(id) ?? 0) + 1);
    this.#wake();
  }

  /**
   * Records a publish attempt that failed with a retryable error (by its code).
   *
   * @param code - the error's code (default `"unknown"`)
   */
  retried(code = "unknown"): void {
    this.#retries++;
    this.#retryCodes.set(code, (this.#retryCodes.get(code) ?? 0) + 1);
  }

  /** The retried publishes by error code, e.g. `{ Timeout: 3 }`. */
  retriesByCode(): Record<string, number> {
    return Object.fromEntries(this.#retryCodes);
  }

  /** How many publishes resolved so far. */
  get sentCount(): number {
    return this.#sent.size;
  }

  /** How many deliveries arrived so far, duplicates included. */
  get deliveryCount(): number {
    let n = 0;
    for (const c of this.#deliveries.values()) n += c;
    return n;
  }

  /** The sent events not received (yet). */
  missing(): string[] {
    return [...this.#sent].filter((id) => !this.#deliveries.has(id));
  }

  /** The counts as they stand. */
  counts(): LedgerCounts {
    let received = 0;
    let duplicates = 0;
    let unconfirmed = 0;
    for (const [id, n] of this.#deliveries) {
      duplicates += n - 1;
      if (this.#sent.has(id)) received++;
      else unconfirmed++;
    }
    return {
      sent: this.#sent.size,
      received,
      duplicates,
      lost: this.#sent.size - received,
      unconfirmed,
      retries: this.#retries,
    };
  }

  /** The one-line summary every fault test prints. */
  summary(): string {
    const c = this.counts();
    const extra =
      c.retries > 0 || c.unconfirmed > 0
        ? ` (retried publishes ${c.retries} ${JSON.stringify(this.retriesByCode())}, received but never confirmed ${c.unconfirmed})`
        : "";
    return `faults ${this.transport}: sent ${c.sent}, received ${c.received}, duplicates ${c.duplicates}, lost ${c.lost}${extra}`;
  }

  /**
   * Waits until every sent event was received, or `timeoutMs` passed; says which.
   *
   * @param timeoutMs - how long to wait, in milliseconds
   * @returns true when nothing sent is missing, false on timeout
   */
  async waitForAll(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.counts().lost > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 250));
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#waiters.push(done);
      });
    }
    return true;
  }

  /**
   * Waits until `n` publishes resolved (to fault the broker mid-stream).
   *
   * @param n - how many
   * @param timeoutMs - how long to wait, in milliseconds
   * @throws Error when fewer resolved in time
   */
  async waitForSent(n: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#sent.size < n) {
      if (Date.now() > deadline) {
        throw new Error(`only ${this.#sent.size} of ${n} publishes resolved in ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  #wake(): void {
    if (this.#waiters.length === 0) return;
    for (const w of this.#waiters.splice(0)) w();
  }
}

/** Options for {@link publishWithRetry}. */
export interface PublishRetryOptions {
  /** Attempts before giving up. Default 100. */
  maxAttempts?: number;
  /** Pause between attempts. Default 100 ms. */
  delayMs?: number;
}

/**
 * Runs a publish, and runs it again while it fails with a retryable {@link PosthornError}
 * (`ConnectionFailed`, `Timeout`, or any with `retryable: true`), as an application would. Any
 * other failure, an untyped one included, is thrown: that is the contract under test.
 *
 * @param publish - one attempt
 * @param ledger - counts the retries
 * @param options - most attempts (default 100) and the pause between them (default 100 ms)
 * @throws the last retryable error once the attempts are spent; an untyped failure wrapped in
 *   an `Error`
 */
export async function publishWithRetry(
  publish: () => Promise<unknown>,
  ledger?: DeliveryLedger,
  options: PublishRetryOptions = {},
): Promise<void> {
  const maxAttempts = options.maxAttempts ?? 100;
  for (let attempt = 1; ; attempt++) {
    try {
      await publish();
      return;
    } catch (err) {
      if (!isPosthornError(err)) {
        throw new Error(`publish failed with an untyped error: ${String(err)}`, { cause: err });
      }
      if (!err.retryable || attempt >= maxAttempts) throw err;
      ledger?.retried(err.code);
      await new Promise((r) => setTimeout(r, options.delayMs ?? 100));
    }
  }
}

/**
 * Runs `work` over `items` with at most `concurrency` running at once (a publisher keeping a
 * window of unacknowledged publishes open, as a throughput-minded application does).
 *
 * @param items - the items, taken in order
 * @param concurrency - most calls of `work` running at once
 * @param work - called once per item; the first rejection rejects the whole, while the other
 *   workers finish their current item
 */
export async function forEachConcurrently<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/**
 * Asserts what an at-least-once fault test promises: every one of `sent` events was reported as
 * sent and received, and {@link DeliveryLedger.waitForAll} saw them all arrive in time. Fails
 * naming up to ten of the missing ids first, as they say most about the loss.
 *
 * @param ledger - the test's ledger, after the subscriber closed
 * @param expected - `sent`: how many events the test published; `complete`: what `waitForAll` returned
 */
export function expectEverySentEventReceived(
  ledger: DeliveryLedger,
  expected: { sent: number; complete: boolean },
): void {
  expect(ledger.missing().slice(0, 10)).toEqual([]);
  expect(expected.complete).toBe(true);
  const counts = ledger.counts();
  expect(counts.sent).toBe(expected.sent);
  expect(counts.lost).toBe(0);
}

/** Options for {@link receiveIntoLedger}. */
export interface ReceiveIntoLedgerOptions {
  /**
   * Takes an accept that failed with `SettlementFailed` instead of failing the consumer: for a
   * transport where a dropped connection refuses the settlement of a delivery that the broker
   * then delivers again. Without it, every failed accept ends the consumer with that error.
   */
  onSettlementFailed?: (err: PosthornError) => void;
}

/**
 * Drains `subscriber` into `ledger`: records every delivered event's id, then accepts it. Ends
 * when the subscriber ends (its `close()`), and rejects on the first accept that fails, unless
 * {@link ReceiveIntoLedgerOptions.onSettlementFailed} takes it.
 *
 * @param subscriber - the subscriber under test
 * @param ledger - records the deliveries
 * @param options - what to do with an accept that fails with `SettlementFailed`
 * @returns a promise to await after closing the subscriber
 * @example
 * ```ts
 * const consuming = receiveIntoLedger(subscriber, ledger);
 * // ... publish, fault the broker, wait for the ledger ...
 * await subscriber.close();
 * await consuming;
 * ```
 */
export async function receiveIntoLedger(
  subscriber: AsyncIterable<Delivery>,
  ledger: DeliveryLedger,
  options: ReceiveIntoLedgerOptions = {},
): Promise<void> {
  const { onSettlementFailed } = options;
  for await (const d of subscriber) {
    if (d.event) ledger.received(d.event.id);
    try {
      await d.accept();
    } catch (err) {
      if (onSettlementFailed === undefined || !isPosthornError(err, "SettlementFailed")) throw err;
      onSettlementFailed(err);
    }
  }
}

/**
 * Publishes each of `events` with {@link publishWithRetry}, `concurrency` at a time, and records
 * each in `ledger` as sent once its publish resolved.
 *
 * @param events - the events, one publish each
 * @param concurrency - how many publishes may be unresolved at once
 * @param publish - one attempt to publish one event
 * @param ledger - counts the sent events and the retries
 * @param options - how {@link publishWithRetry} retries
 */
export function publishEachWithRetry(
  events: readonly CloudEvent[],
  concurrency: number,
  publish: (event: CloudEvent) => Promise<unknown>,
  ledger: DeliveryLedger,
  options: PublishRetryOptions = {},
): Promise<void> {
  return forEachConcurrently(events, concurrency, async (e) => {
    await publishWithRetry(() => publish(e), ledger, options);
    ledger.sent(e.id);
  });
}

/**
 * The `i`th event of a fault test: id `<idPrefix>-<i>`, source `/faults/<transport>`, type
 * `com.example.fault`, data `{ i }`.
 *
 * @param transport - names the source
 * @param i - the event's number
 * @param idPrefix - what the id starts with (default `<transport>-fault`)
 */
export function faultEvent(
  transport: string,
  i: number,
  idPrefix = `${transport}-fault`,
): CloudEvent {
  return numberedEvent(`${idPrefix}-${i}`, `/faults/${transport}`, "com.example.fault", i);
}

/**
 * The `i`th event of a shutdown test: id `shutdown-<i>`, source `/shutdown/<transport>`, type
 * `com.example.shutdown`, data `{ i }`.
 *
 * @param transport - names the source
 * @param i - the event's number
 */
export function shutdownEvent(transport: string, i: number): CloudEvent {
  return numberedEvent(`shutdown-${i}`, `/shutdown/${transport}`, "com.example.shutdown", i);
}

/**
 * An event no binding can encode: its extension `ext` holds an object, which no CloudEvents type
 * can (so it is a plain init, not a `CloudEvent`). For tests that an array publish holding it
 * sends nothing.
 *
 * @param transport - names the source
 */
export function unencodableEvent(transport: string): CloudEventInit {
  return {
    specversion: "1.0",
    id: "bad",
    source: `/${transport}`,
    type: "t",
    ext: { not: "a CloudEvents type" },
  };
}

/** What {@link settledWithin} saw: the value, the error, or `"pending"` when time ran out. */
export type Settlement =
  | {
      /** The value the promise resolved with. */
      resolved: unknown;
    }
  | {
      /** The reason the promise was rejected with. */
      rejected: unknown;
    }
  | "pending";

/**
 * How `promise` settled within `ms`, without waiting longer: for tests that a call is still
 * pending at some point, or settled in time.
 *
 * @param promise - the promise to watch
 * @param ms - how long to wait for it, in milliseconds
 */
export function settledWithin(promise: Promise<unknown>, ms: number): Promise<Settlement> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race<Settlement>([
    promise.then(
      (value) => ({ resolved: value }),
      (error: unknown) => ({ rejected: error }),
    ),
    new Promise<Settlement>((resolve) => {
      timer = setTimeout(() => resolve("pending"), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function numberedEvent(id: string, source: string, type: string, i: number): CloudEvent {
  return new CloudEvent({ specversion: "1.0", id, source, type, data: { i } });
}

/** The next value of `iterator`, rejecting with `timeoutMessage()` at `deadline` (epoch ms). */
async function nextBefore<T>(
  iterator: AsyncIterator<T>,
  deadline: number,
  timeoutMessage: () => string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const r = await Promise.race([
      iterator.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(timeoutMessage())),
          Math.max(1, deadline - Date.now()),
        );
      }),
    ]);
    if (r.done) throw new Error("the subscriber ended");
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The next delivery of a subscriber's iterator.
 *
 * @param iterator - `subscriber[Symbol.asyncIterator]()`
 * @param timeoutMs - how long to wait (default 5000)
 * @throws Error when no delivery came within `timeoutMs`, or the subscriber ended
 */
export function nextDelivery<T>(
  iterator: AsyncIterator<Delivery<T>>,
  timeoutMs = 5000,
): Promise<Delivery<T>> {
  return nextBefore(iterator, Date.now() + timeoutMs, () => `no delivery within ${timeoutMs} ms`);
}

/**
 * The next `count` deliveries of a subscriber's iterator, all within one `timeoutMs`.
 *
 * @param iterator - `subscriber[Symbol.asyncIterator]()`
 * @param count - how many deliveries to take
 * @param timeoutMs - how long all of them may take (default 5000)
 * @throws Error saying how many came when `count` did not come in time, or the subscriber ended
 */
export async function takeDeliveries<T>(
  iterator: AsyncIterator<Delivery<T>>,
  count: number,
  timeoutMs = 5000,
): Promise<Delivery<T>[]> {
  const out: Delivery<T>[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < count) {
    out.push(
      await nextBefore(
        iterator,
        deadline,
        () => `${out.length} of ${count} deliveries in ${timeoutMs} ms`,
      ),
    );
  }
  return out;
}

/** A broker for fault tests: a {@link LaunchedBroker} that can also stop gracefully and come back. */
export interface FaultBroker extends LaunchedBroker {
  /** Stops the process with SIGTERM (the broker saves its state) without removing the state. */
  terminate(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

/**
 * Starts `mosquitto` on a free port with persistence on (a store in a temporary directory), so
 * persistent sessions, their subscriptions and their queued and in-flight QoS 1/2 messages survive
 * a restart. The testkit's {@link startMosquitto} runs without persistence, where a restart loses
 * them all.
 *
 * Mosquitto writes its store when it stops (SIGTERM, {@link FaultBroker.terminate}) and every
 * `autosaveIntervalS`; a SIGKILL ({@link LaunchedBroker.kill}) loses what arrived since the last save.
 *
 * Like {@link startMosquitto}, it is ready once Mosquitto logged that it runs, and a start that
 * finds its port taken by another process is tried again on a new port (5 starts in all).
 *
 * @param options - `autosaveIntervalS` (default 1800, Mosquitto's own default)
 */
export async function startPersistentMosquitto(
  options: { autosaveIntervalS?: number } = {},
): Promise<FaultBroker> {
  const binary = ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"]
    .concat((process.env.PATH ?? "").split(":"))
    .map((d) => join(d, "mosquitto"))
    .find((p) => existsSync(p));
  if (binary === undefined) throw new Error("mosquitto is not installed");
  const dir = mkdtempSync(join(tmpdir(), "posthorn-mosquitto-faults-"));
  // Started as root, Mosquitto drops to its own user, which must be able to write the store.
  chmodSync(dir, 0o777);
  const conf = join(dir, "mosquitto.conf");
  const configure = (ports: Readonly<Record<string, number>>): BrokerCommand => {
    writeFileSync(
      conf,
      [
        "per_listener_settings false",
        "allow_anonymous true",
        `listener ${ports.mqtt} 127.0.0.1`,
        "persistence true",
        `persistence_location ${dir}/`,
        `autosave_interval ${options.autosaveIntervalS ?? 1800}`,
        "max_queued_messages 100000",
        "max_inflight_messages 0",
        "",
      ].join("\n"),
    );
    return { binary, args: ["-c", conf], ready: MOSQUITTO_READY };
  };
  let child: ChildProcess;
  let port: number;
  try {
    const started = await startOnFreePorts(["mqtt"], configure, dir);
    child = started.child;
    port = started.ports.mqtt as number;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const stopWith = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited(child);
    clearTimeout(timer);
  };
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    ports: { mqtt: port },
    get process() {
      return child;
    },
    kill: () => stopWith("SIGKILL"),
    terminate: () => stopWith("SIGTERM"),
    async restart() {
      await stopWith("SIGTERM");
      child = await restartOnPorts(configure({ mqtt: port }), { mqtt: port }, dir);
    },
    async stop() {
      await stopWith("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Open sockets and timers of this process, from `process.getActiveResourcesInfo()`. */
export interface OpenHandles {
  /** Open TCP sockets (`TCPSocketWrap`). */
  readonly sockets: number;
  /** Pending timers (`Timeout`). */
  readonly timers: number;
}

/** Counts this process's TCP sockets and timers. */
export function openHandles(): OpenHandles {
  let sockets = 0;
  let timers = 0;
  for (const kind of process.getActiveResourcesInfo()) {
    if (kind === "TCPSocketWrap") sockets++;
    else if (kind === "Timeout") timers++;
  }
  return { sockets, timers };
}

/**
 * The open sockets and timers once the process is quiet: sockets closed a moment ago (a port
 * probe of a broker launcher) still count for a tick, so this samples until two readings 50 ms
 * apart agree and returns that reading, or the last one after about a second.
 */
export async function baselineHandles(): Promise<OpenHandles> {
  let last = openHandles();
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const now = openHandles();
    if (now.sockets === last.sockets && now.timers === last.timers) return now;
    last = now;
  }
  return last;
}

/**
 * Waits (up to `timeoutMs`) for the open sockets and timers to fall back to `baseline`, and
 * throws naming what is left when they do not: a leak.
 *
 * @param baseline - the counts before the test, from {@link baselineHandles}
 * @param timeoutMs - how long to wait, in milliseconds (default 3000)
 * @returns the counts once they are back at or below the baseline
 * @throws Error naming the counts left open when they are not in time
 */
export async function expectNoLeakedHandles(
  baseline: OpenHandles,
  timeoutMs = 3000,
): Promise<OpenHandles> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = openHandles();
    if (now.sockets <= baseline.sockets && now.timers <= baseline.timers) return now;
    if (Date.now() > deadline) {
      throw new Error(
        `leaked handles: ${now.sockets} sockets and ${now.timers} timers open, ${baseline.sockets} and ${baseline.timers} before`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** What {@link countSocketWrites} has seen. */
export interface SocketWriteCount {
  /** Writes that reached the socket's handle: one system call each (`_write` or `_writev`). */
  readonly calls: number;
  /** Puts the socket's own write methods back. */
  restore(): void;
}

/**
 * Counts the writes a real TCP socket hands to the operating system, to test that a client
 * coalesces frames: many `socket.write` calls made while corked arrive as one `_writev`.
 *
 * @param socket - a connected `net.Socket` (or TLS socket)
 */
export function countSocketWrites(socket: Socket): SocketWriteCount {
  type Write = Socket["_write"];
  type Writev = NonNullable<Socket["_writev"]>;
  const write = socket._write;
  const writev = socket._writev as Writev | undefined;
  let calls = 0;
  socket._write = function (this: Socket, ...args: Parameters<Write>) {
    calls++;
    return write.apply(this, args);
  };
  if (writev !== undefined) {
    socket._writev = function (this: Socket, ...args: Parameters<Writev>) {
      calls++;
      return writev.apply(this, args);
    };
  }
  return {
    get calls() {
      return calls;
    },
    restore() {
      socket._write = write;
      if (writev !== undefined) socket._writev = writev;
    },
  };
}

/**
 * Counts the `TimeoutOverflowWarning`s Node emits from now on: a timer set past what it holds
 * (`Infinity` given as a time limit, say), which Node fires after 1 ms instead. Call `stop()` when
 * done.
 */
export function watchTimerOverflows(): { count(): number; stop(): void } {
  let count = 0;
  const onWarning = (warning: Error): void => {
    if (warning.name === "TimeoutOverflowWarning") count++;
  };
  process.on("warning", onWarning);
  return {
    count: () => count,
    stop: () => void process.off("warning", onWarning),
  };
}

/**
 * What a numeric option refused by core's `checkTimeOption`/`checkCountOption` throws, for
 * `toThrow` and `rejects.toThrow`: `NotSupported`, the option in `attribute`, and a message naming
 * the option and the value as given.
 *
 * @param option - the option's name as the binding names it (`"maxInFlight"`, `"retry.maxDelayMs"`)
 * @param shown - the value as the message prints it (`"NaN"`, `"-1"`, `"2.5"`)
 */
export function refusedOption(option: string, shown: string): unknown {
  const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return expect.objectContaining({
    name: "PosthornError",
    code: "NotSupported",
    attribute: option,
    message: expect.stringMatching(
      new RegExp(`^${literal(option)} must be .*, got ${literal(shown)}$`),
    ),
  });
}
