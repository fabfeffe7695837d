import {
  AsyncQueue,
  type CloudEventLike,
  type CorkableStream,
  checkCountOption,
  checkTimeOption,
  closeOnReturn,
  corkForThisTick,
  createDelivery,
  DEFAULT_CLOSE_TIMEOUT_MS,
  type Delivery,
  Drain,
  type EventFormat,
  type ExtensionRegistry,
  formatWithRegistry,
  isCertificateErrorCode,
  isPosthornError,
  limitTimer,
  type Message,
  PosthornError,
  type Publisher,
  type PublishOptions,
  type SettlementCapabilities,
  type Subscriber,
  settleWithin,
  type UnsupportedSettlements,
} from "@posthorn/core";
import {
  checkHeartbeatMs,
  closeLoss,
  DEFAULT_HEARTBEAT_MS,
  isNodeWs,
  lossOf,
  markWritten,
  type NodeWs,
  pauseReading,
  resumeReading,
  watch,
  withLoss,
} from "./liveness.js";
import {
  checkFormats,
  formatOfSubprotocol,
  frameBytes,
  frameText,
  fromWebSocketFrame,
  offeredSubprotocols,
  SUBPROTOCOLS,
  toWebSocketFrame,
  type WebSocketFrame,
} from "./subprotocol.js";

/**
 * The part of a WebSocket event the binding reads. Every event of the browser's `WebSocket` and of
 * `ws`'s (`open`, `message`, `error`, `close`) fits it, so their listeners take this parameter.
 */
export interface WebSocketEventLike {
  /** The event's name: `open`, `message`, `error` or `close`. */
  readonly type: string;
  /** A `message` event's payload: a string, or binary data (`ArrayBuffer`, `ws`'s `Buffer`s). */
  readonly data?: unknown;
  /** An `error` event's description, where the socket gives one (`ws` does). */
  readonly message?: unknown;
  /** An `error` event's underlying error, where the socket gives one (`ws` does). */
  readonly error?: unknown;
  /** A `close` event's close code (RFC 6455 7.4). */
  readonly code?: unknown;
  /** A `close` event's close reason. */
  readonly reason?: unknown;
}

/**
 * A WebSocket, structurally: the browser's global `WebSocket`, `ws`'s client `WebSocket` and the
 * sockets a `ws` `WebSocketServer` hands out all fit, without a cast. Neither library's types
 * appear in the API.
 */
export interface WebSocketLike {
  /** 0 connecting, 1 open, 2 closing, 3 closed; a publish needs 1. */
  readonly readyState: number;
  /** Bytes queued by `send()` and not yet written; a publisher refuses to queue past a limit. */
  readonly bufferedAmount?: number;
  /** The negotiated subprotocol (`""` when none). */
  readonly protocol: string;
  /** How binary messages arrive (`arraybuffer`, `blob`, `nodebuffer`, ...). */
  binaryType: string;
  /** Sends one message: a string as a text frame, bytes as a binary frame. */
  send(data: string | ArrayBufferLike | ArrayBufferView, ...rest: never[]): void;
  /** Starts the closing handshake, with an optional close code and reason. */
  close(code?: number, reason?: string): void;
  /** Adds a listener for `open`, `message`, `error` or `close`. */
  addEventListener(
    type: string,
    listener: (event: WebSocketEventLike) => void,
    options?: unknown,
  ): void;
  /** Removes a listener added with `addEventListener`. */
  removeEventListener(type: string, listener: (event: WebSocketEventLike) => void): void;
}

/**
 * A WebSocket constructor: the global `WebSocket`, or `WebSocket` from `ws` (whose third argument
 * takes `maxPayload`; browsers ignore it). `S` is the socket it makes.
 */
export type WebSocketConstructor<S extends WebSocketLike = WebSocketLike> = new (
  url: string,
  protocols?: string | string[],
  options?: {
    /** Largest message `ws` accepts, in bytes; a browser ignores it. */
    maxPayload?: number;
  },
) => S;

/**
 * The largest WebSocket message accepted by default: 4 MiB (`ws` alone would take 100 MiB). A
 * 1 MiB binary payload is about 1.4 MiB as JSON, so events of that size fit in every format.
 */
export const DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

/**
 * Whether a frame's data is a `Blob`: what a socket whose `binaryType` is `"blob"` hands over (a
 * browser's default, and `ws`'s option since 8.18; the subscriber sets `"arraybuffer"`).
 */
function isBlob(data: unknown): boolean {
  return typeof Blob !== "undefined" && data instanceof Blob;
}

/** WebSocket close code 1009 (RFC 6455 7.4.1): a message too big to process. */
const MESSAGE_TOO_BIG = 1009;

/**
 * The close code a browser's `WebSocket` closes with for a message past the subscriber's limit:
 * its `close()` takes only 1000 and 3000-4999 (anything else throws `InvalidAccessError`), so
 * 1009 is out of reach there. 4009, in the private-use range, echoes it; the reason says it.
 */
const MESSAGE_TOO_BIG_BROWSER = 4009;

/** WebSocket close code 1002 (RFC 6455 7.4.1): a protocol error, here no CloudEvents subprotocol. */
const PROTOCOL_ERROR = 1002;

/**
 * The close code a browser's `WebSocket` closes with for a connection that opened without a
 * CloudEvents subprotocol: 1002 is out of its reach as 1009 is, so 4002 echoes it.
 */
const PROTOCOL_ERROR_BROWSER = 4002;

/**
 * Closes `socket` and never throws. A browser's `close()` throws for a code other than 1000 and
 * 3000-4999 or a reason past 123 bytes, and a subclass passed as `WebSocket` may throw for its own
 * reasons: thrown from a listener, that skipped the settlement after it (a promise left pending)
 * and, on Node's WHATWG `WebSocket`, ended the process. Should a close with a code throw, the
 * socket is closed without one, so the connection still goes.
 *
 * @param socket - the socket to close
 * @param code - the close code, one the socket's API accepts (see {@link MESSAGE_TOO_BIG_BROWSER})
 * @param reason - the close reason, a few words
 */
function closeQuietly(socket: WebSocketLike, code?: number, reason?: string): void {
  try {
    if (code === undefined) socket.close();
    else socket.close(code, reason);
  } catch {
    if (code === undefined) return;
    try {
      socket.close();
    } catch {
      // Nothing more to try: the caller settles what waits on the socket either way.
    }
  }
}

/**
 * @param limit - the subscriber's limit, or `undefined` when `ws` refused the message against the
 *   socket's own (`maxPayload`)
 */
function payloadTooLarge(
  limit: number | undefined,
  size: number | undefined,
  code: number,
): PosthornError {
  const which =
    limit === undefined
      ? "the socket's limit (ws's maxPayload)"
      : `the subscriber's maxPayloadBytes (${limit} bytes)`;
  return new PosthornError(
    "PayloadTooLarge",
    `a WebSocket message${size === undefined ? "" : ` of ${size} bytes`} exceeds ${which}; the connection was closed with ${code}. To accept such messages raise maxPayloadBytes where the socket is made (connectWebSocket, webSocketServerOptions), on a subscriber that sets its own, and on the peer's publisher`,
    { protocolCode: code },
  );
}

/** What a WebSocket delivery's `NotSupported` settlements say. */
const WEBSOCKET_UNSUPPORTED: UnsupportedSettlements = Object.freeze({
  release: "the WebSockets binding has no acknowledgement: a frame is never redelivered",
  releaseDelay: "the WebSockets binding has no acknowledgement: a frame is never redelivered",
  reject: "the WebSockets binding has no acknowledgement and no dead-letter path",
  inProgress: "the WebSockets binding has no acknowledgement whose wait could be extended",
});

