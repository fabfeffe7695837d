import {
  AsyncQueue,
  type CloudEvent,
  checkChoiceOption,
  checkCountOption,
  checkTimeOption,
  closeOnReturn,
  createDelivery,
  DEAD_LETTER_ORIGINAL_TOPIC,
  DEAD_LETTER_REASON,
  type Delivery,
  Drain,
  type EventFormat,
  type ExtensionRegistry,
  isPosthornError,
  isValidString,
  type PosthornError,
  PosthornError as PosthornErrorClass,
  type SettlementCapabilities,
  SlotSet,
  type Slotted,
  type Subscriber,
  type UnsupportedSettlements,
  utf8Length,
} from "@posthorn/core";
import type { IClientPublishOptions, MqttClient } from "mqtt";
import { fromMqttError } from "./errors.js";
import {
  classifyMqttMessage,
  fromMqttMessage,
  mqttLimitError,
  toPlainMessage,
} from "./from-message.js";
import type { MqttLimits, MqttMessage } from "./mqtt-message.js";
import {
  asBuffer,
  checkTopicName,
  clientProtocolVersion,
  closedForGoodError,
  MQTT_QOS_LEVELS,
  type MqttQos,
  publishOnClient,
} from "./publisher.js";

/** Options for {@link mqttSubscriber}. */
export interface MqttSubscriberOptions extends MqttLimits {
  /** The topic filter (`+` and `#` wildcards allowed; `$share/<group>/<filter>` for jobs). */
  topic: string;
  /**
   * Subscribe as one of a group of competing consumers: the filter becomes
   * `$share/<group>/<topic>` (MQTT 5 shared subscriptions; Mosquitto also accepts them at 3.1.1).
   * A share name: one character or more, without `/`, `+` or `#` (anything else, `""` included,
   * is refused with `NotSupported` before subscribing).
   */
  group?: string;
  /**
   * Maximum QoS to subscribe at: 0, 1 or 2 (anything else is refused with `NotSupported` before
   * subscribing). Default 1.
   */
  qos?: MqttQos;
  /** Formats that structured messages may use; a 3.1.1 subscriber needs the JSON format. */
  formats: readonly EventFormat[];
  /**
   * Where declared extension types are looked up, in both content modes: binary mode reads
   * declared extensions' user properties into their types, and structured mode decodes with the
   * matched format adapted to this registry ({@link EventFormat.withRegistry}; a format without
   * it decodes with its own). Defaults to core's registry in binary mode and to the format's own
   * in structured mode.
   */
  registry?: ExtensionRegistry;
  /**
   * Where `reject()` publishes the message (unchanged) before acknowledging it. At MQTT 5 the
   * copy adds the user properties {@link DEAD_LETTER_ORIGINAL_TOPIC} and, when `reject()` is
   * given one, {@link DEAD_LETTER_REASON}. A topic name as the publisher's `topic`: empty, a `+`
   * or `#` wildcard, a control character or over 65,535 UTF-8 bytes is refused with
   * `NotSupported` (`attribute: "deadLetterTopic"`) when the subscriber is made.
   */
  deadLetterTopic?: string;
  /** QoS of dead-letter publishes: 0, 1 or 2, checked like `qos`. Default 1. */
  deadLetterQos?: MqttQos;
  /** How long `close()` waits for deliveries in hand to be settled. Default 5000. */
  drainTimeoutMs?: number;
  /**
   * Most QoS 0 deliveries kept waiting for the iterator to pull them. QoS 0 needs no
   * acknowledgement, so mqtt.js would read every one the broker sends into memory however far
   * the application is behind; past this many the subscriber stops mqtt.js processing packets on
   * this connection (it then stops reading the socket, and TCP holds the broker back) until half
   * were pulled. QoS 1 and 2 deliveries count too, though the broker's in-flight window (its
   * `max_inflight_messages`, or the client's MQTT 5 `receiveMaximum`) usually stops them first.
   * While a dead-letter copy at QoS 1/2 waits for its acknowledgement, mqtt.js reads on to twice
   * this many (the acknowledgement may be behind what it would not read); held there with no
   * delivery pulled by the next turn of the event loop, the copy's wait ends and `reject()`
   * rejects with `SettlementFailed`, cause `Timeout` (the message is acknowledged once the
   * copy's acknowledgement is read). Default {@link DEFAULT_MAX_PENDING}.
   */
  maxPending?: number;
  /**
   * Most QoS 1 and 2 messages whose acknowledgement is not yet sent on this client's connection
   * (those handed out and unsettled, those waiting to be pulled, and those settled but waiting
   * for an earlier one): the broker's in-flight window, kept on this side too. A message the
   * broker sends past it waits, unread by the application, and mqtt.js processes no further
   * packet on the connection until an acknowledgement goes out. Mosquitto 2.0.11 sends past its
   * own window once acknowledgements flow. Default: the client's MQTT 5 `receiveMaximum` when
   * set, else 20 (Mosquitto's `max_inflight_messages`); give the broker's window when it is
   * larger. A whole number of 1 or more, or `Infinity` (no limit).
   */
  maxInFlight?: number;
}

/** Mosquitto's default `max_inflight_messages`: the `maxInFlight` of a client without `receiveMaximum`. */
const DEFAULT_BROKER_WINDOW = 20;

/** The default `maxPending` of {@link mqttSubscriber}: 256 QoS 0 deliveries waiting to be pulled. */
export const DEFAULT_MAX_PENDING = 256;

/** An MQTT subscriber: deliveries as an async iterable, plus the topic filter it subscribed. */
export interface MqttSubscriber<T = unknown> extends Subscriber<T> {
  /** The filter as subscribed, e.g. `$share/workers/jobs/#`. */
  readonly filter: string;
}

type HandleMessage = (packet: PacketLike, callback: (err?: Error) => void) => void;

/** The parts of an mqtt.js PUBLISH packet the subscriber reads. */
interface PacketLike {
  readonly topic: string | Uint8Array;
  readonly payload: Uint8Array | string;
  readonly qos: number;
  readonly retain?: boolean;
  readonly dup?: boolean;
  readonly messageId?: number;
  readonly properties?: {
    readonly contentType?: string;
    readonly userProperties?: Readonly<Record<string, string | string[]>>;
    /** MQTT 5: the identifiers of the subscriptions the message matched (3.3.2.3.8). */
    readonly subscriptionIdentifier?: number | readonly number[];
  };
}

/** What a delivery's `message.metadata` holds for an MQTT message. */
type MqttMetadata = {
  topic: string;
  qos: number;
  retain: boolean;
  dup: boolean;
  messageId?: number;
};

interface Route {
  /**
   * The MQTT 5 Subscription Identifier its SUBSCRIBE carried, if any: chosen once the server's
   * CONNACK has said whether it takes them, `undefined` until then.
   */
  id: number | undefined;
  matches(topic: string): boolean;
  receive(packet: PacketLike, callback: (err?: Error) => void): void;
}

/** A delivery not yet settled, in the subscriber's {@link SlotSet}, and what it owes. */
interface Held<T> extends Slotted {
  delivery: Delivery<T>;
  readonly owed: OwedAck;
}

/**
 * An acknowledgement owed to the broker for one QoS 1/2 message: `send` is `undefined` until the
 * delivery is settled, then `true` (send it) or `false` (withhold it: the session resends).
 */
interface OwedAck {
  readonly packet: PacketLike;
  send: boolean | undefined;
  /** The connection it is owed on: {@link Dispatcher.epoch} when the message arrived. */
  readonly epoch: number;
}

/** A QoS 1/2 packet that arrived past a subscriber's window, held until an acknowledgement goes out. */
interface Parked {
  /** The window of the subscriber it is for. */
  readonly limit: number;
  readonly route: Route;
  /** Hands the packet on (the window has room). */
  admit(): void;
  /** Leaves it unacknowledged and lets mqtt.js go on: the connection was lost or the subscriber closed. */
  drop(): void;
}

