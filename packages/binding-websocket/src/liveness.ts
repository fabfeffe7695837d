import { checkTimeOption, MAX_TIMER_MS, PosthornError, quoted } from "@posthorn/core";
import type { WebSocketLike } from "./connection.js";

/**
 * The default `heartbeatMs` of {@link connectWebSocket}, {@link webSocketPublisher} and
 * {@link webSocketSubscriber}: 30 seconds. A peer gone without a trace is noticed within about
 * twice that of the last byte it took.
 */
export const DEFAULT_HEARTBEAT_MS = 30_000;

/**
 * The smallest `heartbeatMs` other than 0 (no heartbeat): 100 ms. The heartbeat takes a peer that
 * is silent for a whole interval for gone, and a live one is silent while its event loop is busy
 * (decoding a large message, collecting garbage): below this a peer busy for 30 ms was given up,
 * and at 1 ms an idle one over loopback, with a ping every millisecond. A smaller value is more
 * likely seconds written as milliseconds than a wish.
 */
export const MIN_HEARTBEAT_MS = 100;

/**
 * Checks a `heartbeatMs` option: a number of milliseconds, 0 or {@link MIN_HEARTBEAT_MS} or more
 * (`Infinity` or anything past what a timer holds: no heartbeat, as 0).
 *
 * @param value - the option as given; `undefined` passes
 * @throws {@link PosthornError} `NotSupported` (`attribute` `heartbeatMs`) naming the floor and the value
 */
export function checkHeartbeatMs(value: number | undefined): void {
  checkTimeOption("heartbeatMs", value);
  if (value !== undefined && value > 0 && value < MIN_HEARTBEAT_MS) {
    throw new PosthornError(
      "NotSupported",
      `heartbeatMs must be 0 (no heartbeat) or ${MIN_HEARTBEAT_MS} or more (a peer silent for one interval is taken for gone, and a live one is silent while busy), got ${value}`,
      { attribute: "heartbeatMs" },
    );
  }
}

const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

// The `ws` package's socket: an EventEmitter whose `send` takes options and a callback, whose
// 'message' listener gets Buffers without a text conversion, and that can ping.
export interface NodeWs {
  on(
    event: "message",
    listener: (data: Uint8Array | ArrayBuffer | Uint8Array[], isBinary: boolean) => void,
  ): unknown;
  on(event: "close", listener: (code: number, reason: Uint8Array) => void): unknown;
  on(event: "error", listener: (err?: unknown) => void): unknown;
  on(event: "pong", listener: () => void): unknown;
  once(event: "close", listener: (code: number, reason: Uint8Array) => void): unknown;
  off(event: string, listener: (...args: never[]) => void): unknown;
  send(data: Uint8Array, options: { binary: boolean }, cb: (err?: Error) => void): void;
  ping(data?: undefined, mask?: undefined, cb?: (err?: Error | null) => void): void;
  pong(): void;
  terminate(): void;
  // Since ws 8.3.0, the oldest in the peer range: stop and restart reading the TCP socket.
  pause?(): void;
  resume?(): void;
  readonly isPaused?: boolean;
}

/** Whether `socket` is a `ws` socket (an EventEmitter) rather than a browser's `WebSocket`. */
export function isNodeWs(socket: WebSocketLike): boolean {
  return typeof (socket as unknown as { on?: unknown }).on === "function";
}

/** What the binding keeps for each `ws` socket it touched. */
export interface Watch {
  readonly socket: NodeWs & WebSocketLike;
  /** The heartbeat's interval, once someone chose one (0: none). */
  heartbeatMs: number | undefined;
  timer: ReturnType<typeof setInterval> | undefined;
  /** While the socket is paused: tells the peer, every half interval, that this side lives. */
  announcer: ReturnType<typeof setInterval> | undefined;
  /** A ping went out and nothing has been heard since. */
  awaiting: boolean;
  /** What the TCP socket had read when that ping went out. */
  read: number | undefined;
  /**
   * `bufferedAmount` just after that ping was handed to `ws`: more than 0 when the ping could not
   * go out at once, waiting behind bytes of ours that the peer had not yet taken.
   */
  buffered: number;
  /** Since that ping went out, `ws` finished writing something of ours (a frame, a ping). */
  wrote: boolean;
  /** Since that ping went out, the socket was paused: the peer's answer may wait unread. */
  held: boolean;
  /** Why the connection was lost, once it is known: the heartbeat, or an abnormal close. */
  lost: PosthornError | undefined;
  /** How many subscribers hold the socket paused: it reads again once none does. */
  pausers: number;
  /**
   * Whether the socket's `close()` was wrapped to read on once called (see {@link readOnClose}):
   * once for the socket's life, however often it pauses.
   */
  closeWrapped: boolean;
  /** Takes the wrapper off again, once the socket has closed. */
  unwrapClose: (() => void) | undefined;
}

