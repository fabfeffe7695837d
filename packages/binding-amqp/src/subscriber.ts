import {
  AsyncQueue,
  checkChoiceOption,
  checkCountOption,
  checkTimeOption,
  closeOnReturn,
  corkForThisTick,
  createDelivery,
  type Delivery,
  Drain,
  PosthornError,
  type SettlementCapabilities,
  SlotSet,
  type Slotted,
  type Subscriber,
  type UnsupportedSettlements,
} from "@posthorn/core";
import type { Connection, EventContext, Receiver, Delivery as RheaDelivery } from "rhea";
import type { AmqpMessage } from "./amqp-message.js";
import {
  applyNoDelay,
  closeLinkAndSession,
  deadConnection,
  observeConnectionLoss,
  resumeWithConnection,
  socketOf,
} from "./connection-events.js";
import { dispositionGate } from "./disposition-gate.js";
import { translateAmqpError } from "./errors.js";
import { checkDecodeLimits, type FromAmqpMessageOptions, readAmqpMessage } from "./from-message.js";
import { checkAddress, checkConnection, checkLinkOptions, MAX_UINT } from "./options.js";
import { UNDECODABLE_ANNOTATION } from "./wire-check.js";

/**
 * What AMQP 1.0 settlement can do, for every subscriber of this binding: `release()` is the
 * `released` (or `modified`) outcome and the broker redelivers; `reject()` is the `rejected`
 * outcome and the broker dead-letters (RabbitMQ: to the queue's dead-letter exchange, else it
 * drops the message); no delayed release; no lock extension; the delivery count comes from the
 * message header.
 */
export const AMQP_SETTLEMENT_CAPABILITIES: SettlementCapabilities = Object.freeze({
  release: "native",
  releaseDelay: false,
  reject: "native",
  inProgress: false,
  deliveryCount: "native",
});

/** Why an AMQP delivery cannot be released with a delay or extended, in the binding's words. */
const AMQP_UNSUPPORTED: UnsupportedSettlements = Object.freeze({
  releaseDelay:
    "AMQP 1.0 has no delayed redelivery: release() hands the message back at once (wait before releasing, or use the broker's own delay, such as a RabbitMQ dead-letter queue with a message TTL)",
  inProgress:
    "AMQP 1.0 has no acknowledgement wait to extend: a delivery stays unsettled, and the message the consumer's, for as long as the link is open",
});