interface Dispatcher {
  readonly routes: Set<Route>;
  /** The Subscription Identifier for the next subscriber, or `undefined` where there are none. */
  nextId(): number | undefined;
  /** Acknowledgements owed on the current connection, in the order the messages arrived. */
  readonly owed: OwedAck[];
  /** Counts the connections lost or dropped: an acknowledgement owed on an earlier one is void. */
  readonly epoch: number;
  /**
   * Sends what is settled at the head of `owed`, in arrival order, then admits the parked packet
   * if its window has room.
   */
  flush(): void;
  /**
   * Holds a packet that arrived with `limit` acknowledgements already owed. mqtt.js handles one
   * packet at a time and waits for this one's callback, so at most one is ever parked.
   */
  park(parked: Parked): void;
  /** Drops the parked packet if it is for `route` (its subscriber is closing). */
  unpark(route: Route): void;
  /**
   * Dead-letter copies waiting for the broker's acknowledgement (QoS 1/2 copies, of deliveries at
   * any QoS). While any does, no packet is parked past a window, and a subscriber holds mqtt.js
   * only at twice its `maxPending`: the copy's PUBACK can be behind on the connection, and
   * `reject()` (and a QoS 1/2 delivery's own acknowledgement) waits for that PUBACK.
   */
  readonly copies: number;
  /**
   * Counts a copy from now until the returned function is called, and lets mqtt.js read on:
   * admits the parked packet whatever its window, and resumes every subscriber holding mqtt.js
   * past its `maxPending`. `fail` ends the copy's wait early (see {@link failCopies}).
   */
  copyStarted(fail: (err: PosthornError) => void): () => void;
  /**
   * Ends the wait of every copy still waiting with `err`: a subscriber holds mqtt.js, so their
   * PUBACKs may not be read until its deliveries are pulled. They stay counted until their
   * answer is read: the rejected message's acknowledgement waits for it, so a packet parked past
   * the window in front of it would never let it through (20 accepted deliveries' PUBACKs and
   * the 21st message stuck for good behind one such copy).
   */
  failCopies(err: PosthornError): void;
  /** The resume functions of this client's subscribers holding mqtt.js past `maxPending`. */
  readonly paused: Set<() => void>;
  /** Drops the connection (mqtt.js reconnects), voiding every acknowledgement owed on it. */
  drop(): void;
  /** Called each time a connection is lost or dropped, after {@link epoch} moved on. */
  readonly onLost: Set<() => void>;
  /**
   * The filters of subscribers closed while the client's session persists, each with its
   * matcher: QoS 1/2 messages for them that no open subscriber takes (resent copies of
   * deliveries left unsettled, messages the broker queued before the unsubscribe) are left
   * unacknowledged for a later subscriber, not acknowledged by mqtt.js's own handler.
   */
  readonly closedFilters: Map<string, (topic: string) => boolean>;
  /**
   * Told of each filter the broker refused when mqtt.js subscribed again on its own after a
   * reconnect (its resubscription; a SUBACK failure code such as 0x87 Not authorized, 0x80 at
   * 3.1.1), with the reason code and mqtt.js's error. mqtt.js calls that SUBSCRIBE back to no
   * one, so the subscriber on the filter learns of the refusal only here.
   */
  readonly refusedAgain: Set<(filter: string, code: number, err: Error) => void>;
  /**
   * Called when the application ends a `manualConnect` client that never connected: mqtt.js's
   * `end()` then throws a `TypeError` (it has no stream to close) and emits neither `end` nor
   * `close`, so nothing else tells a SUBSCRIBE waiting for the CONNACK.
   */
  readonly endedUnopened: Set<() => void>;
}

/** How long `release()` waits for the broker to read what was sent before the connection goes. */
const DROP_WAIT_MS = 1000;

/** The socket under an mqtt.js client, as far as `release()` touches it. */
interface CorkableStream {
  readonly writableCorked?: number;
  uncork(): void;
  destroy(): void;
}

/** The mqtt.js internals the subscriber acknowledges through (not in its public types). */
interface ClientInternals {
  _sendPacket(
    packet: { cmd: string; messageId?: number },
    callback?: () => void,
    ...rest: unknown[]
  ): void;
  incomingStore: { del(packet: object, callback: () => void): void };
  _releaseIncomingQoS2Publish?(messageId: number): void;
}

/**
 * mqtt.js's hook for an incoming QoS 1/2 PUBLISH (`customHandleAcks`): it answers a QoS 2 one
 * with a PUBREC once `done` is called with reason code 0.
 */
type HandleAcks = (
  topic: string,
  message: Uint8Array,
  packet: PacketLike,
  done: (error: Error | number | null, code?: number) => void,
) => void;

const noop = () => undefined;

/**
 * Refuses a client without the internals the subscriber acknowledges through, before it
 * subscribes: every mqtt.js 5 release has them, and without them no QoS 1/2 message could ever be
 * acknowledged (the broker would resend each one on every reconnect).
 */
function checkClientInternals(client: MqttClient): void {
  const internals = client as unknown as Partial<ClientInternals>;
  if (
    typeof internals._sendPacket === "function" &&
    typeof internals.incomingStore?.del === "function" &&
    typeof client.options?.customHandleAcks === "function"
  ) {
    return;
  }
  throw new PosthornErrorClass(
    "NotSupported",
    "this MQTT client has no _sendPacket, incomingStore and options.customHandleAcks, which mqttSubscriber acknowledges QoS 1 and 2 messages through: use an mqtt.js 5 client (the mqtt package, 5.x)",
  );
}

/**
 * Whether `client` was made with mqtt.js's `manualConnect` and its `connect()` not called yet (nor
 * `end()`): it has no stream, and processes no packet until the application connects it.
 */
function notConnectedYet(client: MqttClient): boolean {
  return (
    (client as { stream?: unknown }).stream === undefined &&
    !client.connected &&
    !client.reconnecting &&
    !client.disconnecting &&
    !client.disconnected
  );
}

/**
 * Whether `client` is a `manualConnect` client ended before `connect()` was called: mqtt.js's
 * `end()` set `disconnecting` and threw before it could set `disconnected` or emit `end`.
 */
function endedBeforeConnecting(client: MqttClient): boolean {
  return (
    (client as { stream?: unknown }).stream === undefined &&
    client.disconnecting &&
    !client.connected &&
    !client.reconnecting
  );
}

// One dispatcher per client: mqtt.js has a single handleMessage hook, which every subscriber on
// that client shares. Packets no subscriber claims go to the hook that was there before.
const dispatchers = new WeakMap<MqttClient, Dispatcher>();