/** What settling a WebSocket delivery does: nothing, since the protocol has no acknowledgement. */
export const WEBSOCKET_CAPABILITIES: SettlementCapabilities = Object.freeze({
  release: "none",
  releaseDelay: false,
  reject: "none",
  inProgress: false,
  deliveryCount: "none",
});

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;
/** How long a WHATWG WebSocket's 'close' may take to follow its 'error' before the error alone fails iteration. */
const ERROR_CLOSE_WAIT_MS = 1000;

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * The format a socket negotiated among `formats`.
 *
 * @param socket - an open socket
 * @param formats - the formats this side accepts
 * @throws {@link PosthornError} `NotSupported` when the socket negotiated no known subprotocol, or
 *   is still connecting (no subprotocol is known before the handshake)
 */
export function negotiatedFormat(
  socket: WebSocketLike,
  formats: readonly EventFormat[],
): EventFormat {
  const format = formatOfSubprotocol(formats, socket.protocol);
  if (format === undefined) {
    // No subprotocol is known before the handshake: say so, rather than that it chose none.
    if (socket.readyState === CONNECTING) {
      throw new PosthornError(
        "NotSupported",
        "the WebSocket is still connecting (readyState 0), so no subprotocol is negotiated yet: wait for its open event, or open it with connectWebSocket, which resolves once it is open",
      );
    }
    const cloudEvents = Object.values(SUBPROTOCOLS).includes(socket.protocol);
    throw new PosthornError(
      "NotSupported",
      `the WebSocket negotiated ${socket.protocol ? `subprotocol ${socket.protocol}` : "no subprotocol"}; ${cloudEvents ? "add its format to formats, which offers only" : "CloudEvents needs one of"} ${offeredSubprotocols(formats).join(", ")}`,
    );
  }
  return format;
}

/** Options of {@link webSocketPublisher} and {@link webSocketSubscriber}. */
export interface WebSocketBindingOptions {
  /** The formats this side accepts; the socket's negotiated subprotocol picks one. */
  formats: readonly EventFormat[];
  /**
   * Largest message a subscriber accepts: by default the limit the socket was given where it was
   * made ({@link connectWebSocket}'s, or {@link webSocketServerOptions}' for a server's socket),
   * else {@link DEFAULT_MAX_PAYLOAD_BYTES}; a larger one closes the connection with 1009 (4009 on a browser's `WebSocket`, whose `close()` cannot
   * send 1009) and fails iteration with `PayloadTooLarge`. With `ws`,
   * also give the socket a `maxPayload` ({@link connectWebSocket}, {@link webSocketServerOptions}),
   * so the message is refused while it arrives rather than after. A publisher refuses a larger
   * message of its own with `PayloadTooLarge` before sending it, and takes the same default: the
   * socket's own limit, else {@link DEFAULT_MAX_PAYLOAD_BYTES} (raise the limit on both sides
   * together).
   */
  maxPayloadBytes?: number;
  /**
   * With `ws`: ping the peer this often, and terminate the socket when by the next ping the peer
   * answered nothing, sent nothing else, and took none of the bytes that waited for it (a peer gone
   * without closing the connection), so that waiting publishes fail and subscribers end with
   * `ConnectionFailed`. A side that paused reading (the subscriber's `maxPending`) gives no verdict
   * while paused, and sends the peer an unsolicited pong every half interval instead, so a slow
   * consumer is not taken for a gone one on either side. `0` or `Infinity`: no heartbeat; other
   * than 0, at least `MIN_HEARTBEAT_MS` (100 ms), and well above the longest time the peer's
   * event loop may be busy, since a peer silent for one interval is taken for gone.
   * The heartbeat belongs to the socket and lasts until it closes: the first of
   * {@link connectWebSocket}, {@link webSocketPublisher} and {@link webSocketSubscriber} to touch
   * it starts it, with this option or {@link DEFAULT_HEARTBEAT_MS}; a later one that gives another
   * value sets it anew. A browser's `WebSocket` cannot ping (its browser answers pings, though),
   * so there it has no effect.
   */
  heartbeatMs?: number;
}

/**
 * The default `maxPending` of {@link webSocketSubscriber}: 256 deliveries waiting to be pulled
 * (at most 1 GiB at the default `maxPayloadBytes`; 256 KiB of 1 KiB events).
 */
export const DEFAULT_MAX_PENDING = 256;

/** Options of {@link webSocketSubscriber}. */
export interface WebSocketSubscriberOptions extends WebSocketBindingOptions {
  /**
   * Most deliveries waiting to be pulled before the subscriber pauses a `ws` socket (TCP then holds
   * the peer back); it resumes once half of them were pulled. Default {@link DEFAULT_MAX_PENDING}.
   * However long it stays paused, the heartbeat takes neither side for gone (see
   * {@link WebSocketBindingOptions.heartbeatMs}).
   * A browser's WebSocket cannot pause, so there it has no effect.
   */
  maxPending?: number;
  /**
   * Where the types of extensions are looked up, as every other binding's subscriber takes it:
   * the negotiated format, adapted to this registry once when the subscriber is made
   * ({@link EventFormat.withRegistry}; a format without it decodes with its own), decodes every
   * message. Every WebSocket message is a structured event, so without it the format's own
   * registry applies (core's `extensions` for the default instances).
   */
  registry?: ExtensionRegistry;
}

export { DEFAULT_CLOSE_TIMEOUT_MS };

/**
 * The default `maxBufferedBytes` of {@link webSocketPublisher}: 64 MiB, sixteen messages of the
 * largest default size.
 */
export const DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024;

/** Options of {@link webSocketPublisher}. */
export interface WebSocketPublisherOptions extends WebSocketBindingOptions {
  /**
   * How long `close()` waits for `ws` to write the frames handed to it before it rejects with
   * `Timeout` (a peer that stopped reading never takes them). Default
   * {@link DEFAULT_CLOSE_TIMEOUT_MS}. The frames stay in the socket's buffers, and their publishes
   * settle when they are written or the socket closes.
   */
  closeTimeoutMs?: number;
  /**
   * Most bytes the socket may hold unsent (`bufferedAmount`) for a publish to go ahead; past it
   * `publish` fails at once with `PublishRejected` (retryable), so a peer that stops reading cannot
   * make the publisher buffer without bound. Default {@link DEFAULT_MAX_BUFFERED_BYTES}. Frames
   * written within one tick count until the tick ends (they leave in one `writev`).
   */
  maxBufferedBytes?: number;
}

/**
 * Per-call options of {@link webSocketPublisher}. WebSockets have no acknowledgement, so what a
 * publish waits for is `ws` handing its frames whole to the operating system (see
 * {@link webSocketPublisher}); a browser gives no such signal: there a publish resolves once its
 * frames are queued, and only an `abortSignal` aborted before the call, or a `timeoutMs` of 0, has
 * an effect.
 */
export interface WebSocketPublishOptions extends PublishOptions {
  /**
   * `structured`, the only mode (every WebSocket message is one structured event); `binary` and
   * `batch` are `NotSupported`.
   */
  mode?: "structured";
  /**
   * Aborted before the call: nothing is sent and the publish fails with `Aborted`. Aborted while
   * `ws` has not yet written the frames: the publish fails with `Aborted`, though the frames,
   * already handed to `ws`, still go out (and `close()` waits for them).
   */
  abortSignal?: AbortSignal;
  /**
   * Fail with `Timeout` when `ws` has not written the frames within this long (a peer that does
   * not read fills the socket's buffers). The frames still go out, and `close()` waits for them.
   * 0 fails the call at once with `Timeout` and nothing sent (in a browser too); `Infinity` is no
   * limit, as when not given.
   */
  timeoutMs?: number;
}

