import {
  type CloudEventLike,
  checkChoiceOption,
  checkCountOption,
  checkTimeOption,
  DEFAULT_CLOSE_TIMEOUT_MS,
  Drain,
  type EventFormat,
  isValidString,
  PosthornError,
  type Publisher,
  type PublishOptions,
  settleWithin,
  utf8Length,
} from "@posthorn/core";
import type { IClientPublishOptions, MqttClient } from "mqtt";
import { fromMqttError } from "./errors.js";
import type { MqttMessage, MqttProtocolVersion, ToMqttMessageOptions } from "./mqtt-message.js";
import { toMqttMessage } from "./to-message.js";

/** An MQTT Quality of Service level. */
export type MqttQos = 0 | 1 | 2;

/** The QoS levels MQTT has (MQTT 5 3.3.1.2, 3.1.1 3.3.1.2): any other is refused where given. */
export const MQTT_QOS_LEVELS: readonly MqttQos[] = Object.freeze([0, 1, 2]);

/** The longest UTF-8 string an MQTT packet can carry (MQTT 5 1.5.4, 3.1.1 1.5.3), in bytes. */
const MAX_TOPIC_BYTES = 65_535;

/**
 * @internal Refuses a topic name no PUBLISH may carry, with `NotSupported` naming `attribute`:
 * not a string, empty, a `+` or `#` wildcard (MQTT 5 4.7.1, 4.7.3), a control character,
 * noncharacter or lone surrogate (MQTT 5 1.5.4; U+0000 is forbidden outright), or over 65,535
 * UTF-8 bytes. Mosquitto 2.0.11 closes the connection on each of these (the empty topic excepted,
 * which it leaves unanswered), and mqtt.js resends a QoS 1/2 PUBLISH from its store after every
 * reconnect: the publish never settled, and the client reconnected about every
 * `reconnectPeriod` for as long as it lived, its subscribers' deliveries in hand lost each time.
 * A lone surrogate was sent as U+FFFD, to another topic.
 */
export function checkTopicName(topic: unknown, attribute: string): void {
  let why: string | undefined;
  if (typeof topic !== "string" || topic.length === 0) why = "a non-empty string";
  else if (topic.includes("+") || topic.includes("#")) {
    why = "a topic name without the wildcards + and # (MQTT 5 4.7.1)";
  } else if (!isValidString(topic)) {
    why = "free of control characters, noncharacters and lone surrogates (MQTT 5 1.5.4)";
  } else if (topic.length > MAX_TOPIC_BYTES / 3 && utf8Length(topic) > MAX_TOPIC_BYTES) {
    why = `at most ${MAX_TOPIC_BYTES} UTF-8 bytes`;
  }
  if (why === undefined) return;
  const shown = typeof topic === "string" && topic.length > 80 ? `${topic.slice(0, 80)}...` : topic;
  throw new PosthornError(
    "NotSupported",
    `${attribute} must be ${why}, got ${JSON.stringify(shown) ?? String(topic)}: nothing was published`,
    { attribute },
  );
}