function dispatcherFor(client: MqttClient): Dispatcher {
  let dispatcher = dispatchers.get(client);
  if (dispatcher) return dispatcher;
  const routes = new Set<Route>();
  const owed: OwedAck[] = [];
  const closedFilters = new Map<string, (topic: string) => boolean>();
  const target = client as unknown as { handleMessage: HandleMessage };
  const previous = target.handleMessage.bind(client);
  /** Hands `packet` to the subscriber it is for; `false` when it is for none. */
  const dispatch = (packet: PacketLike, callback: (err?: Error) => void): boolean => {
    if (ending !== undefined && packet.qos > 0) {
      // The connection release() dropped: its acknowledgements are void, the session resends.
      callback(WITHHELD);
      return true;
    }
    // MQTT 5 3.3.4: a broker may send one copy per matching subscription (Mosquitto does), each
    // naming its subscription: the subscriber that made it takes it, not the first whose filter
    // matches (two overlapping filters on one client gave that one both copies, the other none).
    const ids = packet.properties?.subscriptionIdentifier;
    if (ids !== undefined) {
      for (const route of routes) {
        if (
          route.id !== undefined &&
          (ids === route.id || (Array.isArray(ids) && ids.includes(route.id)))
        ) {
          route.receive(packet, callback);
          return true;
        }
      }
    }
    const topic = typeof packet.topic === "string" ? packet.topic : String(packet.topic);
    for (const route of routes) {
      if (route.matches(topic)) {
        route.receive(packet, callback);
        return true;
      }
    }
    if (packet.qos > 0) {
      for (const matches of closedFilters.values()) {
        if (matches(topic)) {
          // mqtt.js's handler would acknowledge it, and the message was lost to the application
          // (30 of 30 after a reconnect, its 'message' listeners aside): the session keeps it.
          callback(WITHHELD);
          return true;
        }
      }
    }
    return false;
  };
  // QoS 2 messages handed out at their PUBREL: mqtt.js answered their PUBLISH before there was a
  // subscriber to take it (a resumed session resends right after CONNACK, maybe before
  // mqttSubscriber was called), and what settles them is the PUBCOMP.
  const atPubrel = new WeakSet<PacketLike>();
  target.handleMessage = (packet, callback) => {
    if (packet.qos === 2) atPubrel.add(packet);
    if (!dispatch(packet, callback)) previous(packet, callback);
  };
  // QoS 2: the subscriber takes the PUBLISH itself, and its settlement sends the PUBREC. mqtt.js
  // answered each PUBLISH with a PUBREC at once and kept it until the broker's PUBREL, which was
  // when the subscriber saw it: nothing bounded those (173-180 of 200 held against Mosquitto
  // 2.0.11, which sends past its window), and maxInFlight now counts them from the PUBLISH.
  const options = client.options as unknown as { customHandleAcks: HandleAcks };
  const handleAcks = options.customHandleAcks;
  // QoS 2 PUBLISHes a subscriber took whose PUBREC mqtt.js is about to send: it is not sent.
  const taken = new Set<number>();
  options.customHandleAcks = (topic, message, packet, done) => {
    const messageId = packet.messageId;
    if (packet.qos !== 2 || messageId === undefined) {
      handleAcks(topic, message, packet, done);
      return;
    }
    // mqtt.js emits a QoS 1 message to its 'message' listeners before its handler, and a QoS 2
    // one at its PUBREL if it stored the PUBLISH, which it no longer does for these.
    const claimed = dispatch(packet, () => {
      taken.add(messageId);
      done(0);
    });
    if (!claimed) handleAcks(topic, message, packet, done);
    else client.emit("message", topic, message as Buffer, packet as never);
  };
  const internals = client as unknown as ClientInternals;
  const sendPacket = internals._sendPacket.bind(client);
  internals._sendPacket = (packet, callback, ...rest) => {
    const messageId = packet.messageId;
    if (packet.cmd === "pubrec" && messageId !== undefined && taken.delete(messageId)) {
      // mqtt.js stored the PUBLISH for the PUBREL that answers its PUBREC; the subscriber holds it
      // instead, and a PUBREL answering its own PUBREC finds nothing stored (mqtt.js then sends
      // the PUBCOMP).
      internals.incomingStore.del(packet, noop);
      internals._releaseIncomingQoS2Publish?.(messageId);
      callback?.();
      return;
    }
    sendPacket(packet, callback, ...rest);
  };
  /**
   * Sends the acknowledgement mqtt.js was told to skip: PUBACK at QoS 1, PUBREC at QoS 2 (the
   * broker's PUBREL then finds nothing stored, and mqtt.js answers it with PUBCOMP), and for a
   * QoS 2 message handed out at its PUBREL what mqtt.js does once its handler calls back (forget
   * the stored PUBLISH, then PUBCOMP).
   */
  const sendAck = (packet: PacketLike): void => {
    const messageId = packet.messageId;
    if (messageId === undefined) return;
    if (packet.qos === 2 && atPubrel.has(packet)) {
      internals.incomingStore.del(packet, noop);
      internals._releaseIncomingQoS2Publish?.(messageId);
      sendPacket({ cmd: "pubcomp", messageId });
    } else {
      sendPacket({ cmd: packet.qos === 2 ? "pubrec" : "puback", messageId });
    }
  };
  // What was owed on a lost connection can never be sent on the next one (the packet identifiers
  // belong to the old one); a persistent session resends those messages instead.
  let parked: Parked | undefined;
  // Set from drop() until the dropped connection is destroyed: ends the wait for its PINGRESP.
  let ending: (() => void) | undefined;
  const onLost = new Set<() => void>();
  const lose = () => {
    owed.length = 0;
    made.epoch++;
    // Never admitted on the next connection: its acknowledgement would carry a stale identifier.
    const p = parked;
    parked = undefined;
    p?.drop();
    for (const fn of onLost) fn();
  };
  // PINGREQs sent on the current connection and not yet answered (mqtt.js's keepalive ones
  // included): the broker answers them in order, so release() knows which PINGRESP is its own.
  let pings = 0;
  client.on("packetsend", (packet: { cmd: string }) => {
    if (packet.cmd === "pingreq") pings++;
  });
  client.on("packetreceive", (packet: { cmd: string }) => {
    if (packet.cmd === "pingresp" && pings > 0) pings--;
  });
  client.on("close", () => {
    pings = 0;
    ending?.();
    lose();
  });
  const refusedAgain = new Set<(filter: string, code: number, err: Error) => void>();
  watchResubscription(client, refusedAgain);
  const endedUnopened = new Set<() => void>();
  const ended = client as unknown as { end: (...args: unknown[]) => unknown };
  const end = ended.end;
  ended.end = function (this: unknown, ...args: unknown[]) {
    const unopened = notConnectedYet(client);
    try {
      return end.apply(this, args);
    } finally {
      if (unopened && endedBeforeConnecting(client)) for (const fn of [...endedUnopened]) fn();
    }
  };
  let lastId = 0;
  const waitingCopies = new Set<{ fail: (err: PosthornError) => void; failed: boolean }>();
  const made = {
    routes,
    owed,
    onLost,
    closedFilters,
    refusedAgain,
    endedUnopened,
    epoch: 0,
    nextId: () => {
      // Called once the client has its CONNACK, which says whether the server takes them.
      if (client.options.protocolVersion !== 5) return undefined;
      const server = (client as unknown as { _serverProperties?: Record<string, unknown> })
        ._serverProperties;
      if (server?.subscriptionIdentifiersAvailable === false) return undefined;
      // 1 to 268,435,455 (a Variable Byte Integer); a client never makes that many subscribers.
      lastId = (lastId % 268_435_455) + 1;
      return lastId;
    },
    flush: () => {
      while (owed.length > 0 && (owed[0] as OwedAck).send !== undefined) {
        const head = owed.shift() as OwedAck;
        // Never queued for a later connection: mqtt.js would send it there, with a stale identifier.
        if (head.send && client.connected) sendAck(head.packet);
      }
      if (parked !== undefined && owed.length < parked.limit) {
        const p = parked;
        parked = undefined;
        p.admit();
      }
    },
    park: (p: Parked) => {
      parked = p;
    },
    get copies() {
      return waitingCopies.size;
    },
    paused: new Set<() => void>(),
    copyStarted: (fail: (err: PosthornError) => void) => {
      const copy = { fail, failed: false };
      waitingCopies.add(copy);
      const p = parked;
      parked = undefined;
      p?.admit();
      for (const resume of [...made.paused]) resume();
      return () => {
        waitingCopies.delete(copy);
      };
    },
    failCopies: (err: PosthornError) => {
      for (const copy of [...waitingCopies]) {
        if (copy.failed) continue;
        copy.failed = true;
        copy.fail(err);
      }
    },
    unpark: (route: Route) => {
      if (parked?.route !== route) return;
      const p = parked;
      parked = undefined;
      p.drop();
    },
    drop: () => {
      // Voided now, not at the 'close' event: an accept() in between would resolve on an
      // acknowledgement written to a destroyed socket.
      lose();
      const stream = (client as unknown as { stream?: CorkableStream }).stream;
      // mqtt-packet corks the socket for every packet it writes and uncorks on the next tick:
      // acknowledgements sent in this tick (accepts just before a release()) were still corked,
      // and destroy() discarded them, so the broker resent messages that had been accepted.
      while ((stream?.writableCorked ?? 0) > 0) stream?.uncork();
      if (ending !== undefined) return;
      if (!client.connected) {
        stream?.destroy();
        return;
      }
      // Destroyed at once, a socket with unread data in it (mqtt.js stopped reading past the
      // window, or the broker sent more meanwhile) is reset rather than closed, and the broker
      // loses what it had not read yet: the acknowledgements just sent, so it resent messages
      // that had been accepted (11 of 50 rounds of a probe). The broker handles a connection's
      // packets in order, so the PINGRESP to this PINGREQ shows it has read them; until then what
      // the connection still brings is left unacknowledged (the resumed session resends it).
      // Not the first PINGRESP: one answering an earlier PINGREQ (mqtt.js's keepalive, sent
      // before these acknowledgements) ended the wait before a broker slow to read had read
      // them, and the accepted message came again.
      let answers = 0;
      const end = () => {
        client.off("packetreceive", onPacket);
        clearTimeout(timer);
        ending = undefined;
        stream?.destroy();
      };
      const onPacket = (packet: { cmd: string }) => {
        if (packet.cmd === "pingresp" && --answers <= 0) end();
      };
      client.on("packetreceive", onPacket);
      const timer = setTimeout(end, DROP_WAIT_MS);
      ending = end;
      (client as unknown as ClientInternals)._sendPacket({ cmd: "pingreq" });
      // Counted by the packetsend listener above, ours included (written at once: connected).
      answers = Math.max(pings, 1);
    },
  };
  dispatcher = made;
  dispatchers.set(client, dispatcher);
  return dispatcher;
}