/** A frame to send; on a browser's socket, a text frame carries its text as a string too. */
interface OutgoingFrame extends WebSocketFrame {
  readonly string?: string;
}

/**
 * Publishes events over an open WebSocket, one structured event per message in the negotiated
 * format (text frames for JSON, binary frames for Avro and Protobuf). Works on either side of a
 * connection. Per-call options: see {@link WebSocketPublishOptions}.
 *
 * What a resolved publish means: with `ws`, every byte of its frames was handed to the operating
 * system (the kernel's socket buffer). When the connection is lost first (`terminate()`, the
 * heartbeat giving the peer up, a socket error) with any part of a frame still in this process, the
 * publish fails with `ConnectionFailed` (retryable) and never resolves. WebSockets have no
 * acknowledgement, so a resolved publish is not a delivered one: bytes in the kernel of a
 * connection that then dies can still be lost, and a failed publish's frame may have arrived
 * (retrying can deliver it twice). Where delivery must be confirmed, have the peer send an event
 * back. A browser's `WebSocket` gives no such signal: there a publish resolves once its frames
 * are queued.
 *
 * @param socket - an open socket (browser `WebSocket` or `ws`)
 * @param options - the formats this side accepts (the negotiated subprotocol picks one),
 *   `maxPayloadBytes` (default: the socket's own, where {@link connectWebSocket} or
 *   {@link webSocketServerOptions} set it, else {@link DEFAULT_MAX_PAYLOAD_BYTES}): a larger message
 *   is refused with `PayloadTooLarge` before it is sent, since a receiver with that limit would
 *   close the connection, `maxBufferedBytes`
 *   (default 64 MiB): past it a publish is refused with `PublishRejected`, and `closeTimeoutMs`
 *   (default 5 s): how long `close()` waits for the frames to be written
 * @throws {@link PosthornError} `NotSupported` when the socket negotiated no CloudEvents
 *   subprotocol among `formats` (or is still connecting, so has negotiated none yet), for an empty
 *   or missing `formats`, for a `maxPayloadBytes` or `maxBufferedBytes` that is not a whole number of 0 or
 *   more, a `closeTimeoutMs` that is not a number of 0 or more, or a `heartbeatMs` that is not 0
 *   or a number of `MIN_HEARTBEAT_MS` or more (a per-call `timeoutMs` is checked like
 *   `closeTimeoutMs`, and the call rejects with nothing sent)
 */
export function webSocketPublisher(
  socket: WebSocketLike,
  options: WebSocketPublisherOptions,
): Publisher<WebSocketPublishOptions> {
  checkBindingOptions(options);
  checkTimeOption("closeTimeoutMs", options.closeTimeoutMs);
  checkCountOption("maxBufferedBytes", options.maxBufferedBytes, 0);
  const format = negotiatedFormat(socket, options.formats);
  const live = watch(socket, options.heartbeatMs);
  const node = isNodeWs(socket) ? (socket as unknown as NodeWs) : undefined;
  // A counter and one waiter, not a set of promises: publish is a hot path (one frame per event).
  let pending = 0;
  const drain = new Drain();
  let closed = false;
  // One promise for every close() call: a second call must not take the first one's waiter.
  let closing: Promise<void> | undefined;
  const settled = (): void => {
    if (--pending === 0) drain.wake();
  };
  // Waits for every frame handed to ws to be written; a peer that stopped reading never takes
  // them, so the wait is bounded.
  const written = async (timeoutMs: number): Promise<void> => {
    await drain.wait(timeoutMs, () => pending === 0);
    if (pending > 0) {
      // With 0, close() does not wait at all: the frames of this tick's publishes are unwritten
      // whatever the peer does, so its reading is not in question.
      throw new PosthornError(
        "Timeout",
        timeoutMs === 0
          ? `closeTimeoutMs is 0, so close() did not wait for ws to write ${pending} frame(s) still unwritten; they still go out, and their publishes settle once written or when the socket closes`
          : `ws did not write ${pending} frame(s) within closeTimeoutMs (${timeoutMs} ms): the peer is not reading them, or not within that limit; they stay in the socket's buffers until it does or the socket closes`,
      );
    }
  };

  // Hands one encoded frame to the socket: with ws, settles on its send callback; in a browser,
  // resolves at once.
  const send = (frame: OutgoingFrame): Promise<void> => {
    if (node) {
      pending++;
      return new Promise((resolve, reject) => {
        node.send(frame.data, { binary: !frame.text }, (err) => {
          if (err)
            reject(
              new PosthornError(
                "ConnectionFailed",
                withLoss(socket, `sending failed: ${err.message}`),
                { cause: err },
              ),
            );
          else if (tcpDestroyed(node))
            // Node calls a write back without an error when its socket was destroyed (terminate(),
            // the heartbeat, a socket error) while part of the write still waited in Node for the
            // kernel to take it: net's onWriteComplete drops the cancellation on a destroyed
            // stream. A write that finished is called back before the socket is destroyed, but
            // for one the kernel took whole in the very tick the socket was destroyed. So the
            // frame may never have left this process. Node does not say how far a cut-off write
            // got, so the frames that shared it (one tick's publishes leave in one writev) fail
            // with it, though the kernel may have taken them whole.
            reject(
              new PosthornError(
                "ConnectionFailed",
                withLoss(
                  socket,
                  "the WebSocket connection was lost before its frame was all handed to the operating system",
                ),
                { retryable: true },
              ),
            );
          else {
            resolve();
            // The peer took bytes: a sign of life while the heartbeat's ping waits behind them.
            if (live !== undefined) markWritten(live);
          }
          // After the publish settled, so close() resolves only once every publish has.
          settled();
        });
      });
    }
    // The browser API sends strings as text frames and buffers as binary frames; it says nothing
    // about when a frame leaves, so the publish resolves once the frame is queued.
    socket.send(frame.string ?? frame.data);
    return RESOLVED;
  };
  // ws corks around each frame and uncorks at once: one system call per frame otherwise.
  const cork = (): void => {
    if (node) corkForThisTick((node as unknown as { _socket?: CorkableStream })._socket);
  };

  // The receiving side closes the whole connection (1009) on a message past its limit, which by
  // default is this one: an event too large for it is refused here, before it costs the others.
  // A socket made with a limit of its own (connectWebSocket's, webSocketServerOptions') takes it:
  // both sides of a connection are expected to be given the same one.
  const maxPayloadBytes =
    options.maxPayloadBytes ?? givenLimit(socket) ?? DEFAULT_MAX_PAYLOAD_BYTES;
  const maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
  const closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
  const encode = (event: CloudEventLike): OutgoingFrame => {
    const frame = toWebSocketFrame(event, format);
    if (frame.data.length > maxPayloadBytes) {
      throw new PosthornError(
        "PayloadTooLarge",
        `the WebSocket message is ${frame.data.length} bytes, more than maxPayloadBytes (${maxPayloadBytes}); a receiver with that limit closes the connection (1009)`,
      );
    }
    // A browser's send() takes a text frame as a string: made with the encoding, so that a text
    // format whose bytes are not UTF-8 fails the call as a rejection with nothing sent (it threw
    // out of publish, for an array after the frames before it were sent).
    return node || !frame.text ? frame : { ...frame, string: frameText(frame) };
  };

  const sendOne = (event: CloudEventLike): Promise<void> => {
    let frame: OutgoingFrame;
    try {
      frame = encode(event);
    } catch (err) {
      return Promise.reject(err);
    }
    cork();
    return send(frame);
  };

  // The WebSockets binding has no batch: an array is one message per event, in order. Every
  // event is encoded before any is sent, so one that cannot be encoded fails the call with
  // nothing sent.
  const sendAll = (events: readonly CloudEventLike[]): Promise<void> => {
    const n = events.length;
    const frames: OutgoingFrame[] = new Array(n);
    try {
      for (let i = 0; i < n; i++) frames[i] = encode(events[i] as CloudEventLike);
    } catch (err) {
      return Promise.reject(err);
    }
    if (n === 0) return RESOLVED;
    cork();
    const sends: Promise<void>[] = new Array(n);
    for (let i = 0; i < n; i++) sends[i] = send(frames[i] as OutgoingFrame);
    return Promise.all(sends).then(() => undefined);
  };

  return {
    publish(
      events: CloudEventLike | readonly CloudEventLike[],
      call?: WebSocketPublishOptions,
    ): Promise<void> {
      if (closed) return Promise.reject(new PosthornError("Closed", "the publisher is closed"));
      if (call !== undefined) {
        const refusal = refuseCall(call);
        if (refusal !== undefined) return Promise.reject(refusal);
      }
      if (socket.readyState !== OPEN) {
        return Promise.reject(
          new PosthornError("ConnectionFailed", withLoss(socket, "the WebSocket is not open")),
        );
      }
      // ws (and a browser) queue whatever they are given in memory: a peer that stopped reading
      // would make that grow without bound. One getter read per call.
      const buffered = socket.bufferedAmount;
      if (buffered !== undefined && buffered > maxBufferedBytes) {
        return Promise.reject(
          new PosthornError(
            "PublishRejected",
            `${buffered} bytes already wait to be written to the WebSocket, more than maxBufferedBytes (${maxBufferedBytes}): the peer is not reading fast enough`,
            { retryable: true },
          ),
        );
      }
      const work = Array.isArray(events)
        ? sendAll(events as readonly CloudEventLike[])
        : sendOne(events as CloudEventLike);
      return call === undefined || node === undefined ? work : withLimits(work, call);
    },
    close(): Promise<void> {
      closed = true;
      closing ??= written(closeTimeoutMs);
      return closing;
    },
  };
}