/** Options for {@link mqttPublisher}. */
export interface MqttPublisherOptions {
  /**
   * The topic to publish to: a topic name, not a filter. Empty, a `+` or `#` wildcard, a control
   * character or over 65,535 UTF-8 bytes is refused with `NotSupported` (`attribute: "topic"`).
   */
  topic: string;
  /**
   * QoS of every publish: 0, 1 or 2 (anything else is refused with `NotSupported` when the
   * publisher is made). Default 1.
   */
  qos?: MqttQos;
  /** Content mode. Default `binary` at MQTT 5, `structured` at 3.1.1 (its only mode). */
  mode?: "binary" | "structured";
  /** The event format for structured mode (MQTT 3.1.1 needs the JSON format). */
  format?: EventFormat;
  /**
   * Set the MQTT retain flag. Default `false`. An event with an empty payload (binary mode
   * without data) cannot be retained: MQTT takes that as deleting the topic's retained message,
   * so `publish()` rejects it with `NotSupported`.
   */
  retain?: boolean;
  /**
   * Give up waiting for an acknowledgement after this long (`Timeout`). 0 fails every publish at
   * once with `Timeout` and nothing sent; `Infinity` is no limit. Default: wait as long as mqtt.js
   * does.
   */
  timeoutMs?: number;
  /**
   * How long `close()` waits for in-flight publishes before it rejects with `Timeout`. Default
   * {@link DEFAULT_CLOSE_TIMEOUT_MS}. While the broker is away mqtt.js keeps unacknowledged
   * publishes and resends them after it reconnects, which may be never; those publishes stay
   * pending (and settle if the client reconnects) after `close()` gave up.
   */
  closeTimeoutMs?: number;
  /**
   * Most of this publisher's messages mqtt.js may hold while the client is not connected: those
   * published while it is offline or reconnecting (its offline queue) and those sent before the
   * connection dropped and not yet acknowledged (its outgoing store), which it keeps in memory
   * without a limit of its own. Past it `publish()` fails at once while the client is not
   * connected (`PublishRejected`, retryable), with nothing handed to mqtt.js. 0 refuses every
   * publish while the client is not connected. Default {@link DEFAULT_MAX_QUEUED}.
   */
  maxQueued?: number;
}

export { DEFAULT_CLOSE_TIMEOUT_MS };

/** The default `maxQueued` of {@link mqttPublisher}: 10,000 messages, as the AMQP publisher's. */
export const DEFAULT_MAX_QUEUED = 10_000;

/** Per-call options of an MQTT publisher. */
export interface MqttPublishOptions extends PublishOptions {
  /** Another topic for this call, checked as the publisher's (`NotSupported`, nothing sent). */
  topic?: string;
  /** Another QoS for this call: 0, 1 or 2 (anything else rejects the call, nothing sent). */
  qos?: MqttQos;
  /** The retain flag for this call (an event with an empty payload cannot be retained, as above). */
  retain?: boolean;
}

/**
 * The protocol version an mqtt.js client speaks (mqtt.js defaults to 4, i.e. MQTT 3.1.1).
 *
 * @param client - the client; its `options.protocolVersion` is read
 * @returns 3 (MQTT 3.1), 4 (MQTT 3.1.1) or 5; any other value is taken as 4
 */
export function clientProtocolVersion(client: MqttClient): MqttProtocolVersion {
  const v = client.options.protocolVersion;
  return v === 5 || v === 3 ? v : 4;
}