const watches = new WeakMap<WebSocketLike, Watch>();

/**
 * Looks after a `ws` socket for as long as it lives (a browser's socket needs none of this, and
 * cannot ping): once, the first time the binding touches it, and again to change its heartbeat.
 *
 * - One 'error' listener for good. `ws` emits 'error' for what the peer sends wrong (a text frame
 *   that is not UTF-8, a message past `maxPayload`, a bad frame) and closes the connection; an
 *   'error' event nobody listens to is thrown by Node and ends the process. With it, a socket that
 *   only publishes, or whose subscriber closed, just closes. (A browser's unheard error events
 *   throw nothing.)
 * - A heartbeat: a ping every `heartbeatMs`, and at the next tick a verdict on the peer (see
 *   {@link beat}): one that gave no sign of life is taken for gone (vanished without FIN or RST,
 *   which TCP alone notices only after many minutes, if ever) and the socket is terminated, so
 *   that publishes waiting on it fail and subscribers end with `ConnectionFailed`. The timer is
 *   unref'd and cleared when the socket closes.
 * - Why the connection was lost, for a publish or subscriber that comes later.
 *
 * @param socket - the socket
 * @param heartbeatMs - the interval: sets it anew when given and different; when not, the socket
 *   keeps the one it has, or gets {@link DEFAULT_HEARTBEAT_MS}. `0` or anything past what a timer
 *   holds (`Infinity`) means no heartbeat.
 * @returns what the binding keeps for the socket (for {@link markWritten}); `undefined` for a
 *   browser's socket
 */
export function watch(socket: WebSocketLike, heartbeatMs: number | undefined): Watch | undefined {
  if (!isNodeWs(socket)) return undefined;
  let w = watches.get(socket);
  if (w === undefined) {
    const node = socket as unknown as NodeWs & WebSocketLike;
    const created: Watch = {
      socket: node,
      heartbeatMs: undefined,
      timer: undefined,
      announcer: undefined,
      awaiting: false,
      read: undefined,
      buffered: 0,
      wrote: false,
      held: false,
      lost: undefined,
      pausers: 0,
      closeWrapped: false,
      unwrapClose: undefined,
    };
    w = created;
    watches.set(socket, created);
    node.on("error", ignoreEvent);
    node.on("pong", () => {
      created.awaiting = false;
    });
    node.once("close", (code, reason) => {
      stopHeartbeat(created);
      created.lost ??= closeLoss(code, reason);
      created.pausers = 0;
      created.unwrapClose?.();
    });
  } else if (heartbeatMs === undefined || heartbeatMs === w.heartbeatMs) {
    // Restarting an unchanged interval would put the next ping off: a publisher made for every
    // event would keep the heartbeat from ever beating.
    return w;
  }
  startHeartbeat(w, heartbeatMs ?? DEFAULT_HEARTBEAT_MS);
  return w;
}

/**
 * Tells the heartbeat that `ws` wrote one of the binding's frames: the peer is taking bytes, a
 * sign of life while a ping waits behind them. One property set per frame.
 *
 * @param w - what {@link watch} returned for the socket
 */
export function markWritten(w: Watch): void {
  w.wrote = true;
}

/**
 * Stops reading `socket` (the subscriber's flow control), for one subscriber: until each one that
 * paused it has called {@link resumeReading}, since `ws`'s own pause is one flag, and one
 * subscriber resuming it would let the peer flood another that is still full. Its heartbeat then
 * gives no verdict, since the peer's answers wait unread, and tells the peer this side lives (see
 * {@link hold}) until reading resumes; the check starts over with the first ping after that.
 *
 * @param socket - a `ws` socket that can pause
 */
export function pauseReading(socket: NodeWs & WebSocketLike): void {
  // A closing socket reads on: the peer's close frame waits behind what it sent (see readOnClose).
  if (socket.readyState !== OPEN) return;
  const w = watches.get(socket);
  if (w !== undefined) {
    w.pausers++;
    readOnClose(w);
  }
  socket.pause?.();
  if (w !== undefined) hold(w);
}

/**
 * Makes the socket read again as soon as the application calls its `close()` while subscribers
 * hold it paused. `ws` sends the close frame and waits for the peer's, which arrives behind the
 * frames the peer sent before it, unread while paused: the closing handshake never completed, and
 * `ws`'s close timeout (30 s) destroyed the connection, so the subscribers failed with 1006 and
 * the frames in flight were lost. Reading on, they join the subscribers' queues (no more than the
 * peer sent before it saw the close frame), and the peer's close frame then ends iteration
 * cleanly. `ws` says nothing when `close()` is called, so the socket's own method is wrapped, once,
 * on the first pause; `terminate()` needs nothing, as it ends the connection at once.
 */