/**
 * Messages a `ws` socket received before its first subscriber, and the listener that holds them.
 * `ws` drops a message that nobody listens for. A server that sends at once (on `connection`) has
 * its first frames arrive in the same read as the handshake's answer: they were emitted before the
 * caller's `await connectWebSocket(...)` resumed, and lost. On a server, a client that sends as
 * soon as it is open lost what came before an application that awaits something (a lookup, an
 * authorization) on `connection` made its subscriber.
 */
interface EarlyMessages {
  readonly data: Array<Uint8Array | ArrayBuffer | Uint8Array[]>;
  /** The bytes of the messages in {@link EarlyMessages.data}. */
  bytes: number;
  /** How many arrived past the hold's bounds and were dropped (every one after the first too). */
  dropped: number;
  /** The most bytes held: the `maxHeldBytes` of the option that made the socket. */
  readonly maxBytes: number;
  readonly listener: (data: Uint8Array | ArrayBuffer | Uint8Array[]) => void;
}

/**
 * The default `maxHeldBytes` of {@link connectWebSocket} and {@link webSocketServerOptions}: 1 MiB.
 * What arrives on a `ws` socket before its first subscriber is held for it up to
 * {@link DEFAULT_MAX_PENDING} messages and this many bytes, whichever comes first; a socket that
 * only publishes holds that much for as long as it is open. Past it a peer that sends at once
 * (a hostile client of a server's socket that never subscribes, say) could pin 256 messages of
 * `maxPayloadBytes` each, 1 GiB at the default 4 MiB, per connection.
 */
export const DEFAULT_MAX_HELD_BYTES = 1024 * 1024;

/**
 * The bytes of a message as `ws` emits it: a `Buffer`, an `ArrayBuffer`, `Buffer` fragments, or
 * (`binaryType` `"blob"`, `ws` 8.18 and later) a `Blob`, whose length is its `size`.
 */
function messageBytes(data: Uint8Array | ArrayBuffer | Uint8Array[]): number {
  if (Array.isArray(data)) {
    let n = 0;
    for (const part of data) n += part.byteLength;
    return n;
  }
  const n = data.byteLength ?? (data as { size?: unknown }).size;
  return typeof n === "number" ? n : 0;
}

const earlyMessages = new WeakMap<object, EarlyMessages>();
/** The sockets whose first subscriber was made: nothing is held on them any more. */
const subscribed = new WeakSet<object>();

/**
 * Holds what arrives on `node` until {@link takeEarly}: up to {@link DEFAULT_MAX_PENDING}
 * messages, as many as a subscriber queues before it pauses, and `maxBytes` bytes; from the first
 * message past either bound on, they are dropped, as without a listener, and counted, so that the
 * first subscriber is told (a socket that only publishes, whose peer sends to it, holds no more).
 * What is held is always what arrived first, with no gap; `maxBytes` 0 holds nothing and counts.
 */
function holdEarly(node: NodeWs, maxBytes: number): void {
  if (subscribed.has(node) || earlyMessages.has(node)) return;
  const early: EarlyMessages = {
    data: [],
    bytes: 0,
    dropped: 0,
    maxBytes,
    listener: (message) => {
      if (early.dropped === 0 && early.data.length < DEFAULT_MAX_PENDING) {
        const bytes = early.bytes + messageBytes(message);
        if (bytes <= maxBytes) {
          early.bytes = bytes;
          early.data.push(message);
          return;
        }
      }
      early.dropped++;
    },
  };
  earlyMessages.set(node, early);
  node.on("message", early.listener);
}

/**
 * What {@link holdEarly} held on `node`, once: the first subscriber takes it and stops the hold.
 * Called for every subscriber's socket, so that a hold that would start later (a server's, at the
 * first bytes) does not start once a subscriber listens.
 */
function takeEarly(node: NodeWs): EarlyMessages | undefined {
  subscribed.add(node);
  const early = earlyMessages.get(node);
  if (early === undefined) return undefined;
  earlyMessages.delete(node);
  node.off("message", early.listener);
  return early;
}

/**
 * Starts {@link holdEarly} on the `ws` socket a `WebSocketServer` makes on `tcp`, the accepted
 * connection, at its first bytes: before `ws` reads them, since this listener was added before
 * `ws`'s own. `ws` makes the socket only after `handleProtocols`, and says which it is only through
 * the connection's `websocket` symbol (every `ws` 8.x sets it, from 8.0.0 to 8.23.0 at least);
 * where that is missing (another `ws`, or a server that hands `ws` another stream than the
 * request's socket), nothing is held, as before, and a warning says so, once per process.
 */
function holdAccepted(tcp: object, maxBytes: number): void {
  const stream = tcp as { once?: unknown };
  if (typeof stream.once !== "function") return;
  (tcp as { once(event: "data", listener: () => void): unknown }).once("data", () => {
    for (const key of Object.getOwnPropertySymbols(tcp)) {
      if (key.description !== "websocket") continue;
      const node = (tcp as Record<symbol, unknown>)[key] as WebSocketLike | undefined;
      if (typeof node === "object" && node !== null && isNodeWs(node)) {
        holdEarly(node as unknown as NodeWs, maxBytes);
        return;
      }
      break;
    }
    warnNoHold();
  });
}

/** The code of the warning {@link warnNoHold} emits. */
const NO_HOLD_WARNING = "POSTHORN_WS_NO_HOLD";
let warnedNoHold = false;

/**
 * Says, once per process, that a server's socket holds nothing for its first subscriber: through
 * Node's `process.emitWarning` (printed on stderr unless the application handles `warning`).
 */