/** @internal A zero-copy Buffer view where Buffer exists (mqtt.js expects one), the bytes otherwise. */
export function asBuffer(bytes: Uint8Array): Buffer {
  const B = (globalThis as { Buffer?: typeof Buffer }).Buffer;
  if (B === undefined || B.isBuffer(bytes)) return bytes as Buffer;
  return B.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** What the publishers of one client share. */
interface ClientState {
  /** Callbacks of the publishes mqtt.js has not called back yet. */
  readonly pending: Set<(err?: Error) => void>;
  /** The connection closed and the client does not reconnect by itself (`reconnectPeriod: 0`). */
  stranded: boolean;
  /** QoS 1/2 messages handed to mqtt.js and not yet called back (the send quota in use). */
  inFlight: number;
  /** QoS 1/2 sends waiting for the quota; each returns whether it took its slot. */
  readonly waiting: Array<() => boolean>;
  /** A pump is scheduled for the end of this turn. */
  pumpScheduled: boolean;
}

/**
 * The server's Receive Maximum (MQTT 5 3.2.2.3.3, from its CONNACK; 65,535 when it names none):
 * how many QoS 1/2 PUBLISHes the client may have unacknowledged (MQTT 5 4.9). mqtt.js keeps the
 * CONNACK's properties but does not count against it. MQTT 3.1.1 has no such limit.
 */
function sendQuota(client: MqttClient): number {
  if (client.options.protocolVersion !== 5) return Number.POSITIVE_INFINITY;
  const max = (client as unknown as { _serverProperties?: { receiveMaximum?: unknown } })
    ._serverProperties?.receiveMaximum;
  return typeof max === "number" && max > 0 ? max : 65_535;
}

/** Hands waiting QoS 1/2 sends to mqtt.js while the client's send quota allows. */
function pump(client: MqttClient, state: ClientState): void {
  const quota = sendQuota(client);
  while (state.waiting.length > 0 && state.inFlight < quota) {
    const next = state.waiting.shift() as () => boolean;
    state.inFlight++;
    if (!next()) state.inFlight--;
  }
}

/**
 * Pumps once the acknowledgements mqtt.js is handling now are all handled, not from inside its
 * callback of each: sending from there, one PUBLISH per PUBACK as mqtt.js reads them, measured
 * 6.1-6.6 k/s against 8.2-8.8 k/s this way (`bench/.build/probes/mqtt-publish.mjs`).
 */
function schedulePump(client: MqttClient, state: ClientState): void {
  if (state.pumpScheduled) return;
  state.pumpScheduled = true;
  queueMicrotask(() => {
    state.pumpScheduled = false;
    pump(client, state);
  });
}

const clientStates = new WeakMap<MqttClient, ClientState>();

/**
 * @internal Whether `client` is closed for good, as far as what is published on it goes: `ended`
 * when the application ended it (mqtt.js sets `disconnected`; it stays so until `reconnect()`),
 * `stranded` when its connection (or its first connection attempt) closed and it does not
 * reconnect by itself (`reconnectPeriod: 0`, its stream destroyed, nothing reconnecting), else
 * `undefined` (connected, connecting, reconnecting, or a `manualConnect` client not connected
 * yet). mqtt.js queues what is published or subscribed on such a client and never calls it back.
 */
export function closedForGood(client: MqttClient): "ended" | "stranded" | undefined {
  if ((client as { disconnected?: boolean }).disconnected === true) return "ended";
  if (client.connected || client.reconnecting || client.options.reconnectPeriod !== 0) {
    return undefined;
  }
  const stream = (client as { stream?: { destroyed?: boolean } }).stream;
  return stream?.destroyed === true ? "stranded" : undefined;
}

/**
 * The state of a client's publishers. mqtt.js never calls back a publish it still holds (offline
 * queue, unacknowledged QoS 1/2) when the client is ended (`end(true)`, or `end()` while it is
 * offline), nor while a client with `reconnectPeriod: 0` stays disconnected, so those are failed
 * here: on 'end' with `Closed`, on 'close' of such a client with `ConnectionFailed`. Three
 * listeners per client ('end', 'close', 'connect'), added with its first publisher or dead-letter
 * copy; a client already closed for good then (the 'close' event passed before anything
 * listened) starts stranded.
 */
function stateOf(client: MqttClient): ClientState {
  const known = clientStates.get(client);
  if (known !== undefined) return known;
  const state: ClientState = {
    pending: new Set(),
    stranded: closedForGood(client) === "stranded",
    inFlight: 0,
    waiting: [],
    pumpScheduled: false,
  };
  clientStates.set(client, state);
  const failAll = (err: Error) => {
    if (state.pending.size === 0) return;
    const abandoned = [...state.pending];
    state.pending.clear();
    // Every waiting send belongs to one of these: failed, it takes no slot.
    state.waiting.length = 0;
    for (const done of abandoned) done(err);
  };
  client.on("end", () => failAll(ENDED));
  client.on("close", () => {
    if (client.options.reconnectPeriod !== 0) return;
    state.stranded = true;
    failAll(STRANDED);
  });
  client.on("connect", () => {
    state.stranded = false;
    // A new CONNACK may allow more.
    pump(client, state);
  });
  if (client.options.protocolVersion === 5) watchUnreadableAcks(client);
  return state;
}

/** The stream mqtt.js pipes a connection's bytes into, to its packet parser. */
interface ParserInput {
  _write(chunk: unknown, encoding: unknown, done: () => void): void;
  write(chunk: unknown): boolean;
}

/**
 * @internal What a publish fails with when the broker answered it with a reason code mqtt.js
 * cannot read (`PayloadTooLarge`, see {@link fromMqttError}).
 */
export const UNREADABLE_ACK =
  "the broker refused the message with a reason code mqtt.js cannot read (one MQTT 5 does not list for a PUBACK or PUBREC): Mosquitto answers so, with 0x95 Packet too large, a message over its message_size_limit. The message was not delivered; the connection was dropped, since mqtt.js reads nothing more on it";

/**
 * mqtt-packet 9 refuses a PUBACK or PUBREC whose reason code MQTT 5 does not list for it, and
 * Mosquitto 2.0.11 answers a PUBLISH over its `message_size_limit` with one (0x95 Packet too
 * large). mqtt.js then emits 'error' ("Invalid puback reason code"), never calls the publish back,
 * and its parser, left mid-packet, reads nothing more on the connection: every later
 * acknowledgement was lost, the keepalive timed out, and mqtt.js resent the message on the next
 * connection, to the same answer, for ever. The broker answers QoS 1 PUBLISHes in the order it
 * received them, and QoS 2 ones likewise (MQTT 5 4.6), so the refused one is the oldest of its
 * QoS unanswered once mqtt.js has handled the packets read before the bad one: it is failed
 * then (removed from mqtt.js's store, so never resent), and the connection dropped.
 */
function watchUnreadableAcks(client: MqttClient): void {
  // QoS 1 and QoS 2 PUBLISHes written on the current connection and not yet answered, by the
  // acknowledgement that answers them, in the order they were sent.
  const unanswered = { puback: new Set<number>(), pubrec: new Set<number>() };
  let connection = 0;
  client.on("packetsend", (packet: { cmd: string; qos?: number; messageId?: number }) => {
    if (packet.cmd !== "publish" || !packet.qos || packet.messageId === undefined) return;
    (packet.qos === 1 ? unanswered.puback : unanswered.pubrec).add(packet.messageId);
  });
  client.on("packetreceive", (packet: { cmd: string; messageId?: number }) => {
    if ((packet.cmd === "puback" || packet.cmd === "pubrec") && packet.messageId !== undefined) {
      unanswered[packet.cmd].delete(packet.messageId);
    }
  });
  client.on("close", () => {
    connection++;
    unanswered.puback.clear();
    unanswered.pubrec.clear();
  });
  client.on("error", (err: Error) => {
    const bad = /^Invalid (puback|pubrec) reason code$/.exec(err?.message ?? "");
    if (bad === null) {
      // Alone, this listener must not swallow what mqtt.js emits: Node throws an unheard 'error'.
      if (client.listenerCount("error") === 1) throw err;
      return;
    }
    const of = unanswered[bad[1] as "puback" | "pubrec"];
    const at = connection;
    const stream = client.stream as unknown as {
      destroy(): void;
      _readableState?: { pipes?: unknown[] };
    };
    const refuse = () => {
      // The connection closed meanwhile: mqtt.js resends on the next one, and the broker's
      // answer comes again.
      if (connection !== at) return;
      const messageId = of.values().next().value;
      const pending = messageId === undefined ? undefined : client.outgoing[messageId];
      if (messageId !== undefined && pending !== undefined) {
        of.delete(messageId);
        const cb = pending.cb;
        pending.cb = (_err, packet) => cb(new Error(UNREADABLE_ACK), packet);
        client.removeOutgoingMessage(messageId);
      }
      stream.destroy();
    };
    // The error comes while mqtt.js parses, before it has handled the packets parsed ahead of the
    // bad one (acknowledgements of older messages among them): a marker written behind them
    // reaches the parser's input once they are handled. What the connection still brings is
    // not parsed (the parser would misread it).
    const input = stream._readableState?.pipes?.[0] as ParserInput | undefined;
    if (typeof input?._write !== "function" || typeof input.write !== "function") {
      refuse();
      return;
    }
    const marker = asBuffer(new Uint8Array(0));
    input._write = (chunk, _encoding, done) => {
      if (chunk === marker) refuse();
      done();
    };
    input.write(marker);
  });
}

/**
 * Hands one message to mqtt.js the way every publish on the client goes out (the publishers' and
 * a subscriber's dead-letter copies alike): a QoS 1/2 one waits while the server's Receive Maximum
 * of them is unacknowledged, and one mqtt.js would hold forever (the client ended, or closed
 * without reconnecting) is failed. `done` is called once, with mqtt.js's error if any.
 */
export function publishOnClient(
  client: MqttClient,
  topic: string,
  payload: Buffer,
  publishOptions: IClientPublishOptions,
  done: (err?: Error) => void,
): void {
  const state = stateOf(client);
  // Closed for good, mqtt.js would queue the message and never call back (a QoS 0 dead-letter
  // copy made reject() hang for ever; a publisher made after the close as well).
  const gone = closedForGood(client);
  if (gone !== undefined || state.stranded) {
    done(gone === "ended" ? ENDED_BEFORE : STRANDED);
    return;
  }
  let settled = false;
  let slot = false;
  const finish = (err?: Error): void => {
    // Once: the 'end' listener may fail a publish that mqtt.js calls back later after all.
    if (settled) return;
    settled = true;
    state.pending.delete(finish);
    if (slot) {
      state.inFlight--;
      schedulePump(client, state);
    }
    done(err);
  };
  state.pending.add(finish);
  const go = (): boolean => {
    // Failed while it waited (the client was ended): nothing to send.
    if (settled) return false;
    const tooLarge = overServerMaximum(client, topic, payload, publishOptions);
    if (tooLarge !== undefined) {
      finish(tooLarge);
      return false;
    }
    slot = publishOptions.qos !== 0;
    try {
      client.publish(topic, payload, publishOptions, (err) => finish(err));
    } catch (err) {
      finish(err as Error);
    }
    return true;
  };
  if ((publishOptions.qos ?? 0) === 0) {
    go();
  } else {
    // MQTT 5 4.9: no more QoS 1/2 PUBLISHes unacknowledged than the server's Receive
    // Maximum; past it Mosquitto refuses QoS 2 ones with 0x97 Quota exceeded.
    state.waiting.push(go);
    pump(client, state);
  }
}

/** Bytes of a Variable Byte Integer holding `n` (MQTT 5 1.5.5). */
function varIntBytes(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

/**
 * `PayloadTooLarge` when the MQTT 5 PUBLISH for this message would exceed the Maximum Packet Size
 * the server named in its CONNACK (MQTT 5 3.2.2.3.6; the client MUST NOT send a larger one), else
 * `undefined`. mqtt.js does not check it: Mosquitto 2.0.11 (`max_packet_size`) closed the
 * connection on such a PUBLISH, and mqtt.js resent it after every reconnect, so the publish
 * never settled and the client reconnected in a loop. Free when the server names no maximum
 * (Mosquitto by default); not known while the client is not connected.
 */
function overServerMaximum(
  client: MqttClient,
  topic: string,
  payload: Buffer,
  publishOptions: IClientPublishOptions,
): PosthornError | undefined {
  if (client.options.protocolVersion !== 5) return undefined;
  const max = (client as unknown as { _serverProperties?: { maximumPacketSize?: unknown } })
    ._serverProperties?.maximumPacketSize;
  if (typeof max !== "number") return undefined;
  let properties = 0;
  const props = publishOptions.properties;
  if (props?.contentType !== undefined) properties += 3 + utf8Length(props.contentType);
  const user = props?.userProperties;
  if (user !== undefined) {
    for (const name of Object.keys(user)) {
      const value = user[name] as string | string[];
      const nameBytes = utf8Length(name);
      for (const v of Array.isArray(value) ? value : [value]) {
        properties += 5 + nameBytes + utf8Length(String(v));
      }
    }
  }
  const remaining =
    2 +
    utf8Length(topic) +
    ((publishOptions.qos ?? 0) > 0 ? 2 : 0) +
    varIntBytes(properties) +
    properties +
    payload.length;
  const size = 1 + varIntBytes(remaining) + remaining;
  if (size <= max) return undefined;
  return new PosthornError(
    "PayloadTooLarge",
    `publish to ${topic}: the PUBLISH would be ${size} bytes, over the server's Maximum Packet Size of ${max} (from its CONNACK); nothing was sent`,
  );
}

/** What a publish the client gave up on fails with (`Closed`: see {@link fromMqttError}). */
const ENDED = new Error(
  "client disconnected: the client was ended before the broker acknowledged the message; it may or may not have arrived",
);

/** What a publish made on an ended client fails with (`Closed`), nothing sent. */
const ENDED_BEFORE = new Error("client disconnected: the client was ended; nothing was sent");

/**
 * @internal The typed error for what is refused on a client {@link closedForGood}: `Closed` for
 * an ended one, `ConnectionFailed` (not retryable) for a stranded one; `undefined` otherwise.
 */
export function closedForGoodError(client: MqttClient, what: string): PosthornError | undefined {
  const gone = closedForGood(client);
  if (gone === undefined) return undefined;
  return fromMqttError(gone === "ended" ? ENDED_BEFORE : STRANDED, what);
}

/**
 * What a publish on a client that will not reconnect fails with (`ConnectionFailed`, not
 * retryable: see {@link fromMqttError}).
 */
const STRANDED = new Error(
  "Connection closed, and the client does not reconnect by itself (reconnectPeriod 0) until you call client.reconnect(); a message handed over before the close may or may not have arrived",
);

/**
 * MQTT 5 3.3.1.3 (3.1.1 likewise): a retained PUBLISH with an empty payload deletes the topic's
 * retained message instead of being kept, so an event whose payload is empty (binary mode
 * without data, or with empty data) cannot be retained.
 */
function checkRetainable(message: MqttMessage): void {
  if (message.payload.length > 0) return;
  throw new PosthornError(
    "NotSupported",
    "an event with an empty payload cannot be retained: MQTT takes a retained message with an empty payload as deleting the topic's retained message. Publish it in structured mode (the payload is then the whole event) or give it data",
  );
}

/**
 * Publishes CloudEvents through an mqtt.js client the caller made and connected. Each
 * `publish()` resolves when the broker acknowledged at the chosen QoS (QoS 0: written to the
 * connection; QoS 1: PUBACK; QoS 2: PUBCOMP), and rejects with a typed error when the broker
 * refuses (MQTT 5 reason codes, `PublishRejected`) or the connection fails. At MQTT 3.1.1 an
 * acknowledgement carries no reason code, so a resolved publish does not show the broker took the
 * message: Mosquitto acknowledges a PUBLISH it denies (to a `$SYS/` topic) and drops it.
 *
 * At MQTT 5 a QoS 1/2 publish Mosquitto refuses for its `message_size_limit` (a PUBACK or PUBREC
 * of reason 0x95, which mqtt.js cannot read) rejects with `PayloadTooLarge`, and the connection,
 * on which mqtt.js then reads nothing more, is dropped: mqtt.js reconnects (unless
 * `reconnectPeriod` is 0) and resends the other unacknowledged messages. The publisher listens
 * for the client's `error` events for this, and throws every other one on while it is the only
 * listener.
 *
 * On a client closed for good `publish()` is refused at once: `Closed` when it was ended,
 * `ConnectionFailed` (not retryable) when its connection closed and it does not reconnect by
 * itself (`reconnectPeriod: 0`), until the application calls `client.reconnect()`. MQTT has no batch
 * mode: an array is published as one message per event, all awaited.
 *
 * The client stays the caller's: `close()` waits for in-flight publishes and does not end it.
 *
 * While the client is not connected, mqtt.js keeps what is published and sends it once it has
 * reconnected; at most `maxQueued` of this publisher's messages, past which `publish()` fails at
 * once with `PublishRejected` (retryable).
 *
 * At MQTT 5 the publishers of a client (and its subscribers' dead-letter copies) keep at most the
 * server's Receive Maximum of QoS 1/2 messages unacknowledged (MQTT 5 4.9); the rest wait in order
 * for acknowledgements.
 *
 * @param client - a connected (or connecting) mqtt.js `MqttClient`
 * @param options - topic, QoS, mode, format, retain, limits
 * @throws {@link PosthornError} `NotSupported` when the options ask for what the client's
 *   protocol version cannot carry (binary mode or a non-JSON format at MQTT 3.1.1), or for a
 *   time limit that is not a number of 0 or more (`NaN`, negative), a `maxQueued` that is not a
 *   whole number of 0 or more, a `qos` other than 0, 1 or 2, or a `topic` that is not a topic
 *   name (empty, a `+` or `#` wildcard, a control character, over 65,535 UTF-8 bytes) (a per-call
 *   `timeoutMs`, `qos` or `topic` is checked likewise, and the call rejects with nothing sent); a
 *   retained `publish()` of an
 *   event whose payload would be empty (binary mode without data) rejects with `NotSupported`
 *   and nothing sent, since MQTT reads an empty retained payload as deleting the retained message;
 *   at MQTT 5 a `publish()` whose PUBLISH would exceed the Maximum Packet Size the server named
 *   in its CONNACK rejects with `PayloadTooLarge` and nothing sent (checked while the client is
 *   connected)
 * @example
 * ```ts
 * const client = await mqtt.connectAsync("mqtt://localhost", { protocolVersion: 5 });
 * const publisher = mqttPublisher(client, { topic: "orders", qos: 1 });
 * await publisher.publish({ specversion: "1.0", id: "1", source: "/shop", type: "order.created" });
 * ```
 */
export function mqttPublisher(
  client: MqttClient,
  options: MqttPublisherOptions,
): Publisher<MqttPublishOptions> {
  checkTimeOption("timeoutMs", options.timeoutMs);
  checkTimeOption("closeTimeoutMs", options.closeTimeoutMs);
  checkCountOption("maxQueued", options.maxQueued, 0);
  // mqtt.js failed a QoS of 3, -1 or 1.5 with a TypeError from its packet writer (taken for a
  // lost connection), and sent NaN as if it were 0.
  checkChoiceOption("qos", options.qos, MQTT_QOS_LEVELS);
  checkTopicName(options.topic, "topic");
  const protocolVersion = clientProtocolVersion(client);
  const defaultMode = options.mode ?? (protocolVersion === 5 ? "binary" : "structured");
  if (protocolVersion !== 5 && defaultMode === "binary") {
    throw new PosthornError(
      "NotSupported",
      "MQTT 3.1.1 carries CloudEvents in structured mode only",
    );
  }
  if (defaultMode === "structured" && options.format === undefined) {
    throw new PosthornError("NotSupported", "structured mode needs an event format");
  }
  const qos = options.qos ?? 1;
  const retain = options.retain ?? false;
  const maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED;
  // close() waits for both: publish() calls that have not returned, and messages mqtt.js has not
  // called back for (a call that timed out or was aborted stops waiting; its message is still out).
  let calls = 0;
  let messages = 0;
  const drain = new Drain();
  const idle = (): boolean => calls === 0 && messages === 0;
  const settledOne = (): void => drain.wake();
  let closed = false;
  // One promise for every close() call: a second call must not take the first one's waiter.
  let closing: Promise<void> | undefined;
  const closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
  const state = stateOf(client);

  // The mapping options of each mode, made once rather than for every event.
  const mappingOptions = (mode: "binary" | "structured"): ToMqttMessageOptions => {
    const made: ToMqttMessageOptions = { mode, protocolVersion };
    if (options.format !== undefined) made.format = options.format;
    return made;
  };
  const binaryOptions = mappingOptions("binary");
  const structuredOptions = mappingOptions("structured");

  // mqtt.js's options for one encoded message, built when it is sent.
  const publishOptionsOf = (
    message: MqttMessage,
    call: MqttPublishOptions,
  ): IClientPublishOptions => {
    const publishOptions: IClientPublishOptions = {
      qos: call.qos ?? qos,
      retain: call.retain ?? retain,
    };
    if (protocolVersion === 5 && (message.contentType !== undefined || message.userProperties)) {
      // Built member by member: object spreads after other members take V8's slow path.
      const properties: NonNullable<IClientPublishOptions["properties"]> = {};
      if (message.contentType !== undefined) properties.contentType = message.contentType;
      if (message.userProperties !== undefined) {
        properties.userProperties = message.userProperties as Record<string, string>;
      }
      publishOptions.properties = properties;
    }
    return publishOptions;
  };

  const send = (topic: string, message: MqttMessage, call: MqttPublishOptions): Promise<void> => {
    const publishOptions = publishOptionsOf(message, call);
    messages++;
    return new Promise<void>((resolve, reject) => {
      publishOnClient(client, topic, asBuffer(message.payload), publishOptions, (err) => {
        messages--;
        settledOne();
        if (err) reject(fromMqttError(err, `publish to ${topic}`));
        else resolve();
      });
    });
  };

  // Every event of an array is encoded before any is sent: one that cannot be encoded fails the
  // call with nothing sent (and leaves no publish behind whose failure nobody would observe).
  const sendAll = (
    events: CloudEventLike | readonly CloudEventLike[],
    call: MqttPublishOptions,
  ): Promise<void> => {
    const mode = call.mode ?? defaultMode;
    if (mode === "batch") {
      throw new PosthornError("NotSupported", "the MQTT binding has no batch mode");
    }
    const mapping = mode === "binary" ? binaryOptions : structuredOptions;
    const topic = call.topic ?? options.topic;
    const retained = call.retain ?? retain;
    if (!Array.isArray(events)) {
      const message = toMqttMessage(events as CloudEventLike, mapping);
      if (retained) checkRetainable(message);
      return send(topic, message, call);
    }
    const list = events as readonly CloudEventLike[];
    const n = list.length;
    const encoded: MqttMessage[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const message = toMqttMessage(list[i] as CloudEventLike, mapping);
      if (retained) checkRetainable(message);
      encoded[i] = message;
    }
    const sends: Promise<void>[] = new Array(n);
    for (let i = 0; i < n; i++) sends[i] = send(topic, encoded[i] as MqttMessage, call);
    return Promise.all(sends).then(() => undefined);
  };

  const withLimits = (work: Promise<void>, call: MqttPublishOptions): Promise<void> => {
    const timeoutMs = call.timeoutMs ?? options.timeoutMs;
    return settleWithin(work, {
      timeoutMs,
      signal: call.abortSignal,
      timedOut: () => new PosthornError("Timeout", `no acknowledgement within ${timeoutMs} ms`),
      aborted: () => new PosthornError("Aborted", "publish aborted"),
    });
  };

  return {
    async publish(events, call: MqttPublishOptions = {}) {
      if (call.timeoutMs !== undefined) checkTimeOption("timeoutMs", call.timeoutMs);
      checkChoiceOption("qos", call.qos, MQTT_QOS_LEVELS);
      if (call.topic !== undefined && call.topic !== options.topic) {
        checkTopicName(call.topic, "topic");
      }
      if (closed) throw new PosthornError("Closed", "the MQTT publisher is closed");
      // An ended client (mqtt.js sets `disconnected`) would store the message and never send it.
      const gone = closedForGood(client);
      if (gone === "ended") throw new PosthornError("Closed", "the mqtt.js client was ended");
      if (!client.connected) {
        if (state.stranded || gone === "stranded") throw fromMqttError(STRANDED, "publish");
        // Every message mqtt.js has not called back is one it holds while the client is away.
        const count = Array.isArray(events) ? events.length : 1;
        if (messages + count > maxQueued) {
          throw new PosthornError(
            "PublishRejected",
            `publish to ${call.topic ?? options.topic}: the client is not connected and mqtt.js already holds ${messages} of this publisher's messages (maxQueued ${maxQueued})`,
            { retryable: true },
          );
        }
      }
      // Aborted before the call: nothing is sent (withLimits only stops waiting for what was).
      if (call.abortSignal?.aborted) throw new PosthornError("Aborted", "publish aborted");
      // A time limit of 0 is over before anything could be acknowledged: Timeout with nothing
      // sent, as over HTTP, rather than a message sent that the caller was told failed.
      if ((call.timeoutMs ?? options.timeoutMs) === 0) {
        throw new PosthornError("Timeout", "timeoutMs is 0: nothing was published");
      }
      calls++;
      try {
        await withLimits(sendAll(events, call), call);
      } finally {
        calls--;
        settledOne();
      }
    },
    close() {
      closed = true;
      closing ??= (async () => {
        await drain.wait(closeTimeoutMs, idle);
        if (!idle()) {
          throw new PosthornError(
            "Timeout",
            `${messages} publishes still unacknowledged after ${closeTimeoutMs} ms; mqtt.js keeps them and resends them if the client reconnects`,
          );
        }
      })();
      return closing;
    },
  };
}