/** Options for {@link amqpSubscriber}. */
export interface AmqpSubscriberOptions extends FromAmqpMessageOptions {
  /** The source address, e.g. `/amq/queue/orders` on RabbitMQ. */
  address: string;
  /**
   * Link credit: how many deliveries may be unsettled (queued or handed out) at once. Each
   * settlement grants one more. Default 100.
   */
  credit?: number;
  /**
   * The outcome `release()` sends: `released` (default; the delivery count is not raised) or
   * `modified` with `delivery-failed` (the broker raises the delivery count). RabbitMQ 3.x ends
   * the session on `modified` (the first `release()` failed iteration, every delivery in hand
   * lost), so against it (told by its open frame) `ready` and iteration fail with
   * `NotSupported` (attribute `releaseOutcome`) once the link attaches, before any credit is
   * granted; use it with brokers that support it (ActiveMQ Artemis, Qpid, Azure Service Bus,
   * RabbitMQ 4).
   */
  releaseOutcome?: "released" | "modified";
  /** The error condition `reject()` sends with the `rejected` outcome. Default `posthorn:rejected`. */
  rejectCondition?: string;
  /**
   * On `close()`, wait up to this long for deliveries in the application's hands to settle (their
   * settlements still reach the broker); those still unsettled then are released. Default 0.
   */
  drainTimeoutMs?: number;
  /**
   * Extra rhea receiver options (link name, filters, ...). The source's `address` is set here
   * (a `source.address` other than {@link AmqpSubscriberOptions.address}, a `source` that is not
   * an object, `source.dynamic: true` and a `source.distribution_mode` other than `"move"` are
   * `NotSupported`: `"copy"`, browsing, leaves nothing for `accept()`, `release()` or `reject()`
   * to settle); other source fields are kept (`durable`, `filter`, ...). A `filter` (an object
   * of filters by name) the broker leaves out of its attach is one it does not apply (AMQP 1.0
   * 3.5.3): `ready` and iteration then fail with `NotSupported`, the link detached before any
   * credit is granted. (RabbitMQ 3.10 echoes a filter it does not apply, such as a
   * `jms-selector`, so this cannot catch it there.) The source's `durable` must be 0, 1 or 2,
   * `expiry_policy` one of `"link-detach"`, `"session-end"`, `"connection-close"`, `"never"` and
   * `timeout` a whole number of seconds. `outcomes`, the outcomes the subscriber may settle with,
   * must list `amqp:accepted:list`, `amqp:rejected:list` and `amqp:released:list` (and
   * `amqp:modified:list` with `releaseOutcome: "modified"`), else a broker keeping to it could
   * refuse `accept()`, `reject()` or `release()`; `default_outcome`, what the broker does with
   * deliveries a closed or lost link left unsettled, may only be released or modified, as rhea
   * writes them (`rhea.message.released().described()`): `accepted` would consume them unseen.
   * (RabbitMQ 3.10 applies neither.) Credit and settlement are the
   * subscriber's: `snd_settle_mode` and `rcv_settle_mode` may only be 0 (unsettled deliveries,
   * settled by `accept()`, `release()` or `reject()`), `autoaccept` false, `autosettle` true and
   * `credit_window` 0 (use `credit`); anything else is `NotSupported`, naming the option. The
   * link asks for 0 and 0 itself, whatever rhea's connection-wide `receiver_options` say. (A
   * pre-settled delivery is gone from the broker once sent: `release()` could not give it back.)
   * An `outcomes` symbol other than AMQP's four is `NotSupported` too (RabbitMQ 3.10 ended the
   * session). The link's own `target` is checked for `durable`, `expiry_policy` and `timeout` as
   * the source is (a `timeout` of -1 ended the connection); its `address` and `dynamic` are
   * passed through (RabbitMQ 3.10 ignores them). `capabilities` on either terminus, and the
   * link's `offered_capabilities` and `desired_capabilities`, must be a string or an array of
   * strings (a number threw a `TypeError` out of rhea, or ended the connection);
   * `dynamic_node_properties` is passed through.
   */
  receiverOptions?: Record<string, unknown>;
}

/** A subscriber on one AMQP 1.0 receiver link. */
export interface AmqpSubscriber<T = unknown> extends Subscriber<T> {
  /** The source address. */
  readonly address: string;
  /**
   * Resolves when the receiver link is attached; rejects when the peer refused it, or attached
   * it without a filter of `receiverOptions.source.filter` (`NotSupported`).
   */
  readonly ready: Promise<void>;
}

/**
 * The message rhea decoded; for a message format other than AMQP's own (0), which rhea hands over
 * as bytes, a message marked as not decoded with those bytes as its body.
 */
function messageOf(context: EventContext): AmqpMessage | undefined {
  const format = (context as { format?: unknown }).format;
  if (format === undefined || format === 0) {
    return context.message as unknown as AmqpMessage | undefined;
  }
  return {
    message_annotations: {
      [UNDECODABLE_ANNOTATION]: `NotSupported: the transfer's message format is ${String(format)}, not AMQP 1.0's (0)`,
    },
    body: context.message as unknown,
  } as AmqpMessage;
}

/**
 * How many times a message has been delivered, counting this one: the header's `delivery-count`
 * (failed earlier attempts) plus one. A peer that does not count (RabbitMQ 3.x) but marks the
 * message as possibly acquired before (`first-acquirer` false) gives at least 2.
 *
 * @param message - the message as rhea delivered it
 * @returns the count, at least 1
 */
export function deliveryCountOf(message: AmqpMessage): number {
  const failed = typeof message.delivery_count === "number" ? message.delivery_count : 0;
  const count = failed + 1;
  return count === 1 && message.first_acquirer === false ? 2 : count;
}

/**
 * Whether the peer can be held to the link credit it was granted. RabbitMQ 3.x cannot: its AMQP
 * 1.0 plugin hands each flow's credit to the queue afresh, ignoring the messages already on their
 * way, and against 3.10 a receiver with credit 10 received 897 transfers past what it had
 * granted (rabbitmq-server#2597, fixed by the native AMQP 1.0 of RabbitMQ 4.0). Read from the
 * `product` and `version` properties of the peer's open frame.
 *
 * @param connection - an open rhea connection
 * @returns `false` for RabbitMQ before 4, `true` for every other peer
 */