function warnNoHold(): void {
  if (warnedNoHold) return;
  warnedNoHold = true;
  const message =
    "@posthorn/binding-websocket could not find the ws socket of an accepted connection (ws does not name it as ws 8.x does), so what a client sends before the socket's first subscriber is not held: ws drops it. Subscribe in the 'connection' handler before any await (docs/bindings/websocket.md, Server)";
  const emit = (globalThis as { process?: { emitWarning?: unknown } }).process?.emitWarning;
  if (typeof emit === "function") {
    Reflect.apply(emit, (globalThis as { process?: unknown }).process, [
      message,
      { type: "PosthornWarning", code: NO_HOLD_WARNING },
    ]);
  } else console.warn(message);
}

/** Whether the TCP socket under a `ws` socket (its `_socket`, set once it opens) was destroyed. */
function tcpDestroyed(node: NodeWs): boolean {
  const tcp = (node as unknown as { _socket?: { destroyed?: boolean } | null })._socket;
  return tcp?.destroyed === true;
}

/** Why a publish with these options cannot go ahead at all, or `undefined`. */
function refuseCall(call: PublishOptions): PosthornError | undefined {
  const mode = call.mode;
  if (mode !== undefined && mode !== "structured") {
    return new PosthornError(
      "NotSupported",
      `the WebSockets binding has no ${String(mode)} mode: every message is one structured event`,
    );
  }
  if (call.abortSignal?.aborted) {
    return new PosthornError("Aborted", "the publish was aborted before it was sent", {
      cause: call.abortSignal.reason,
    });
  }
  if (call.timeoutMs !== undefined) {
    try {
      checkTimeOption("timeoutMs", call.timeoutMs);
    } catch (err) {
      return err as PosthornError;
    }
    // A limit of 0 is over before any frame could be written: Timeout with nothing sent, as in the
    // other bindings, rather than frames sent that the caller is told timed out (and sends again).
    if (call.timeoutMs === 0) {
      return new PosthornError("Timeout", "timeoutMs is 0: nothing was sent");
    }
  }
  return undefined;
}

// The options the publisher and the subscriber share, checked once when either is made.
function checkBindingOptions(options: WebSocketBindingOptions): void {
  checkFormats((options as Partial<WebSocketBindingOptions> | undefined)?.formats);
  checkCountOption("maxPayloadBytes", options.maxPayloadBytes, 0);
  checkHeartbeatMs(options.heartbeatMs);
}

// The limit on incoming messages this binding gave a socket where it was made: connectWebSocket's
// socket, or, for a server's, the TCP connection under it (webSocketServerOptions sees the upgrade
// request, whose socket becomes the ws socket's). A subscriber given no maxPayloadBytes of its own
// takes it, so a limit raised where the socket is made is not undercut by the subscriber's default.
const socketLimits = new WeakMap<object, number>();

function givenLimit(socket: WebSocketLike): number | undefined {
  const own = socketLimits.get(socket);
  if (own !== undefined) return own;
  const tcp = (socket as unknown as { _socket?: object | null })._socket;
  return tcp ? socketLimits.get(tcp) : undefined;
}

/**
 * `maxPayloadBytes` as `ws`'s `maxPayload`, which it truncates to 32 bits and takes 0 (or less)
 * for no limit: 0 is refused (it would lift the limit it names), and `Infinity` or anything past
 * 32 bits is given as 0, no limit, rather than wrapped around to some other number.
 */
function wsMaxPayload(maxPayloadBytes: number | undefined): number {
  checkCountOption("maxPayloadBytes", maxPayloadBytes);
  const max = maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  return max > 0x7fff_ffff ? 0 : max;
}

/**
 * Settles like `work`, unless `call.abortSignal` fires (`Aborted`) or `call.timeoutMs` passes
 * (`Timeout`) first. `work` is still observed to its end, and `close()` still waits for it.
 */
function withLimits(work: Promise<void>, call: PublishOptions): Promise<void> {
  const timeoutMs = call.timeoutMs;
  const signal = call.abortSignal;
  return settleWithin(work, {
    timeoutMs,
    signal,
    timedOut: () =>
      new PosthornError("Timeout", `ws did not write the frames within ${timeoutMs} ms`),
    aborted: () =>
      new PosthornError("Aborted", "the publish was aborted before ws wrote it", {
        cause: signal?.reason,
      }),
  });
}

/**
 * Receives events from an open WebSocket as an async iterable of deliveries, on either side of a
 * connection. A message that does not decode arrives as a delivery with `error` set and no
 * `event`. Iteration ends when the socket closes cleanly (1000, 1001, or 1005: a closing handshake
 * without a code), and fails with `ConnectionFailed` (retryable, the close code in
 * `protocolCode`) when the connection is lost: an abnormal close (1006, no closing handshake), any
 * other close code, a socket error, or the heartbeat giving up on a silent peer (`heartbeatMs`).
 *
 * Settlement: WebSockets have no acknowledgement, so `accept()` does nothing, and `release()` and
 * `reject()` reject with `NotSupported` (see {@link WEBSOCKET_CAPABILITIES}). `close()` stops listening;
 * the socket itself stays open (it belongs to the caller). Leaving a `for await` loop closes the
 * subscriber the same way.
 *
 * Flow control: with `ws`, once `maxPending` deliveries wait to be pulled the subscriber pauses the
 * socket, so TCP holds the peer back, and resumes it once half of them were pulled. While paused,
 * the socket's heartbeat gives no verdict and tells the peer, by unsolicited pongs, that this side
 * lives, so holding deliveries longer than `heartbeatMs` costs the connection on neither side. A
 * socket the application closes while paused reads on, so the closing handshake completes at once:
 * what the peer sent before it saw the close is delivered, then iteration ends. A close the peer
 * starts waits, unread behind its frames, until the application pulls enough for reading to resume:
 * held past the peer's close timeout (`ws`: 30 s), the peer gives up with 1006, and so, usually,
 * does this side once it reads again. A browser's
 * WebSocket cannot pause: there what arrives waits in memory.
 *
 * @param socket - an open socket (browser `WebSocket` or `ws`)
 * @param options - the formats this side accepts (the negotiated subprotocol picks one),
 *   `maxPayloadBytes` (default: the socket's own, where {@link connectWebSocket} or
 *   {@link webSocketServerOptions} set it, else {@link DEFAULT_MAX_PAYLOAD_BYTES}), `maxPending` (default
 *   {@link DEFAULT_MAX_PENDING}), the extension `registry` and, with `ws`, `heartbeatMs` (default
 *   {@link DEFAULT_HEARTBEAT_MS})
 * @throws {@link PosthornError} `NotSupported` when the socket negotiated no CloudEvents
 *   subprotocol among `formats` (or is still connecting, so has negotiated none yet); `NotSupported`
 *   for an empty or missing `formats`, or a `maxPending` that is not a whole number of 1 or more (or
 *   `Infinity`), a `maxPayloadBytes` that is not a whole number of 0 or more, or a `heartbeatMs`
 *   that is not 0 or a number of `MIN_HEARTBEAT_MS` or more
 */