function readOnClose(w: Watch): void {
  if (w.closeWrapped) return;
  w.closeWrapped = true;
  const socket = w.socket;
  const close = socket.close;
  // Usually ws's own method, on the prototype; the application's, where it set one.
  const own = Object.hasOwn(socket, "close");
  const wrapper = (...args: Parameters<WebSocketLike["close"]>): void => {
    Reflect.apply(close, socket, args);
    if (w.pausers > 0 && socket.readyState === CLOSING) {
      w.pausers = 0;
      socket.resume?.();
    }
  };
  socket.close = wrapper;
  // Once closed, nothing is left of it: the socket's close() is what it was before (unless
  // someone replaced the wrapper since, whose method stays).
  w.unwrapClose = () => {
    w.unwrapClose = undefined;
    if (socket.close !== wrapper) return;
    if (own) socket.close = close;
    else delete (socket as Partial<WebSocketLike>).close;
  };
}

/**
 * Undoes one {@link pauseReading}: the socket reads again once no subscriber holds it paused.
 *
 * @param socket - a `ws` socket paused by {@link pauseReading}
 */
export function resumeReading(socket: NodeWs & WebSocketLike): void {
  const w = watches.get(socket);
  if (w !== undefined && w.pausers > 0 && --w.pausers > 0) return;
  socket.resume?.();
}

function startHeartbeat(w: Watch, ms: number): void {
  stopHeartbeat(w);
  w.heartbeatMs = ms;
  // A closed socket emits no 'close' again, which is what would clear the timer.
  if (!(ms > 0) || ms > MAX_TIMER_MS || w.socket.readyState === CLOSED) return;
  const timer = setInterval(beat, ms, w, ms);
  // Node's timers can let the process exit; other runtimes' may not have unref.
  (timer as { unref?: () => unknown }).unref?.();
  w.timer = timer;
  // Set anew while paused: stopHeartbeat cleared the unsolicited pongs, and the first beat would
  // restart them only an interval later, while the peer, which hears nothing else from a side
  // that does not read, gave it up meanwhile. They go on at once, at the new pace.
  if (w.socket.isPaused === true) hold(w);
}

function stopHeartbeat(w: Watch): void {
  if (w.timer !== undefined) clearInterval(w.timer);
  if (w.announcer !== undefined) clearInterval(w.announcer);
  w.timer = undefined;
  w.announcer = undefined;
  w.awaiting = false;
}

/**
 * One tick of the heartbeat. The peer is alive, and gets the next ping, when since the last ping:
 *
 * 1. anything was read from it: a pong, a frame, any byte of one (a pong stuck behind a large
 *    message is late through no fault of the peer);
 * 2. or this side paused reading at some time: the peer's answer may wait unread, so its silence
 *    says nothing (the check starts over with the next ping once reading resumes);
 * 3. or that ping could not go out at once, because the peer had not yet taken bytes of ours
 *    (`bufferedAmount` was more than 0 once it was handed to `ws`), and in the interval `ws`
 *    finished writing something of ours (a frame, a ping) or `bufferedAmount` fell: the peer is
 *    taking our bytes, only slowly, and its pong waits behind them.
 *
 * Otherwise it is taken for gone: it answered nothing, sent nothing, and took nothing of what
 * waited for it for a whole interval. Even a peer that reads nothing is still acknowledged by its
 * kernel until its buffers fill, so a stopped process or a dead path is noticed about two intervals
 * after the last byte it took. While this side is paused it sends no ping (the pong could not be
 * read) but tells the peer it lives ({@link hold}).
 */
function beat(w: Watch, ms: number): void {
  const socket = w.socket;
  // Connecting: connectWebSocket's timeout has it. Closing: ws's own close timer has it.
  if (socket.readyState !== OPEN) return;
  if (socket.isPaused === true) {
    hold(w);
    return;
  }
  // Read as numbers once per interval, nothing per message.
  const read = (socket as unknown as { _socket?: { bytesRead?: number } })._socket?.bytesRead;
  const buffered = socket.bufferedAmount ?? 0;
  const draining = w.buffered > 0 && (w.wrote || buffered < w.buffered);
  if (w.awaiting && !w.held && read === w.read && !draining) {
    w.lost = new PosthornError(
      "ConnectionFailed",
      `the WebSocket peer answered no ping within heartbeatMs (${ms} ms) and sent nothing else${w.buffered > 0 ? `, nor took any of the ${w.buffered} bytes waiting for it` : ""}: the connection was taken for lost and terminated`,
      { retryable: true },
    );
    stopHeartbeat(w);
    socket.terminate();
    return;
  }
  w.awaiting = true;
  w.held = false;
  w.read = read;
  w.wrote = false;
  socket.ping(undefined, undefined, (err) => {
    if (!err) w.wrote = true;
  });
  // A ping the kernel took at once waits behind nothing of this process's; one it could not is
  // counted here, and its own write, once done, shows that the peer took bytes.
  w.buffered = socket.bufferedAmount ?? 0;
}