function creditKeptBy(connection: Connection): boolean {
  return rabbitMq3Version(connection) === undefined;
}

/** The version of a RabbitMQ before 4 at the other end (from its open frame), else undefined. */
function rabbitMq3Version(connection: Connection): string | undefined {
  const properties = (connection as unknown as { properties?: Record<string, unknown> }).properties;
  if (properties?.product !== "RabbitMQ") return undefined;
  const major = Number.parseInt(String(properties.version), 10);
  return Number.isNaN(major) || major >= 4 ? undefined : String(properties.version);
}

interface Tracked extends Slotted {
  readonly delivery: RheaDelivery;
  /**
   * Out of `unsettled` because its link (or connection) went away, not because it was settled or
   * close() released it.
   */
  lost: boolean;
  /** The delivery made for the application (close tells those still queued by it). */
  handout: Delivery<unknown> | undefined;
}

/**
 * Receives from an AMQP 1.0 source over a rhea connection the application opened, with manual
 * settlement: `accept()` sends `accepted`, `release()` `released` (or `modified` with
 * delivery-failed), `reject(reason)` `rejected` with an error condition. The link never holds
 * more than `credit` unsettled deliveries. A delivery the peer sent settled (at-most-once) cannot
 * be handed back: its `release()` and `reject()` fail with `SettlementFailed`. `close()` releases
 * what was not handed out yet, waits up
 * to `drainTimeoutMs` for the deliveries in the application's hands to be settled, releases those
 * still unsettled and detaches.
 *
 * @param connection - an open (or opening) rhea connection
 * @param options - the address, credit, formats for structured mode and decoding limits
 * @throws {@link PosthornError} `NotSupported` for a `connection` that is not a rhea
 *   `Connection`, an `address` that is not a non-empty string, a `credit` that is not a whole
 *   number from 1 to 4294967295, an unknown `releaseOutcome`, a `rejectCondition` that is not a
 *   non-empty string, a time limit or decoding limit that is not a number of 0 or more, or a
 *   credit, settlement or source option of `receiverOptions` the subscriber cannot work with
 *   (see {@link AmqpSubscriberOptions.receiverOptions})
 * @example
 * ```ts
 * const subscriber = amqpSubscriber(connection, { address: "/amq/queue/orders", formats: [json] });
 * for await (const delivery of subscriber) {
 *   if (delivery.event) { await handle(delivery.event); await delivery.accept(); }
 *   else await delivery.reject(delivery.error ?? "not a CloudEvent");
 * }
 * ```
 */