export function webSocketSubscriber(
  socket: WebSocketLike,
  options: WebSocketSubscriberOptions,
): Subscriber {
  checkBindingOptions(options);
  checkCountOption("maxPending", options.maxPending);
  const format = formatWithRegistry(negotiatedFormat(socket, options.formats), options.registry);
  watch(socket, options.heartbeatMs);
  const queue = new AsyncQueue<Delivery>();
  const contentType = format.contentType;
  const maxPayloadBytes =
    options.maxPayloadBytes ?? givenLimit(socket) ?? DEFAULT_MAX_PAYLOAD_BYTES;
  const maxPending = options.maxPending ?? DEFAULT_MAX_PENDING;
  const node = isNodeWs(socket) ? (socket as unknown as NodeWs) : undefined;
  // ws reads as fast as the peer sends: past maxPending unpulled deliveries, stop reading until
  // the application has pulled half of them (only ws can; a browser's socket cannot pause).
  const canPause = typeof node?.pause === "function" && typeof node.resume === "function";
  const resumeAt = maxPending >> 1;
  let paused = false;
  const resume = (): void => {
    paused = false;
    // One pause of several, where other subscribers on this socket hold it too.
    resumeReading(socket as unknown as NodeWs & WebSocketLike);
  };

  const receive = (data: string | Uint8Array | ArrayBuffer | Uint8Array[]): void => {
    if (isBlob(data)) {
      // Its bytes can only be read asynchronously, which would reorder it with the frames after
      // it; read as an ArrayBuffer view it is empty, and the decoder's error pointed elsewhere.
      deliver(
        { body: new Uint8Array(0), contentType, properties: {} },
        undefined,
        new PosthornError(
          "MalformedInput",
          'a binary frame arrived as a Blob: the socket\'s binaryType was changed from "arraybuffer", which the subscriber sets, after it attached; leave binaryType as it is while subscribed',
        ),
      );
      return;
    }
    // A string has at least as many UTF-8 bytes as UTF-16 units: refuse before converting.
    const body =
      typeof data === "string" && data.length > maxPayloadBytes ? undefined : frameBytes(data);
    if (body === undefined || body.length > maxPayloadBytes) {
      // A browser's close() throws on 1009: thrown from this listener, that left the connection
      // open (and ended a Node process using a WHATWG WebSocket).
      const code = node ? MESSAGE_TOO_BIG : MESSAGE_TOO_BIG_BROWSER;
      queue.fail(payloadTooLarge(maxPayloadBytes, body?.length, code));
      closeQuietly(socket, code, "message too big");
      return;
    }
    const message: Message = { body, contentType, properties: {} };
    let event: ReturnType<typeof fromWebSocketFrame> | undefined;
    let error: PosthornError | undefined;
    try {
      event = fromWebSocketFrame(body, format);
    } catch (err) {
      error = isPosthornError(err)
        ? err
        : new PosthornError("MalformedInput", String(err), { cause: err });
    }
    deliver(message, event, error);
  };

  const deliver = (
    message: Message,
    event: ReturnType<typeof fromWebSocketFrame> | undefined,
    error: PosthornError | undefined,
  ): void => {
    queue.push(
      createDelivery({
        message,
        event,
        error,
        deliveryCount: 1,
        capabilities: WEBSOCKET_CAPABILITIES,
        unsupported: WEBSOCKET_UNSUPPORTED,
        accept: () => undefined,
      }),
    );
    if (canPause && !paused && queue.size >= maxPending) {
      paused = true;
      // Through the heartbeat, which then neither waits for pongs it cannot read nor lets the
      // peer's heartbeat take this side for gone.
      pauseReading(socket as unknown as NodeWs & WebSocketLike);
      queue.onDrainedTo(resumeAt, () => {
        if (paused) resume();
      });
    }
  };
  const onNodeMessage = (data: Uint8Array | ArrayBuffer | Uint8Array[]): void => receive(data);
  // With binaryType "arraybuffer", a browser's message data is a string or an ArrayBuffer.
  const onMessage = (event: WebSocketEventLike): void =>
    receive(event.data as string | ArrayBuffer | Uint8Array);
  // A clean close ends iteration; a lost connection fails it, so that the application can tell.
  const ended = (lost: PosthornError | undefined): void => {
    if (lost === undefined) queue.end();
    else queue.fail(lost);
  };
  const onNodeClose = (code: number, reason: Uint8Array): void =>
    ended(closeLoss(code, reason, socket));
  // A WHATWG WebSocket fires 'error' only when it fails the connection (a frame it cannot read,
  // say), and then 'close' with the code: that one says what happened, with the error's words
  // where it had any (a browser's have none). A close that does not follow in time fails it so.
  let browserError:
    | { detail: string | undefined; timer: ReturnType<typeof setTimeout> }
    | undefined;
  const onClose = (event: WebSocketEventLike): void => {
    const loss = closeLoss(event.code, event.reason, socket);
    if (browserError !== undefined) clearTimeout(browserError.timer);
    const detail = browserError?.detail;
    ended(
      loss === undefined || detail === undefined
        ? loss
        : new PosthornError(loss.code, `${loss.message}: ${detail}`, {
            protocolCode: loss.protocolCode ?? "",
            retryable: loss.retryable,
          }),
    );
  };
  const onBrowserError = (event?: unknown): void => {
    const message = (event as { message?: unknown } | undefined)?.message;
    const detail = typeof message === "string" && message !== "" ? message : undefined;
    browserError ??= { detail, timer: setTimeout(() => onError(event), ERROR_CLOSE_WAIT_MS) };
  };
  const onError = (err?: unknown): void => {
    // `ws` refuses a message past its maxPayload while it arrives, closes with 1009, and says so.
    const code = (err as { code?: unknown } | undefined)?.code;
    if (code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") {
      queue.fail(payloadTooLarge(undefined, undefined, MESSAGE_TOO_BIG));
      return;
    }
    const detail = (err as { message?: unknown } | undefined)?.message;
    queue.fail(
      new PosthornError(
        "ConnectionFailed",
        `the WebSocket failed${typeof detail === "string" ? `: ${detail}` : ""}`,
        err === undefined ? {} : { cause: err },
      ),
    );
  };
  if (node) {
    // What arrived on a connectWebSocket or a server's socket before any subscriber listened
    // comes first, in order (nothing can arrive in between: this runs in one go), then what was
    // dropped past the hold's bound, as a delivery that says so.
    const early = takeEarly(node);
    if (early !== undefined) {
      for (const data of early.data) receive(data);
      if (early.dropped > 0) {
        deliver(
          { body: new Uint8Array(0), contentType, properties: {} },
          undefined,
          new PosthornError(
            "PayloadTooLarge",
            `${early.dropped} WebSocket message(s) arrived before the socket's first subscriber, past the ${early.data.length} (${early.bytes} bytes) held for it (at most ${DEFAULT_MAX_PENDING} messages, DEFAULT_MAX_PENDING, and maxHeldBytes, ${early.maxBytes} bytes), and were dropped; make the subscriber sooner after the socket opens, or raise maxHeldBytes where the socket is made`,
          ),
        );
      }
    }
    node.on("message", onNodeMessage);
    node.on("close", onNodeClose);
    node.on("error", onError);
  } else {
    socket.binaryType = "arraybuffer";
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", onClose);
    socket.addEventListener("error", onBrowserError);
  }
  // A socket that closed before this call (a peer gone while the application awaited something
  // before subscribing) will not emit close again: waiting for it would hang the first pull. How it
  // closed is known where the binding watched the socket before (ws).
  if (socket.readyState === CLOSED) ended(lossOf(socket));

  const close = async (): Promise<void> => {
    // The socket is the caller's: it is not left unread for whoever listens next.
    if (paused) resume();
    if (node) {
      node.off("message", onNodeMessage);
      node.off("close", onNodeClose);
      node.off("error", onError);
    } else {
      socket.removeEventListener("message", onMessage);
      socket.removeEventListener("close", onClose);
      socket.removeEventListener("error", onBrowserError);
      if (browserError !== undefined) clearTimeout(browserError.timer);
    }
    queue.end();
  };
  return {
    capabilities: WEBSOCKET_CAPABILITIES,
    // The listeners are on the socket already: a frame that arrives from now on is delivered.
    ready: Promise.resolve(),
    // Leaving a loop closes the subscriber (core's contract): its listeners go, the socket stays.
    [Symbol.asyncIterator]: () => closeOnReturn(queue[Symbol.asyncIterator](), close),
    close,
  };
}