/**
 * Tells `refusedAgain` of the filters the broker refuses in the SUBSCRIBEs mqtt.js sends on its
 * own after reconnecting (`_resubscribe`, with no callback: a refusal went unnoticed, and the
 * subscriber on that filter received nothing, silently). It wraps `_resubscribe` to hand its
 * `subscribe` calls a callback; a client without it (not mqtt.js 5) is left as it is.
 */
function watchResubscription(
  client: MqttClient,
  refusedAgain: Set<(filter: string, code: number, err: Error) => void>,
): void {
  type Subscribe = (topics: unknown, opts?: unknown, callback?: unknown) => unknown;
  const target = client as unknown as {
    _resubscribe?: () => void;
    _resubscribeTopics?: Record<string, unknown>;
    subscribe: Subscribe;
  };
  const resubscribe = target._resubscribe;
  if (typeof resubscribe !== "function") return;
  target._resubscribe = function (this: unknown) {
    const own = Object.hasOwn(target, "subscribe");
    const subscribe = target.subscribe;
    target.subscribe = (topics, opts, callback) => {
      // What mqtt.js subscribes to again: a record of filter to options (`resubscribe` is its
      // flag, not a filter), in the order of the SUBSCRIBE's subscriptions and its SUBACK's codes.
      const filters =
        topics !== null && typeof topics === "object" && !Array.isArray(topics)
          ? Object.keys(topics).filter((f) => f !== "resubscribe")
          : [];
      const given = typeof opts === "function" ? opts : callback;
      const answered = (err: Error | null, ...rest: unknown[]) => {
        if (err) refused(filters, err);
        if (typeof given === "function") given(err, ...rest);
      };
      return typeof opts === "function"
        ? subscribe.call(client, topics, answered)
        : subscribe.call(client, topics, opts, answered);
    };
    try {
      resubscribe.call(this);
    } finally {
      if (own) target.subscribe = subscribe;
      else delete (target as { subscribe?: Subscribe }).subscribe;
    }
  };
  const refused = (filters: readonly string[], err: Error) => {
    const granted = (err as { packet?: { granted?: unknown } }).packet?.granted;
    // Not a SUBACK (the connection closed first): mqtt.js subscribes again on the next connection.
    if (!Array.isArray(granted)) return;
    const recorded = target._resubscribeTopics ?? {};
    for (let i = 0; i < filters.length; i++) {
      const filter = filters[i] as string;
      // One SUBACK code per subscription, in order; with the SUBSCRIBE split in batches
      // (`subscribeBatchSize`) they are not all in this SUBACK, and the refused filters are
      // those mqtt.js forgot (it forgets every filter of a SUBSCRIBE one of whose is refused).
      const code =
        granted.length === filters.length
          ? (granted[i] as number)
          : Object.hasOwn(recorded, filter)
            ? 0
            : (granted.find((g): g is number => typeof g === "number" && g >= 0x80) ?? 0x80);
      if (typeof code !== "number" || code < 0x80) continue;
      for (const fn of [...refusedAgain]) fn(filter, code, err);
    }
  };
}

/**
 * Whether `topic` matches the MQTT topic filter `filter` (`+` one level, `#` the rest; a
 * `$share/<group>/` prefix is ignored; wildcards at the first level never match `$` topics).
 *
 * @param filter - the topic filter a subscription used
 * @param topic - the topic a message was published to
 */
export function topicMatches(filter: string, topic: string): boolean {
  return topicMatcher(filter)(topic);
}

/**
 * The test of {@link topicMatches} for one filter, with the filter split once: a subscriber
 * runs it on every message it receives.
 */
export function topicMatcher(filter: string): (topic: string) => boolean {
  let f = filter;
  if (f.startsWith("$share/")) {
    const groupEnd = f.indexOf("/", 7);
    f = groupEnd === -1 ? "" : f.slice(groupEnd + 1);
  }
  if (!f.includes("+") && !f.includes("#")) return (topic) => topic === f;
  const levels = f.split("/");
  const wildFirst = levels[0] === "+" || levels[0] === "#";
  return (topic) => {
    if (wildFirst && topic.startsWith("$")) return false;
    const tl = topic.split("/");
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i];
      if (level === "#") return true;
      if (i >= tl.length) return false;
      if (level !== "+" && level !== tl[i]) return false;
    }
    return levels.length === tl.length;
  };
}

/**
 * MQTT 5 4.8.2: a share name is at least one character and holds no `/`, `+` or `#`. A `/` moved
 * the rest of the name into the topic filter, so the broker granted a subscription to another
 * topic and nothing arrived; `""` subscribed without sharing; `+` and `#` came back from mqtt.js
 * as an invalid topic (`PublishRejected`), not as the option the caller got wrong.
 */