export function amqpSubscriber<T = unknown>(
  connection: Connection,
  options: AmqpSubscriberOptions,
): AmqpSubscriber<T> {
  checkConnection("amqpSubscriber", connection);
  checkAddress("amqpSubscriber", options?.address);
  // Checked once, here: AMQP credit is a finite count, and 0 would never let a message in. Past
  // a uint, the flow frame carried a wrapped value and RabbitMQ dropped the connection.
  checkCountOption("credit", options.credit, 1, false);
  if (options.credit !== undefined && options.credit > MAX_UINT) {
    throw new PosthornError(
      "NotSupported",
      `credit must be at most ${MAX_UINT} (AMQP link credit is a 32-bit count), got ${options.credit}`,
      { attribute: "credit" },
    );
  }
  checkChoiceOption("releaseOutcome", options.releaseOutcome, ["released", "modified"]);
  if (
    options.rejectCondition !== undefined &&
    (typeof options.rejectCondition !== "string" || options.rejectCondition.length === 0)
  ) {
    throw new PosthornError(
      "NotSupported",
      `rejectCondition must be a non-empty string, an AMQP error condition such as "posthorn:rejected", got ${typeof options.rejectCondition === "string" ? '""' : typeof options.rejectCondition}`,
      { attribute: "rejectCondition" },
    );
  }
  checkTimeOption("drainTimeoutMs", options.drainTimeoutMs);
  checkDecodeLimits(options);
  // The decoding options as checked: readAmqpMessage checks them again on every message, and a
  // limit the caller changed afterwards would throw out of rhea's message event.
  const decodeOptions: FromAmqpMessageOptions =
    options.json === undefined ? { ...options } : { ...options, json: { ...options.json } };
  checkLinkOptions(
    "receiverOptions",
    options.receiverOptions,
    options.address,
    options.releaseOutcome ?? "released",
  );
  const { address, receiverOptions } = options;
  const credit = options.credit ?? 100;
  const releaseOutcome = options.releaseOutcome ?? "released";
  const rejectCondition = options.rejectCondition ?? "posthorn:rejected";
  const drainTimeoutMs = options.drainTimeoutMs ?? 0;
  const queue = new AsyncQueue<Delivery<T>>();
  const unsettled = new SlotSet<Tracked>();
  let closing: Promise<void> | undefined;
  // What close() waits on for the deliveries in hand.
  const drain = new Drain();

  // A session of its own, so a failing address ends only this subscriber's session.
  applyNoDelay(connection);
  const session = connection.create_session();
  session.begin();
  const receiver: Receiver = session.attach_receiver({
    ...receiverOptions,
    source: { ...(receiverOptions?.source as Record<string, unknown> | undefined), address },
    // Unsettled deliveries, settled by the application, whatever rhea's default (mixed, which
    // lets the peer pre-settle) or the connection's receiver_options say.
    snd_settle_mode: 0,
    rcv_settle_mode: 0,
    autoaccept: false,
    autosettle: true,
    credit_window: 0,
  });
  resumeWithConnection(connection, session);

  let readyResolve!: () => void;
  let readyReject!: (e: unknown) => void;
  const ready = new Promise<void>((resolve, reject) => {
    readyResolve = resolve;
    readyReject = reject;
  });
  ready.catch(() => {});

  // Each settlement gives one credit back. (RabbitMQ 3.x sends transfers past the credit,
  // rabbitmq-server#2597, fixed in 4.0; see creditKeptBy. Returning credit one by one keeps that
  // overshoot smallest.)
  const grant = (): void => {
    if (!closing && receiver.is_open()) {
      receiver.add_credit(1);
      granted++;
    }
  };

  // AMQP 1.0 2.6.7: the peer may not send more transfers than the credit granted. rhea takes them
  // anyway (its `credit` stops at 0, it logs "Received transfer when credit was 0"), so the
  // subscriber counts: every credit it granted since the link attached against every transfer
  // since then. The subscriber only ever adds credit and never drains, so a transfer past that
  // sum is past every limit its flows announced, whatever was in flight when they crossed (a
  // sender's own drain flow only uses credit up). `granted` is Infinity for a peer known not to
  // keep to its credit (see creditKeptBy).
  let granted = 0;
  let received = 0;
  let exceeded = false;

  // A transfer past the credit: detach with amqp:link:transfer-limit-exceeded and end iteration
  // after what was queued, as on any other lost link. The transfer itself is dropped unsettled,
  // as are those the peer sends before it reads the detach: the detach ends their link.
  const overrun = (): void => {
    if (exceeded) return;
    exceeded = true;
    const error = {
      condition: "amqp:link:transfer-limit-exceeded",
      description: `the peer sent transfer ${received} after ${granted} credits were granted`,
    };
    if (receiver.is_open()) receiver.close(error);
    forget();
    if (closing) return;
    queue.fail(translateAmqpError(error, "link", `the receiver link from ${address}`));
  };

  const gate = dispositionGate(connection);

  const settle = (
    tracked: Tracked,
    key: string,
    action: (d: RheaDelivery) => void,
  ): Promise<void> => {
    if (!unsettled.has(tracked)) {
      throw new PosthornError(
        "SettlementFailed",
        tracked.lost
          ? "the link that carried this delivery is gone; the broker redelivers it"
          : "the subscriber was closed and released this delivery; the broker redelivers it",
      );
    }
    unsettled.delete(tracked);
    drain.wake();
    // The peer settled it first (sent pre-settled, at-most-once, though the link asked for
    // unsettled deliveries, or settled it on its own since): the message is no longer the
    // broker's to hand back or dead-letter, and a released or rejected outcome would go nowhere.
    if (tracked.delivery.remote_settled === true && key !== "accepted") {
      grant();
      return Promise.reject(
        new PosthornError(
          "SettlementFailed",
          `the peer settled this delivery itself (sent pre-settled, at-most-once): the message is gone from ${address}, and ${key.startsWith("rejected") ? "reject()" : "release()"} cannot hand it back`,
        ),
      );
    }
    return new Promise<void>((resolve) => {
      gate.submit(key, () => {
        action(tracked.delivery);
        grant();
        corkForThisTick(socketOf(connection));
        resolve();
      });
    });
  };

  receiver.on("message", (context: EventContext) => {
    if (++received > granted) {
      overrun();
      return;
    }
    const rheaDelivery = context.delivery;
    const amqp = messageOf(context);
    if (rheaDelivery === undefined || amqp === undefined) return;
    const tracked: Tracked = {
      delivery: rheaDelivery,
      lost: false,
      handout: undefined,
      slot: -1,
    };
    if (closing) {
      gate.submit("released", () => rheaDelivery.release());
      return;
    }
    unsettled.add(tracked);
    const decoded = readAmqpMessage(amqp, decodeOptions);
    const message = decoded.message;
    // The metadata object is the decoder's fresh one: adding to it costs far less than a copy
    // (a spread followed by a new member takes V8's slow path, about 0.5 us).
    (message.metadata as Record<string, unknown>).address = address;
    const delivery = createDelivery<T>({
      message,
      event: decoded.event as Delivery<T>["event"],
      error: decoded.error,
      deliveryCount: deliveryCountOf(amqp),
      capabilities: AMQP_SETTLEMENT_CAPABILITIES,
      unsupported: AMQP_UNSUPPORTED,
      accept: () => settle(tracked, "accepted", (d) => d.accept()),
      release: () =>
        settle(tracked, releaseOutcome, (d) =>
          // Both fields explicit: some brokers refuse a modified outcome with absent fields.
          releaseOutcome === "modified"
            ? d.modified({ delivery_failed: true, undeliverable_here: false })
            : d.release(),
        ),
      reject: (reason) => {
        const description = reason ?? "rejected by the consumer";
        return settle(tracked, `rejected:${description}`, (d) =>
          d.reject({ condition: rejectCondition, description }),
        );
      },
    });
    tracked.handout = delivery;
    queue.push(delivery);
  });

  // The filters asked for, by name. AMQP 1.0 (3.5.3): the sending end's attach carries the filter
  // actually in place, so one the broker left out is one it does not apply, and the subscriber
  // would hand out every message the application meant to filter away.
  const wantedFilters = Object.keys(
    ((receiverOptions?.source as { filter?: unknown } | undefined)?.filter as
      | Record<string, unknown>
      | undefined) ?? {},
  );
  // Set when the broker left a filter out: the link is detached and iteration failed with it.
  let unfiltered: PosthornError | undefined;
  const droppedFilter = (): string | undefined => {
    if (wantedFilters.length === 0) return undefined;
    // rhea keeps the peer's attach on `remote`, which its typings leave out.
    const peer = (receiver as unknown as { remote?: { attach?: { source?: unknown } } }).remote;
    const applied = (peer?.attach?.source as { filter?: unknown } | null | undefined)?.filter;
    return wantedFilters.find(
      (key) => typeof applied !== "object" || applied === null || !Object.hasOwn(applied, key),
    );
  };

  receiver.on("receiver_open", () => {
    // Closed before the attach was answered: close() detaches it now, and it takes no messages.
    if (closing || unfiltered) return;
    const dropped = droppedFilter();
    const rabbit3 = releaseOutcome === "modified" ? rabbitMq3Version(connection) : undefined;
    if (dropped !== undefined || rabbit3 !== undefined) {
      // RabbitMQ 3.x's AMQP 1.0 plugin ends the session on a modified outcome ("Unrecognised
      // state", amqp:invalid-field): the first release() took the subscriber down with every
      // delivery in hand.
      unfiltered = new PosthornError(
        "NotSupported",
        dropped !== undefined
          ? `the broker attached the receiver link from ${address} without the filter ${JSON.stringify(dropped)} of receiverOptions.source.filter, so it would not apply it; no credit was granted`
          : `releaseOutcome "modified" cannot be used with RabbitMQ ${rabbit3}: its AMQP 1.0 plugin ends the session on a modified outcome (amqp:invalid-field); use "released" (RabbitMQ 4 takes modified). No credit was granted`,
        {
          attribute:
            dropped !== undefined ? `receiverOptions.source.filter.${dropped}` : "releaseOutcome",
        },
      );
      readyReject(unfiltered);
      queue.fail(unfiltered);
      receiver.close({ condition: "amqp:not-implemented", description: unfiltered.message });
      return;
    }
    readyResolve();
    // A (re)attached link starts without credit, and counts its transfers afresh; grant room for
    // what is not yet settled.
    received = 0;
    const room = Math.max(credit - unsettled.size, 0);
    granted = creditKeptBy(connection) ? room : Number.POSITIVE_INFINITY;
    if (room > 0) receiver.add_credit(room);
  });

  // Deliveries of a lost link cannot be settled any more; the broker redelivers them. Also ends
  // close()'s wait for them.
  const forget = (): void => {
    for (const t of unsettled) t.lost = true;
    unsettled.clear();
    drain.wake();
  };

  const onLinkError = (context: EventContext): void => {
    forget();
    if (closing || unfiltered) return;
    const err = translateAmqpError(
      context.receiver?.error,
      "link",
      `the receiver link from ${address}`,
    );
    readyReject(err);
    queue.fail(err);
  };
  receiver.on("receiver_error", onLinkError);
  receiver.on("receiver_close", onLinkError);
  const onSessionEnd = (context: EventContext): void => {
    forget();
    if (closing) return;
    const err = translateAmqpError(
      context.session?.error,
      "link",
      `the session of the receiver from ${address}`,
    );
    readyReject(err);
    queue.fail(err);
  };
  session.on("session_error", onSessionEnd);
  session.on("session_close", onSessionEnd);

  const stopObserving = observeConnectionLoss(
    connection,
    ({ error, reconnecting, byApplication }) => {
      forget();
      if (closing) return;
      queue.drain();
      if (!reconnecting) {
        const err = byApplication
          ? new PosthornError("Closed", `the application closed the connection carrying ${address}`)
          : translateAmqpError(error, "connection", `the connection carrying ${address}`);
        readyReject(err);
        queue.fail(err);
      }
    },
  );

  const dead = deadConnection(connection, `the subscriber to ${address}`);
  if (dead !== undefined) {
    readyReject(dead);
    queue.fail(dead);
  }

  const linkOpen = (): boolean => receiver.is_open() && !connection.is_closed();
  // Sends the delivery back to the broker for another consumer; settling it later fails.
  const giveBack = (t: Tracked, open: boolean): void => {
    if (!unsettled.delete(t)) return;
    if (open) gate.submit("released", () => t.delivery.release());
    // Over a link that is no longer open nothing was released: the broker redelivers it anyway.
    else t.lost = true;
  };

  const close = (): Promise<void> => {
    if (closing) return closing;
    // A close before the link attached: ready will never resolve, so it says why (a no-op once
    // ready has settled).
    readyReject(
      new PosthornError("Closed", "the AMQP subscriber was closed before its link attached"),
    );
    closing = (async () => {
      // What the application has not seen yet goes back at once.
      const queued = new Set<unknown>(queue.drain());
      queue.end();
      let open = linkOpen();
      for (const t of unsettled) if (queued.has(t.handout)) giveBack(t, open);
      // The deliveries in hand may still be settled over the attached link, for a while.
      if (drainTimeoutMs > 0 && unsettled.size > 0) {
        await drain.wait(drainTimeoutMs, () => unsettled.size === 0);
        open = linkOpen();
      }
      stopObserving();
      for (const t of unsettled) giveBack(t, open);
      // Dispositions go out before the detach: let the gate flush them first.
      if (open) await gate.idle();
      await closeLinkAndSession(connection, session, receiver);
    })();
    return closing;
  };

  return {
    address,
    ready,
    capabilities: AMQP_SETTLEMENT_CAPABILITIES,
    close,
    // Leaving a for-await loop closes the subscriber, releasing what was not settled.
    [Symbol.asyncIterator]: () => closeOnReturn(queue[Symbol.asyncIterator](), close),
  };
}