/** The default `timeoutMs` of {@link connectWebSocket}: 10 seconds. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/**
 * Options of {@link connectWebSocket}.
 *
 * @typeParam S - the socket `WebSocket` makes
 */
export interface ConnectWebSocketOptions<S extends WebSocketLike = WebSocketLike> {
  /** Formats offered, in order of preference (their subprotocols go in `Sec-WebSocket-Protocol`). */
  formats: readonly EventFormat[];
  /** The constructor: `WebSocket` from `ws` in Node; defaults to the global `WebSocket`. */
  WebSocket?: WebSocketConstructor<S>;
  /**
   * How long to wait for the connection to open before failing with `Timeout` and closing the
   * socket. Default {@link DEFAULT_CONNECT_TIMEOUT_MS}; `Infinity` (or anything past what a timer
   * holds, `MAX_TIMER_MS`) waits with no limit; 0 fails with `Timeout` at once, attempting no
   * connection.
   */
  timeoutMs?: number;
  /**
   * Gives up on connecting: aborted before the socket opens, the socket is closed and the call
   * fails with `Aborted`; aborted before the call, no connection is attempted. Once the call has
   * resolved, the socket is the caller's and the signal does nothing to it.
   */
  abortSignal?: AbortSignal;
  /**
   * With `ws`: ping the server this often, and terminate the socket when by the next ping it
   * answered nothing, sent nothing else and took none of the bytes waiting for it (see
   * {@link WebSocketBindingOptions.heartbeatMs}).
   * Default {@link DEFAULT_HEARTBEAT_MS}; `0` or `Infinity`: no heartbeat; other than 0, at least
   * `MIN_HEARTBEAT_MS`. A browser's `WebSocket` cannot ping, so there it has no effect.
   */
  heartbeatMs?: number;
  /**
   * Largest message the socket accepts, given to `ws` as `maxPayload` (browsers set their own
   * limits), and the default of the socket's subscribers and publishers. Default {@link DEFAULT_MAX_PAYLOAD_BYTES}.
   * Past it `ws` closes the connection with 1009 and the subscriber's iteration fails with
   * `PayloadTooLarge`. A whole number, 1 or more
   * (`ws` would take 0 for no limit), or `Infinity` for no limit.
   */
  maxPayloadBytes?: number;
  /**
   * With `ws`: most bytes of what arrives before the socket's first subscriber that are held for
   * it (as well as at most {@link DEFAULT_MAX_PENDING} messages); from the first message past
   * either bound on, they are dropped and counted, and the first subscriber gets one delivery with
   * `error` `PayloadTooLarge` saying how many. Default {@link DEFAULT_MAX_HELD_BYTES} (1 MiB); 0
   * holds nothing (a socket that only publishes), `Infinity` bounds only the count.
   */
  maxHeldBytes?: number;
}

/**
 * Opens a client WebSocket offering the CloudEvents subprotocols of `formats`, and resolves when
 * it is open with one of them negotiated.
 *
 * @typeParam S - the socket type: `ws`'s `WebSocket` when `options.WebSocket` is `ws`'s class
 * @param url - the server's `ws:` or `wss:` URL
 * @param options - the formats to offer, the constructor, the open timeout (default 10 s), an
 *   `abortSignal`, `maxPayloadBytes` and, with `ws`, `heartbeatMs` (default 30 s) and
 *   `maxHeldBytes` (default 1 MiB)
 * @returns the open socket, of the type `options.WebSocket` makes, for {@link webSocketPublisher}
 *   and {@link webSocketSubscriber}. With `ws`, what arrives on it before its first subscriber is
 *   made (up to {@link DEFAULT_MAX_PENDING} messages and `maxHeldBytes`) is held for that
 *   subscriber, which hands it out first: `ws` drops a message nobody listens for. Past those
 *   bounds they are dropped, and the subscriber gets one delivery with `error` `PayloadTooLarge`
 *   saying how many
 * @throws {@link PosthornError} `ConnectionFailed` when the connection fails or the server refuses
 *   it (for instance because it speaks none of the offered subprotocols; not retryable for an
 *   answer other than 101, 408, 429 and 5xx, a TLS certificate not accepted, or a URL the
 *   constructor refuses), `NotSupported` when it
 *   opens without a CloudEvents subprotocol (then closed with 1002, 4002 on a browser's
 *   `WebSocket`, whose `close()` takes no 1002), there is no `WebSocket` to use, `formats` is empty or
 *   missing, a format has no
 *   WebSockets subprotocol, or before connecting for a `timeoutMs` that is not a number of 0 or
 *   more, a `heartbeatMs` that is not 0 or `MIN_HEARTBEAT_MS` or more, a `maxPayloadBytes` that is not a whole number of 1 or more (or
 *   `Infinity`), or a `maxHeldBytes` that is not a whole number of 0 or more (or `Infinity`); `Timeout`; `Aborted` when `abortSignal` fires first. Every failure is
 *   a rejection, none is thrown.
 *
 * @example
 * ```ts
 * import WebSocket from "ws"; // in browsers, leave `WebSocket` out
 * const socket = await connectWebSocket("ws://localhost:8080", { formats: [json], WebSocket });
 * await webSocketPublisher(socket, { formats: [json] }).publish(event);
 * ```
 */