function checkGroup(group: string | undefined): void {
  if (group === undefined) return;
  if (typeof group === "string" && group.length > 0 && !/[/+#]/.test(group)) return;
  throw new PosthornErrorClass(
    "NotSupported",
    `group must be a non-empty share name without "/", "+" or "#" (MQTT 5 4.8.2), got ${JSON.stringify(group)}`,
    { attribute: "group" },
  );
}

/** The longest UTF-8 string an MQTT packet can carry (MQTT 5 1.5.4), in bytes. */
const MAX_MQTT_STRING_BYTES = 65_535;

/**
 * The MQTT 5 properties of a dead-letter copy: the original Content Type and user properties
 * unchanged, plus the original topic and the reason under core's dead-letter names. The MQTT
 * decoder skips exactly those two names in binary mode, so the copy still decodes to the same
 * event (an attribute name is lower-case letters and digits, so they can never be one).
 */
function deadLetterProperties(
  props: PacketLike["properties"],
  topic: string,
  reason: string | undefined,
): NonNullable<IClientPublishOptions["properties"]> {
  // A null prototype: the names come from the wire, and `__proto__` must stay a name.
  const userProperties = Object.create(null) as Record<string, string | string[]>;
  const original = props?.userProperties;
  if (original !== undefined) {
    for (const name of Object.keys(original)) {
      const value = original[name];
      if (value !== undefined) userProperties[name] = value as string | string[];
    }
  }
  // A copy rejected again (by a dead-letter subscriber) describes its last rejection only.
  userProperties[DEAD_LETTER_ORIGINAL_TOPIC] = topic;
  if (reason === undefined) delete userProperties[DEAD_LETTER_REASON];
  else userProperties[DEAD_LETTER_REASON] = mqttString(reason);
  return props?.contentType === undefined
    ? { userProperties }
    : { contentType: props.contentType, userProperties };
}

/**
 * `text` as a string an MQTT packet may carry: brokers close the connection on control
 * characters, noncharacters and lone surrogates (MQTT 5 1.5.4), which error messages often hold
 * (line breaks), so each becomes U+FFFD; and it is cut, at a character boundary, to 65,535
 * UTF-8 bytes.
 */
function mqttString(text: string): string {
  if (isValidString(text) && utf8Length(text) <= MAX_MQTT_STRING_BYTES) return text;
  let out = "";
  let bytes = 0;
  for (const ch of text) {
    const safe = isValidString(ch) ? ch : "\uFFFD";
    const cp = safe.codePointAt(0) as number;
    const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + size > MAX_MQTT_STRING_BYTES) break;
    bytes += size;
    out += safe;
  }
  return out;
}

/**
 * Passed to mqtt.js's handler callback for a QoS 1/2 message: mqtt.js then sends no
 * acknowledgement and goes on to the next packet; the subscriber sends it on settlement.
 */
const WITHHELD = new Error("posthorn: acknowledgement withheld");

/**
 * Subscribes an mqtt.js client the caller made to a topic filter and yields every message as a
 * {@link Delivery}: CloudEvents (binary or structured, any registered format) as `event`,
 * messages that claim to be CloudEvents but do not decode with `error`, and plain MQTT messages
 * with only `message`.
 *
 * Settlement (see docs/bindings/mqtt.md):
 * - QoS 0: nothing to acknowledge; `accept()` is a no-op and `release()` is `NotSupported`.
 * - QoS 1 and 2: the PUBACK (QoS 2: the PUBREC, which answers the PUBLISH; mqtt.js then
 *   answers the broker's PUBREL) waits for `accept()`. mqtt.js handles incoming packets one after
 *   another; the subscriber tells it to skip the acknowledgement and sends it on settlement, so
 *   mqtt.js goes on reading: several deliveries can be in hand (up to `maxInFlight`) and settled
 *   in any order, and the acknowledgements go out in arrival order.
 * - `release()` withholds the acknowledgement and reconnects the client, so the broker resends
 *   the message (MQTT redelivers only on session resumption). It needs a persistent session
 *   (`clean: false`, and at MQTT 5 a `sessionExpiryInterval` above 0) and automatic reconnects;
 *   otherwise `capabilities.release` is `none` and it is `NotSupported`.
 * - `reject(reason)` publishes the message unchanged to `deadLetterTopic`, and acknowledges it
 *   once the broker has the copy (at `deadLetterQos`); without a dead-letter topic it is
 *   `NotSupported`. A copy that fails (the broker refuses it, the client is ended) rejects with
 *   `SettlementFailed`, its error as `cause`: the message is not acknowledged and comes again as
 *   after `release()` (retryable) when the session allows that, else it is acknowledged all the
 *   same (not retryable: MQTT cannot bring it back); at QoS 0 it is not retryable. On a client
 *   closed for good (ended, or its connection closed with `reconnectPeriod: 0`) the copy is
 *   refused at once (`Closed`, or `ConnectionFailed` not retryable, as `cause`). A copy whose
 *   acknowledgement mqtt.js cannot read (held at twice `maxPending`, nothing pulled) ends the
 *   wait with `Timeout` as `cause`, not retryable: the copy was sent, and the message is settled
 *   once its answer is read (acknowledged, or, refused, as for a failed copy); it is not sent
 *   again meanwhile. At MQTT 5 the copy also carries the
 *   user properties `posthorn-original-topic` and, when given, `posthorn-dead-letter-reason`
 *   (core's `DEAD_LETTER_ORIGINAL_TOPIC` and `DEAD_LETTER_REASON`), which the decoder skips, so
 *   the copy decodes to the same event; MQTT 3.1.1 has no properties to carry them.
 * - `close()`, and leaving a `for await` loop over the subscriber, which closes it, withhold the
 *   acknowledgement of what is unsettled after `drainTimeoutMs`; settling it later is
 *   `SettlementFailed`. While the session persists, what the broker resends for the closed
 *   filter goes to an open subscriber on this client whose filter matches, or stays
 *   unacknowledged (never acknowledged by mqtt.js's own handler); until then it keeps part of
 *   the broker's in-flight window for this client taken, which can starve its other subscribers.
 *
 * On a new session (a CONNACK without Session Present) the subscriber subscribes again when
 * mqtt.js does not (mqtt.js does on its own reconnects with a `reconnectPeriod` above 0 and
 * `resubscribe` on; not after `client.reconnect()` on a client with `reconnectPeriod: 0`); a
 * refusal or failure of that SUBSCRIBE ends the iteration with the error, as does the broker's
 * refusal of the SUBSCRIBE mqtt.js sends again itself (`PublishRejected`, the SUBACK's reason code
 * as `protocolCode`).
 *
 * On a resumed persistent session the broker resends what was not acknowledged right after
 * CONNACK, and mqtt.js acknowledges what no subscriber takes yet: make the client with mqtt.js's
 * `manualConnect: true`, make its subscribers, then call `client.connect()`.
 *
 * @param client - an mqtt.js client: connected, connecting, or made with `manualConnect: true`
 *   and not connected yet (the way that loses nothing a resumed session resends). Several
 *   subscribers may share it: at MQTT 5 each subscribes with its own Subscription Identifier
 *   (when the server's CONNACK says it takes them: a subscriber made before the CONNACK sends its
 *   SUBSCRIBE once it is in) and gets the copies sent for it; at 3.1.1 a message matching two of their filters reaches only
 *   the subscriber made first
 * @param options - filter, QoS, formats, dead-letter topic, limits
 * @returns the subscriber, once the broker granted the subscription (or, on a resumed session,
 *   once the broker resent a message for it: a refusal arriving later then ends iteration); on a
 *   client not connected yet (`manualConnect`), at once, with `ready` resolving at the SUBACK or
 *   the first resent message, and rejecting (iteration failing with the same error) when the
 *   subscription is refused or the first connection attempt fails (`Closed` when the client is
 *   ended before it connected)
 * @throws {@link PosthornError} `PublishRejected` when the broker refuses the subscription, with
 *   the SUBACK's reason code as `protocolCode` (e.g. 0x87 Not authorized at MQTT 5, 0x80 at 3.1.1;
 *   retryable only for 0x97 Quota exceeded); `ConnectionFailed` when the connection fails first,
 *   or, not retryable, at once on a client whose connection closed and that does not reconnect by
 *   itself (`reconnectPeriod: 0`: mqtt.js would never send the SUBSCRIBE); `Closed` at once on an
 *   ended client (a `manualConnect` one ended before it connected included);
 *   `NotSupported`, before subscribing, for a `drainTimeoutMs` that is not a number of 0 or more,
 *   a `maxPending` that is not a whole number of 1 or more, or a `maxPayloadBytes`,
 *   `maxUserProperties` or `json.maxDepth` that is not a whole number of 0 or more, a `qos` or
 *   `deadLetterQos` other than 0, 1 or 2, a `group` that is not a share name (empty, or with
 *   `/`, `+` or `#`), or a `deadLetterTopic` that is not a topic name (empty, a wildcard, a
 *   control character, over 65,535 UTF-8 bytes)
 * @example
 * ```ts
 * const client = mqtt.connect(url, { protocolVersion: 5, clean: false, clientId: "billing-1",
 *   properties: { sessionExpiryInterval: 3600 }, manualConnect: true });
 * const sub = await mqttSubscriber(client, { topic: "orders", group: "billing", formats: [json] });
 * client.connect();
 * for await (const delivery of sub) {
 *   if (delivery.event) await handle(delivery.event);
 *   await delivery.accept();
 * }
 * ```
 */
export async function mqttSubscriber<T = unknown>(
  client: MqttClient,
  options: MqttSubscriberOptions,
): Promise<MqttSubscriber<T>> {
  checkTimeOption("drainTimeoutMs", options.drainTimeoutMs);
  checkCountOption("maxPending", options.maxPending);
  checkCountOption("maxInFlight", options.maxInFlight);
  checkCountOption("maxPayloadBytes", options.maxPayloadBytes, 0);
  checkCountOption("maxUserProperties", options.maxUserProperties, 0);
  checkCountOption("json.maxDepth", options.json?.maxDepth, 0);
  // mqtt.js subscribed with a QoS of 3 or 1.5 as given, and would fail a dead-letter publish at
  // such a QoS only when reject() is called.
  checkChoiceOption("qos", options.qos, MQTT_QOS_LEVELS);
  checkChoiceOption("deadLetterQos", options.deadLetterQos, MQTT_QOS_LEVELS);
  checkGroup(options.group);
  // A topic no PUBLISH may carry: every reject() would have hung and made the client reconnect
  // in a loop (the publisher's topic is checked the same way).
  if (options.deadLetterTopic !== undefined) {
    checkTopicName(options.deadLetterTopic, "deadLetterTopic");
  }
  checkClientInternals(client);
  // mqtt.js queues the SUBSCRIBE of a client closed for good and never sends it: awaited, this
  // never returned.
  const gone = closedForGoodError(client, `subscribe to ${options.topic}`);
  if (gone !== undefined) throw gone;
  // Nor does it ever send that of a manualConnect client ended before it connected.
  if (endedBeforeConnecting(client)) {
    throw new PosthornErrorClass(
      "Closed",
      `subscribe to ${options.topic}: the client was ended before it connected (end() of a manualConnect client whose connect() was never called)`,
    );
  }
  const protocolVersion = clientProtocolVersion(client);
  const filter = options.group ? `$share/${options.group}/${options.topic}` : options.topic;
  const qos = options.qos ?? 1;
  const opts = client.options;
  // The broker keeps the session (and resends what was not acknowledged to whoever resumes it)...
  const sessionPersists =
    opts.clean === false &&
    (protocolVersion !== 5 || (opts.properties?.sessionExpiryInterval ?? 0) > 0);
  // ...and release() can use that only when this client reconnects by itself.
  const persistent = sessionPersists && opts.reconnectPeriod !== 0;
  const capabilities: SettlementCapabilities = Object.freeze({
    release: qos > 0 && persistent ? "emulated" : "none",
    releaseDelay: false,
    reject: options.deadLetterTopic === undefined ? "none" : "dead-letter-topic",
    inProgress: false,
    deliveryCount: "none",
  });
  const qos0Capabilities: SettlementCapabilities = Object.freeze({
    ...capabilities,
    release: "none",
  });
  // What the NotSupported settlements say: why, and what would make them work.
  const noDeadLetter =
    "this mqttSubscriber has no deadLetterTopic to publish rejected messages to: give it one";
  const unsupported: UnsupportedSettlements = Object.freeze({
    release:
      qos === 0
        ? "the subscription is QoS 0, which MQTT never redelivers: subscribe at qos 1 or 2"
        : "MQTT redelivers only to a resumed session: release() needs clean: false, at MQTT 5 a sessionExpiryInterval above 0, and a reconnectPeriod above 0 on the client",
    releaseDelay: "MQTT has no delayed redelivery",
    reject: noDeadLetter,
    inProgress: "MQTT has no acknowledgement wait to extend",
  });
  const qos0Unsupported: UnsupportedSettlements = Object.freeze({
    ...unsupported,
    release: "a QoS 0 message is never redelivered: publish and subscribe at qos 1 or 2",
  });
  const decodeOptions = {
    formats: options.formats,
    protocolVersion,
    ...(options.registry === undefined ? {} : { registry: options.registry }),
    ...(options.maxPayloadBytes === undefined ? {} : { maxPayloadBytes: options.maxPayloadBytes }),
    ...(options.maxUserProperties === undefined
      ? {}
      : { maxUserProperties: options.maxUserProperties }),
    ...(options.json === undefined ? {} : { json: options.json }),
  };

  const maxPending = options.maxPending ?? DEFAULT_MAX_PENDING;
  const maxInFlight =
    options.maxInFlight ??
    (protocolVersion === 5 ? opts.properties?.receiveMaximum : undefined) ??
    DEFAULT_BROKER_WINDOW;
  const resumeAt = maxPending >> 1;
  const queue = new AsyncQueue<Delivery<T>>();
  const dispatcher = dispatcherFor(client);
  // mqtt.js's callback for the message that filled the queue: held, mqtt.js processes no further
  // packet on this connection and stops reading its socket until the queue is pulled down.
  let paused: (() => void) | undefined;
  const resume = () => {
    const go = paused;
    paused = undefined;
    dispatcher.paused.delete(resume);
    go?.();
  };
  // Deliveries not yet settled, each with the acknowledgement it owes.
  const held = new SlotSet<Held<T>>();
  // Redeliveries this subscriber caused with release(), by packet identifier.
  const released = new Map<number, number>();
  let closing = false;
  let arrived: (() => void) | undefined;
  // What close() waits on for the deliveries in hand.
  const drain = new Drain();

  // Run when the connection is lost, and at once when release() drops it (not at its 'close'
  // event, up to a second later: copies pulled in between were processed only for their
  // settlement to fail, then came again).
  const onLost = () => {
    // Acknowledgements of the lost connection can never be sent; with a persistent session the
    // broker resends those messages, so drop the copies not yet handed out (without one, nothing
    // comes again: they stay, to be handed out).
    if (sessionPersists) {
      const inHand = new Set<Delivery<T>>();
      for (const h of held) inHand.add(h.delivery);
      const keep = queue.drain().filter((d) => !inHand.has(d));
      for (const d of keep) queue.push(d);
    }
    held.clear();
    // A held callback belongs to the lost connection's packet loop; let it finish.
    resume();
    drain.wake();
  };
  dispatcher.onLost.add(onLost);

  const forget = (entry: Held<T>) => {
    held.delete(entry);
    drain.wake();
  };

  const receive = (packet: PacketLike, callback: (err?: Error) => void) => {
    if (closing) {
      // Not ours to process any more: leave it unacknowledged for the session to resend.
      callback(packet.qos > 0 ? WITHHELD : undefined);
      return;
    }
    if (packet.qos > 0 && dispatcher.owed.length >= maxInFlight && dispatcher.copies === 0) {
      // Past the window (Mosquitto 2.0.11 sends past its own once acknowledgements flow): not
      // handed out, and mqtt.js reads nothing more, until an acknowledgement goes out. A broker
      // whose window is no larger never sends one, so a full window alone stops nothing
      // (keepalive goes on). Dropped with the connection, it is resent to a persistent session.
      dispatcher.park({
        limit: maxInFlight,
        route,
        admit: () => receive(packet, callback),
        drop: () => callback(WITHHELD),
      });
      return;
    }
    const payload =
      typeof packet.payload === "string"
        ? new TextEncoder().encode(packet.payload)
        : packet.payload;
    const props = packet.properties;
    // Both objects are built member by member: spreads after other members take V8's slow
    // path, which cost more than the rest of this function.
    const mqttMessage: { -readonly [K in keyof MqttMessage]: MqttMessage[K] } = { payload };
    if (props?.contentType !== undefined) mqttMessage.contentType = props.contentType;
    if (props?.userProperties !== undefined) mqttMessage.userProperties = props.userProperties;
    const messageId = packet.messageId;
    const topic = typeof packet.topic === "string" ? packet.topic : String(packet.topic);
    const metadata: MqttMetadata = {
      topic,
      qos: packet.qos,
      retain: packet.retain === true,
      dup: packet.dup === true,
    };
    if (messageId !== undefined) metadata.messageId = messageId;
    let event: CloudEvent<T> | undefined;
    // The limits protect the process, so they hold for every message, CloudEvent or not: a plain
    // message over one was handed out as if it were within them (a 64 KiB payload past
    // maxPayloadBytes 1,024, 300 user properties past maxUserProperties 10, no error beside it).
    let error: PosthornError | undefined = mqttLimitError(mqttMessage, decodeOptions);
    if (error === undefined && classifyMqttMessage(mqttMessage, decodeOptions) !== undefined) {
      try {
        event = fromMqttMessage(mqttMessage, decodeOptions) as CloudEvent<T>;
      } catch (err) {
        error = isPosthornError(err)
          ? err
          : new PosthornErrorClass("MalformedInput", String(err), { cause: err });
      }
    }
    const priorReleases =
      packet.dup === true && messageId !== undefined ? released.get(messageId) : undefined;
    if (priorReleases !== undefined && messageId !== undefined) released.delete(messageId);
    const deliveryCount = 1 + (priorReleases ?? 0);
    const message = toPlainMessage(mqttMessage, metadata);

    /**
     * Publishes the dead-letter copy. When its wait ends before the broker's answer is read (the
     * `Timeout` of goOn: the copy was sent), the promise rejects with that error, `wait.gaveUp`
     * is set, and `late` is called with the answer once mqtt.js reads it (an error, or nothing).
     */
    const deadLetter = (
      reason: string | undefined,
      wait: { gaveUp: boolean; late?: (err?: PosthornError) => void } = { gaveUp: false },
    ): Promise<void> => {
      const topicOut = options.deadLetterTopic as string;
      const publishOptions: IClientPublishOptions = { qos: options.deadLetterQos ?? 1 };
      // MQTT 3.1.1 has no properties: the copy is the payload alone, and the reason is lost.
      if (protocolVersion === 5) {
        publishOptions.properties = deadLetterProperties(props, topic, reason);
      }
      return new Promise<void>((resolve, reject) => {
        let ended = false;
        // Until the broker acknowledges the copy mqtt.js must read on: its PUBACK may be behind
        // a packet parked past the window or held past maxPending (a QoS 0 subscriber with
        // maxPending deliveries not pulled: await reject() never returned). Up to a bound (see
        // goOn), where the wait ends with `Timeout`.
        const copied =
          publishOptions.qos === 0
            ? noop
            : dispatcher.copyStarted((err) => {
                if (ended) return;
                ended = true;
                wait.gaveUp = true;
                reject(err);
              });
        // Through the client's publish quota, as its publishers send: a burst of rejections
        // must not pass the server's Receive Maximum (Mosquitto answers QoS 2 ones past it
        // with Quota exceeded).
        publishOnClient(client, topicOut, asBuffer(payload), publishOptions, (err) => {
          copied();
          if (ended) {
            if (wait.gaveUp)
              wait.late?.(err ? fromMqttError(err, `publish to ${topicOut}`) : undefined);
            return;
          }
          ended = true;
          if (err) reject(fromMqttError(err, `publish to ${topicOut}`));
          else resolve();
        });
      });
    };

    // QoS 1/2: mqtt.js is told not to acknowledge (the acknowledgement is owed until settled),
    // so it goes on reading while deliveries are in hand, and they can be settled in any order.
    // Called last, once this message is queued and counted: called from outside mqtt.js's own
    // packet loop (a packet admitted by accept(), see above), the callback makes mqtt.js process
    // the next packet at once, which overtook this one (ids 30 and 31 swapped).
    const goOn = () => {
      const handled = packet.qos === 0 ? callback : () => callback(WITHHELD);
      // While a dead-letter copy waits its PUBACK may be behind (see deadLetter): mqtt.js reads
      // on, to twice maxPending. It read on without a limit, every message up to the PUBACK
      // (2,000 of 2,000 behind it with maxPending 4), and with a broker that kept sending, for
      // as long as the application did not pull. Held there, it reads the PUBACK only once
      // deliveries are pulled, which a loop awaiting reject() never does: if none are by the
      // next turn of the event loop, the copies' waits end.
      if (queue.size >= maxPending && (dispatcher.copies === 0 || queue.size >= 2 * maxPending)) {
        if (dispatcher.copies > 0) {
          setTimeout(() => {
            // Copies whose wait already ended are counted until their answer, and not failed again.
            if (paused !== handled || dispatcher.copies === 0) return;
            dispatcher.failCopies(
              new PosthornErrorClass(
                "Timeout",
                `the copy was sent, but the broker's acknowledgement of it may be behind messages mqtt.js does not read while a subscriber of this client holds ${queue.size} deliveries not pulled (twice its maxPending of ${maxPending} or more): whether the broker took it is not known. Pull deliveries while reject() waits, raise maxPending, or use deadLetterQos 0`,
              ),
            );
          }, 0);
        }
        paused = handled;
        dispatcher.paused.add(resume);
        queue.onDrainedTo(resumeAt, resume);
      } else {
        handled();
      }
    };
    if (packet.qos === 0) {
      queue.push(
        createDelivery<T>({
          message,
          event,
          error,
          deliveryCount,
          capabilities: qos0Capabilities,
          unsupported: qos0Unsupported,
          accept: () => undefined,
          // As a QoS 1/2 delivery's: SettlementFailed with the copy's error as cause; not
          // retryable, since nothing ever brings a QoS 0 message again.
          reject: (reason) => {
            const wait = { gaveUp: false };
            return deadLetter(reason, wait).catch((err: unknown) => {
              const why = isPosthornError(err) ? err.message : String(err);
              throw new PosthornErrorClass(
                "SettlementFailed",
                wait.gaveUp
                  ? `the dead-letter copy was not confirmed in time (${why}); it usually arrives, and if it did not, this QoS 0 message is lost: it is never redelivered`
                  : `the dead-letter copy failed (${why}); a QoS 0 message is never redelivered, so it is lost`,
                { cause: err, retryable: false },
              );
            });
          },
        }),
      );
      goOn();
      return;
    }

    const owed: OwedAck = { packet, send: undefined, epoch: dispatcher.epoch };
    // Its delivery is set once made (the delivery's settlement functions need the entry).
    const entry: Held<T> = { slot: -1, owed, delivery: undefined as unknown as Delivery<T> };
    // The connection it arrived on was lost or dropped (release()), maybe before 'close'.
    const lost = () => owed.epoch !== dispatcher.epoch;
    // Why the acknowledgement is no longer held: the application closed the subscriber (or left
    // its loop), or the connection dropped. Either way no acknowledgement was sent.
    const stale = () =>
      new PosthornErrorClass(
        "SettlementFailed",
        closing && !lost()
          ? sessionPersists
            ? "the subscriber was closed and released this delivery without acknowledging it; the broker redelivers it when the session resumes"
            : "the subscriber was closed and released this delivery without acknowledging it; without a persistent session the broker does not redeliver it"
          : sessionPersists
            ? "the connection was lost before settlement; the broker redelivers the message"
            : "the connection was lost before settlement; without a persistent session the broker dropped the message",
      );
    dispatcher.owed.push(owed);
    // MQTT 5 4.6: acknowledgements go out in the order the messages arrived, so one settled
    // ahead of an earlier one waits for it.
    const settle = (send: boolean) => {
      owed.send = send;
      dispatcher.flush();
    };
    const ack = () => {
      if (!held.has(entry) || lost()) {
        // Lost with a clean session: the broker already forgot it, so there is nothing to ack.
        if (!sessionPersists && lost()) return;
        throw stale();
      }
      forget(entry);
      settle(true);
    };
    // The dead-letter copy failed: the message is not acknowledged, and comes again as after
    // release() when the session allows; otherwise nothing could bring it back, and it is
    // acknowledged (as before) so that the acknowledgements behind it can go.
    const copyFailed = (err: unknown): PosthornError => {
      const why = isPosthornError(err) ? err.message : String(err);
      if (!held.has(entry) || lost()) {
        return new PosthornErrorClass(
          "SettlementFailed",
          `the dead-letter copy failed (${why}) and ${stale().message}`,
          { cause: err, retryable: sessionPersists },
        );
      }
      forget(entry);
      if (!persistent) {
        settle(true);
        return new PosthornErrorClass(
          "SettlementFailed",
          `the dead-letter copy failed (${why}); the message was acknowledged all the same and is lost: without a persistent session that reconnects by itself MQTT cannot redeliver it`,
          { cause: err },
        );
      }
      settle(false);
      if (messageId !== undefined) released.set(messageId, deliveryCount);
      dispatcher.drop();
      return new PosthornErrorClass(
        "SettlementFailed",
        `the dead-letter copy failed (${why}); the message was not acknowledged and comes again, as after release()`,
        { cause: err, retryable: true },
      );
    };
    const delivery = createDelivery<T>({
      message,
      event,
      error,
      deliveryCount,
      capabilities,
      unsupported,
      accept: ack,
      release: () => {
        if (!held.has(entry) || lost()) throw stale();
        forget(entry);
        // Acknowledgements free to go in order (settled, with nothing unsettled before them) are
        // sent before the connection goes.
        settle(false);
        if (messageId !== undefined) released.set(messageId, deliveryCount);
        // MQTT resends unacknowledged messages only when a session resumes: drop the
        // connection (mqtt.js reconnects with the same session) instead of acknowledging.
        dispatcher.drop();
      },
      reject: async (reason) => {
        if (!held.has(entry) || lost()) throw stale();
        // Copy first, and acknowledge once the broker has it: acknowledged at once, a copy the
        // broker refused (0x87 Not authorized, a packet too large) lost the message.
        // Until the broker acknowledges the copy, packets past the window are handed out
        // rather than parked (see deadLetter): this delivery's own acknowledgement, which
        // would admit them, waits for the copy's PUBACK.
        const wait: { gaveUp: boolean; late?: (err?: PosthornError) => void } = { gaveUp: false };
        try {
          await deadLetter(reason, wait);
        } catch (err) {
          if (!wait.gaveUp || !held.has(entry) || lost()) throw copyFailed(err);
          // The copy was sent and its answer is behind what mqtt.js does not read: the message
          // stays unacknowledged until it is read (pulling deliveries lets mqtt.js read on), then
          // is settled as the copy's answer says. Dropping the connection at once, as for a
          // failed copy, had the broker send the message again while the copy had most likely
          // arrived: a loop awaiting reject() got it again at each reconnect (m-0 19 times in
          // 4 s, 20 copies on the dead-letter topic, no other message handed out).
          forget(entry);
          wait.late = (copyErr) => {
            if (lost()) return;
            if (copyErr === undefined || !persistent) {
              settle(true);
              return;
            }
            settle(false);
            if (messageId !== undefined) released.set(messageId, deliveryCount);
            dispatcher.drop();
          };
          const why = isPosthornError(err) ? err.message : String(err);
          throw new PosthornErrorClass(
            "SettlementFailed",
            `the dead-letter copy was not confirmed in time (${why}); the message is acknowledged once the broker's answer to the copy is read, which needs deliveries pulled, and ${
              persistent
                ? "comes again, as after release(), if the broker refused the copy"
                : "is acknowledged all the same if the broker refused the copy (without a persistent session that reconnects by itself MQTT cannot redeliver it)"
            }`,
            { cause: err, retryable: false },
          );
        }
        ack();
      },
    });
    entry.delivery = delivery;
    held.add(entry);
    queue.push(delivery);
    goOn();
    arrived?.();
  };

  // A client made with mqtt.js's manualConnect whose connect() the application has not called
  // yet: nothing can arrive before the route below is in place, so a resumed session's resent
  // messages all reach a subscriber (made on a connected client, mqtt.js's own handler had
  // acknowledged them unseen: 10 of 10 held by a restarted worker lost). The SUBACK cannot come
  // before the application connects, so the subscriber is handed out now and `ready` waits.
  const unopened = notConnectedYet(client);
  const route: Route = { id: undefined, matches: topicMatcher(filter), receive };
  dispatcher.routes.add(route);

  // Whether the server takes Subscription Identifiers is in its CONNACK (MQTT 5 3.2.2.3.12), and
  // one that does not closes the connection on a SUBSCRIBE carrying one (a Protocol Error, MQTT 5
  // 3.8.2.1.2). mqtt.js queues a SUBSCRIBE made before the CONNACK and sends it as it was made, so
  // the SUBSCRIBE waits for the CONNACK here, and the identifier is chosen then.
  const connack = (): Promise<void> => {
    if (client.connected) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        client.off("connect", onConnect);
        client.off("close", onClose);
        client.off("end", onEnd);
        dispatcher.endedUnopened.delete(onEndedUnopened);
        if (err === undefined) resolve();
        else reject(err);
      };
      const onConnect = () => done();
      // As mqtt.js fails a SUBSCRIBE it queued: the attempt ended without a CONNACK.
      const onClose = () => done(new Error("Connection closed before the broker's CONNACK"));
      const onEnd = () => done(new Error("client disconnected before the broker's CONNACK"));
      // ready stayed pending for ever: mqtt.js's end() threw, and emitted nothing.
      const onEndedUnopened = () =>
        done(
          new PosthornErrorClass(
            "Closed",
            `subscribe to ${filter}: the client was ended before it connected (end() of a manualConnect client whose connect() was never called)`,
          ),
        );
      dispatcher.endedUnopened.add(onEndedUnopened);
      client.on("connect", onConnect);
      client.on("close", onClose);
      client.on("end", onEnd);
    });
  };
  const subscribe = async () => {
    await connack();
    // Closed while it waited: nothing to subscribe to.
    if (closing) return;
    route.id ??= dispatcher.nextId();
    const grants = await client.subscribeAsync(
      filter,
      route.id === undefined ? { qos } : { qos, properties: { subscriptionIdentifier: route.id } },
    );
    const refused = grants.find((g) => g.qos === 128 || (g.qos as number) >= 0x80);
    if (refused) {
      throw new PosthornErrorClass(
        "PublishRejected",
        `the broker refused the subscription to ${filter}`,
        {
          protocolCode: refused.qos,
        },
      );
    }
  };
  const subscribed = subscribe();
  // A new session (CONNACK without Session Present: a clean session, or one the broker no longer
  // had) has no subscriptions. mqtt.js subscribes again on its own reconnects, but only to what it
  // recorded, which it does only with a reconnectPeriod above 0 and `resubscribe` on: after
  // `client.reconnect()` on a client with reconnectPeriod 0 the subscriber received nothing
  // more, and nothing said so. It subscribes again itself then; a refusal or failure ends its
  // iteration with the error.
  const onConnack = (connack?: { sessionPresent?: boolean }) => {
    if (closing || connack?.sessionPresent === true) return;
    const recorded = (client as unknown as { _resubscribeTopics?: Record<string, unknown> })
      ._resubscribeTopics;
    if (recorded !== undefined && Object.hasOwn(recorded, filter)) return;
    subscribe().catch((err: unknown) => {
      if (closing) return;
      ended(fromMqttError(err, `subscribe to ${filter}`));
    });
  };
  // mqtt.js's own resubscription after its reconnects: a refusal (an ACL changed meanwhile) left
  // the subscriber receiving nothing, and nothing said so.
  const onRefusedAgain = (refusedFilter: string, code: number, err: Error) => {
    if (closing || refusedFilter !== filter) return;
    ended(
      new PosthornErrorClass(
        "PublishRejected",
        `subscribe to ${filter}: the broker refused (reason ${code}) the subscription mqtt.js made again after reconnecting: ${err.message}`,
        // As the first SUBSCRIBE's refusal (fromMqttError): quota exceeded, server busy.
        { protocolCode: code, retryable: code === 0x97 || code === 0x89, cause: err },
      ),
    );
  };
  // The subscription is gone: iteration ends with `err`, and nothing subscribes again.
  const ended = (err: PosthornError) => {
    dispatcher.routes.delete(route);
    dispatcher.refusedAgain.delete(onRefusedAgain);
    client.off("connect", onConnack);
    queue.fail(err);
  };
  // A resumed session resends its unacknowledged messages right after CONNACK, possibly before
  // the SUBACK, which then waits behind them if they fill maxPending (mqtt.js handles packets one
  // at a time). A delivery on this filter shows the broker has the subscription, so the
  // subscriber is handed out then, and a refusal arriving later ends its iteration.
  const early = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  const established = Promise.race([subscribed, early]).then(
    () => {
      arrived = undefined;
    },
    (err: unknown) => {
      arrived = undefined;
      throw fromMqttError(err, `subscribe to ${filter}`);
    },
  );
  let ready: Promise<void> = Promise.resolve();
  if (unopened) {
    // Rejected (refused, or the first connection attempt failed), it fails iteration below too:
    // not an unhandled rejection when the application only iterates.
    established.catch(noop);
    ready = established;
  } else {
    try {
      await established;
    } catch (err) {
      dispatcher.routes.delete(route);
      dispatcher.onLost.delete(onLost);
      throw err;
    }
  }
  // An open subscriber on the filter takes what a closed one left to the session.
  dispatcher.closedFilters.delete(filter);
  subscribed.then(
    () => {
      // From the SUBACK on: the CONNACK before it (a manualConnect client's) is not a new session.
      if (closing) return;
      client.on("connect", onConnack);
      dispatcher.refusedAgain.add(onRefusedAgain);
    },
    (err: unknown) => {
      if (closing) return;
      dispatcher.routes.delete(route);
      queue.fail(fromMqttError(err, `subscribe to ${filter}`));
    },
  );

  let closed: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    closing = true;
    // What mqtt.js still has to process comes to receive(), which now leaves it unacknowledged.
    resume();
    dispatcher.unpark(route);
    // Deliveries not yet handed out are released: their acknowledgements are withheld.
    const queued = new Set(queue.drain());
    for (const h of held) {
      if (!queued.has(h.delivery)) continue;
      held.delete(h);
      h.owed.send = false;
    }
    dispatcher.flush();
    queue.end();
    if (held.size > 0) await drain.wait(options.drainTimeoutMs ?? 5000, () => held.size === 0);
    // Whatever is still in hand is released the same way: no acknowledgement is sent.
    for (const h of held) h.owed.send = false;
    held.clear();
    dispatcher.flush();
    dispatcher.onLost.delete(onLost);
    client.off("connect", onConnack);
    dispatcher.refusedAgain.delete(onRefusedAgain);
    // What the session resends for this filter waits for a later subscriber on it: never
    // acknowledged unseen by mqtt.js's handler.
    if (sessionPersists && qos > 0) dispatcher.closedFilters.set(filter, route.matches);
    try {
      if (client.connected) await client.unsubscribeAsync(filter);
      // Not connected yet: the UNSUBSCRIBE follows the queued SUBSCRIBE when the client connects
      // (waiting for its UNSUBACK would hold close() until the application calls connect()).
      else if (notConnectedYet(client)) client.unsubscribe(filter, noop);
    } catch {
      // The client is going away; the broker drops the subscription with the session.
    } finally {
      dispatcher.routes.delete(route);
    }
  };

  const closeOnce = (): Promise<void> => {
    closed ??= close();
    return closed;
  };
  return {
    filter,
    capabilities,
    // Handed out once the broker has the subscription (see above), so nothing to wait for;
    // made before the client connects, at the SUBACK (or the first delivery).
    ready,
    close: closeOnce,
    // Leaving a for-await loop closes the subscriber: a message held for an accept() that never
    // comes would stall every subscriber on this client.
    [Symbol.asyncIterator]: () => closeOnReturn(queue[Symbol.asyncIterator](), closeOnce),
  };
}