/**
 * While the socket is paused: no verdict (the peer's pongs wait unread), and an unsolicited pong
 * (RFC 6455 5.5.3: a unidirectional heartbeat, no answer expected) now and every half interval
 * until reading resumes, so that the peer's heartbeat, whose pings this side cannot answer, hears
 * from it: this binding's, and any that counts a pong as life. Half an interval, so that every
 * interval of a peer with the same `heartbeatMs` holds one whatever the two timers' phase. A stopped
 * process sends none, so the peer still notices that.
 */
function hold(w: Watch): void {
  w.held = true;
  w.awaiting = false;
  const ms = w.heartbeatMs;
  if (w.timer === undefined || w.announcer !== undefined || ms === undefined) return;
  announce(w);
  const announcer = setInterval(() => {
    if (w.socket.isPaused === true && w.socket.readyState === OPEN) announce(w);
    else {
      clearInterval(announcer);
      w.announcer = undefined;
    }
  }, ms / 2);
  (announcer as { unref?: () => unknown }).unref?.();
  w.announcer = announcer;
}

function announce(w: Watch): void {
  if (w.socket.readyState === OPEN) w.socket.pong();
}

/**
 * Why the connection of `socket` was lost, when the binding knows: its heartbeat gave the peer
 * up, or it closed abnormally. `undefined` for a clean close, a socket still open, and a browser's
 * socket (see {@link closeLoss} for those).
 *
 * @param socket - the socket
 */
export function lossOf(socket: WebSocketLike): PosthornError | undefined {
  return watches.get(socket)?.lost;
}

// Close codes that end a connection cleanly: the peer is done (1000), going away (1001), or
// closed with a closing handshake and no code (1005, what `close()` without arguments sends).
const CLEAN_CLOSE: ReadonlySet<number> = new Set([1000, 1001, 1005]);

// RFC 6455 7.4.1 and the IANA registry: what the other codes mean.
const CLOSE_CODE_MEANING: Readonly<Record<number, string>> = {
  1002: "protocol error",
  1003: "unsupported data",
  1006: "no closing handshake: the connection was lost",
  1007: "invalid frame payload data",
  1008: "policy violation",
  1009: "message too big",
  1010: "mandatory extension missing",
  1011: "internal error",
  1012: "service restart",
  1013: "try again later",
  1014: "bad gateway",
  1015: "TLS handshake failed",
};

/**
 * What a close with `code` means for whoever waits on the connection: `undefined` for a clean
 * close (1000, 1001, 1005), `ConnectionFailed` (retryable, the code in `protocolCode`) for every
 * other code, an application's own (3000-4999) included, since the binding cannot tell what those
 * mean. The heartbeat's verdict, when it terminated the socket, comes first.
 *
 * @param code - the close code (`ws`'s 'close' argument, a browser's `CloseEvent.code`)
 * @param reason - the close reason, as text or as `ws`'s bytes
 * @param socket - the socket, whose heartbeat may have given the peer up
 */
export function closeLoss(
  code: unknown,
  reason: unknown,
  socket?: WebSocketLike,
): PosthornError | undefined {
  const known = socket === undefined ? undefined : lossOf(socket);
  if (known !== undefined) return known;
  if (typeof code !== "number" || CLEAN_CLOSE.has(code)) return undefined;
  const text =
    typeof reason === "string"
      ? reason
      : reason instanceof Uint8Array
        ? new TextDecoder().decode(reason)
        : "";
  const meaning = CLOSE_CODE_MEANING[code];
  return new PosthornError(
    "ConnectionFailed",
    `the WebSocket closed with ${code}${meaning === undefined ? "" : ` (${meaning})`}${text ? `: ${quoted(text)}` : ""}`,
    { protocolCode: code, retryable: true },
  );
}

/**
 * `message`, followed by why the connection was lost where that is known: for the errors of a
 * publish on a socket that is gone.
 *
 * @param socket - the socket
 * @param message - what failed
 */
export function withLoss(socket: WebSocketLike, message: string): string {
  const lost = lossOf(socket);
  return lost === undefined ? message : `${message}: ${lost.message}`;
}

function ignoreEvent(): void {}