export function connectWebSocket<S extends WebSocketLike = WebSocketLike>(
  url: string,
  options: ConnectWebSocketOptions<S>,
): Promise<S> {
  try {
    checkFormats(options?.formats);
  } catch (err) {
    return Promise.reject(err);
  }
  // Without options.WebSocket nothing infers S, so S is WebSocketLike: the global constructor's.
  const Ctor =
    options.WebSocket ??
    ((globalThis as { WebSocket?: WebSocketConstructor }).WebSocket as
      | WebSocketConstructor<S>
      | undefined);
  if (Ctor === undefined) {
    return Promise.reject(
      new PosthornError(
        "NotSupported",
        "no global WebSocket here; pass options.WebSocket (from ws)",
      ),
    );
  }
  let protocols: string[];
  try {
    protocols = offeredSubprotocols(options.formats);
  } catch (err) {
    // A format with no WebSocket subprotocol: rejected, as every other failure here is.
    return Promise.reject(err);
  }
  const signal = options.abortSignal;
  const aborted = (): PosthornError =>
    new PosthornError("Aborted", `connecting to ${url} was aborted`, { cause: signal?.reason });
  if (signal?.aborted) return Promise.reject(aborted());
  let maxPayload: number;
  try {
    checkTimeOption("timeoutMs", options.timeoutMs);
    checkHeartbeatMs(options.heartbeatMs);
    maxPayload = wsMaxPayload(options.maxPayloadBytes);
    checkCountOption("maxHeldBytes", options.maxHeldBytes, 0);
  } catch (err) {
    return Promise.reject(err);
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  // A limit already over, as for a publish: no connection is attempted.
  if (timeoutMs === 0) {
    return Promise.reject(new PosthornError("Timeout", `${url} did not open within 0 ms`));
  }
  return new Promise((resolve, reject) => {
    let socket: S;
    try {
      socket = new Ctor(url, protocols, { maxPayload });
    } catch (err) {
      // The constructor refuses what no retry mends: a URL it cannot use (a SyntaxError).
      reject(
        new PosthornError("ConnectionFailed", `cannot open ${url}: ${(err as Error).message}`, {
          cause: err,
          retryable: false,
        }),
      );
      return;
    }
    // Closing a socket still connecting (on timeout or abort) makes ws emit one more 'error', and
    // the peer can make it emit others once the socket is open: none may go unheard. The
    // heartbeat starts pinging once the socket is open.
    watch(socket, options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS);
    socketLimits.set(socket, options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES);
    // Settled first, then closed: nothing close() does may keep the call from settling.
    const giveUp = (err: PosthornError): void => {
      done();
      reject(err);
      closeQuietly(socket);
    };
    // No timer past what one holds (Infinity): waits with no limit.
    const timer = limitTimer(
      () => giveUp(new PosthornError("Timeout", `${url} did not open within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onAbort = (): void => giveUp(aborted());
    const onOpen = (): void => {
      done();
      try {
        negotiatedFormat(socket, options.formats);
      } catch (err) {
        // Open with a subprotocol offered besides ours (a WebSocket subclass that adds one). A
        // browser's close(1002) throws, and thrown here it left the call pending for ever (the
        // timer is cleared): rejected first, and closed with a code the socket can send.
        reject(err);
        closeQuietly(
          socket,
          isNodeWs(socket) ? PROTOCOL_ERROR : PROTOCOL_ERROR_BROWSER,
          "no CloudEvents subprotocol",
        );
        return;
      }
      // ws drops a message nobody listens for, and the first frames often come in the same read
      // as the handshake's answer, before the caller's await resumes: held for the first subscriber.
      if (isNodeWs(socket)) {
        holdEarly(socket as unknown as NodeWs, options.maxHeldBytes ?? DEFAULT_MAX_HELD_BYTES);
      }
      resolve(socket);
    };
    // ws's error events say what failed (message, error); a browser's say nothing.
    const onError = (event: WebSocketEventLike): void => {
      done();
      const error = event.error as { message?: unknown } | null | undefined;
      const detail =
        typeof event.message === "string"
          ? event.message
          : typeof error?.message === "string"
            ? error.message
            : "connection failed";
      const code = (error as { code?: unknown } | null | undefined)?.code;
      // A TLS certificate not accepted fails the same way until the configuration changes.
      const certificate = isCertificateErrorCode(code);
      const hint = certificate
        ? " (the server's certificate was not accepted: trust its CA by passing as options.WebSocket a subclass of ws's that adds { ca } (docs/bindings/websocket.md, Headers, TLS and other ws options), or fix the certificate. Retrying does not help)"
        : "";
      reject(
        new PosthornError(
          "ConnectionFailed",
          `WebSocket ${url} (offering ${protocols.join(", ")}) failed: ${detail}${hint}`,
          {
            cause: event.error ?? event,
            ...(typeof code === "string" ? { protocolCode: code } : {}),
            retryable: !certificate && !NOT_RETRYABLE_HANDSHAKE.test(detail),
          },
        ),
      );
    };
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.removeEventListener("open", onOpen);
      socket.removeEventListener("error", onError);
    };
    socket.addEventListener("open", onOpen);
    socket.addEventListener("error", onError);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

// ws's handshake failures that trying again cannot mend: the server answered the upgrade with
// something other than 101 (4xx refused it; a 2xx is a plain web page, a 3xx a redirect ws does
// not follow), or without a subprotocol, or with one that was not offered (it speaks none of
// ours). 408 (request timeout), 429 (too many requests) and 5xx say to come back later: those
// are retryable.
// The last is the WHATWG WebSocket of Node (undici) on a server that picked none of ours; a
// browser's error event says nothing, so there every failure stays retryable.
const NOT_RETRYABLE_HANDSHAKE =
  /Unexpected server response: (?!408|429|5\d\d)\d{3}|Server sent (no|an invalid|a) subprotocol|did not respond with sent protocols/;

/** What {@link webSocketServerOptions} returns: options to spread into `new WebSocketServer()`. */
export interface WebSocketServerCloudEventsOptions {
  /** Largest message accepted; past it `ws` closes the connection with 1009. */
  maxPayload: number;
  /** Picks the first subprotocol the client offered that names one of the formats. */
  handleProtocols(protocols: Set<string>, request: unknown): string | false;
  /** Refuses the handshake with 400 when the client offers no known subprotocol. */
  verifyClient(
    info: {
      /** The upgrade request. */
      req: {
        /** Its headers; `sec-websocket-protocol` is read. */
        headers: Readonly<Record<string, string | string[] | undefined>>;
      };
    },
    callback: (result: boolean, code?: number, message?: string) => void,
  ): void;
}

/**
 * Options for a `ws` `WebSocketServer` that speaks the CloudEvents subprotocols of `formats`:
 * the server picks the client's first offered subprotocol it knows, and refuses a client that
 * offers none with `400 Bad Request` and a message naming the subprotocols it would accept.
 * Messages past `maxPayloadBytes` (default {@link DEFAULT_MAX_PAYLOAD_BYTES}; the sockets'
 * subscribers and publishers take it as theirs unless given their own) close the connection
 * with 1009. What a client sends before its socket's first subscriber is held for that subscriber
 * as on a {@link connectWebSocket} socket (up to {@link DEFAULT_MAX_PENDING} messages and
 * `maxHeldBytes`, then a `PayloadTooLarge` delivery counting the dropped ones), so the
 * `connection` handler may await before it subscribes.
 *
 * @param formats - the formats the server speaks
 * @param options - `maxPayloadBytes`, the largest message accepted: a whole number, 1 or more
 *   (`ws` takes 0 for no limit), or `Infinity` for none; `maxHeldBytes`, the most bytes held for a
 *   socket's first subscriber (default {@link DEFAULT_MAX_HELD_BYTES}, 1 MiB; 0 holds nothing,
 *   for servers whose sockets only publish): a whole number, 0 or more, or `Infinity`
 * @throws {@link PosthornError} `NotSupported` for any other `maxPayloadBytes` or `maxHeldBytes`,
 *   for an empty or missing `formats`, and for a format with no WebSockets subprotocol
 * @example
 * ```ts
 * const wss = new WebSocketServer({ port: 8080, ...webSocketServerOptions([json, avro]) });
 * wss.on("connection", (socket) => consume(webSocketSubscriber(socket, { formats: [json, avro] })));
 * ```
 */
export function webSocketServerOptions(
  formats: readonly EventFormat[],
  options: { maxPayloadBytes?: number; maxHeldBytes?: number } = {},
): WebSocketServerCloudEventsOptions {
  const maxPayload = wsMaxPayload(options.maxPayloadBytes);
  const maxHeldBytes =
    checkCountOption("maxHeldBytes", options.maxHeldBytes, 0) ?? DEFAULT_MAX_HELD_BYTES;
  const limit = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  const known = new Set(offeredSubprotocols(formats));
  const pick = (offered: Iterable<string>): string | false => {
    for (const p of offered) if (known.has(p)) return p;
    return false;
  };
  return {
    maxPayload,
    handleProtocols(protocols, request) {
      // ws calls this once per accepted handshake, with the request whose TCP socket the new ws
      // socket takes: the socket's subscribers then default to this limit.
      const tcp = (request as { socket?: unknown } | undefined)?.socket;
      if (typeof tcp === "object" && tcp !== null) {
        socketLimits.set(tcp, limit);
        // What the client sends before the application's subscriber is held for it, as on a
        // connectWebSocket socket.
        holdAccepted(tcp, maxHeldBytes);
      }
      return pick(protocols);
    },
    verifyClient(info, callback) {
      const header = info.req.headers["sec-websocket-protocol"];
      const text = Array.isArray(header) ? header.join(",") : (header ?? "");
      const offered = text
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
      if (pick(offered) !== false) callback(true);
      else {
        callback(
          false,
          400,
          `no CloudEvents subprotocol offered; this server accepts ${[...known].join(", ")}`,
        );
      }
    },
  };
}
