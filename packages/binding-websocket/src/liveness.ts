import { MAX_TIMER_MS, PosthornError, quoted } from "@posthorn/core";
import type { WebSocketLike } from "./connection.js";

/**
 * The default `heartbeatMs` of {@link connectWebSocket}, {@link webSocketPublisher} and
 * {@link webSocketSubscriber}: 30 seconds. A peer gone without a trace is noticed within about
 * twice that.
 */
export const DEFAULT_HEARTBEAT_MS = 30_000;

const OPEN = 1;
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
  ping(): void;
  terminate(): void;
  // Since ws 8.? (absent in the oldest 8.x): stop and restart reading the TCP socket.
  pause?(): void;
  resume?(): void;
  readonly isPaused?: boolean;
}

/** Whether `socket` is a `ws` socket (an EventEmitter) rather than a browser's `WebSocket`. */
export function isNodeWs(socket: WebSocketLike): boolean {
  return typeof (socket as unknown as { on?: unknown }).on === "function";
}

/** What the binding keeps for each `ws` socket it touched. */
interface Watch {
  readonly socket: NodeWs & WebSocketLike;
  /** The heartbeat's interval, once someone chose one (0: none). */
  heartbeatMs: number | undefined;
  timer: ReturnType<typeof setInterval> | undefined;
  /** A ping went out and nothing has been heard since. */
  awaiting: boolean;
  /** What the TCP socket had read when that ping went out. */
  read: number | undefined;
  /** Why the connection was lost, once it is known: the heartbeat, or an abnormal close. */
  lost: PosthornError | undefined;
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
 * - A heartbeat: a ping every `heartbeatMs`; when neither a pong nor anything else arrived between
 *   one ping and the next tick, the peer is taken for gone (vanished without FIN or RST, which TCP
 *   alone notices only after many minutes, if ever) and the socket is terminated, so that
 *   publishes waiting on it fail and subscribers end with `ConnectionFailed`. The timer is unref'd
 *   and cleared when the socket closes.
 * - Why the connection was lost, for a publish or subscriber that comes later.
 *
 * @param socket - the socket
 * @param heartbeatMs - the interval: sets it anew when given and different; when not, the socket
 *   keeps the one it has, or gets {@link DEFAULT_HEARTBEAT_MS}. `0` or anything past what a timer
 *   holds (`Infinity`) means no heartbeat.
 */
export function watch(socket: WebSocketLike, heartbeatMs: number | undefined): void {
  if (!isNodeWs(socket)) return;
  let w = watches.get(socket);
  if (w === undefined) {
    const node = socket as unknown as NodeWs & WebSocketLike;
    const created: Watch = {
      socket: node,
      heartbeatMs: undefined,
      timer: undefined,
      awaiting: false,
      read: undefined,
      lost: undefined,
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
    });
  } else if (heartbeatMs === undefined || heartbeatMs === w.heartbeatMs) {
    // Restarting an unchanged interval would put the next ping off: a publisher made for every
    // event would keep the heartbeat from ever beating.
    return;
  }
  startHeartbeat(w, heartbeatMs ?? DEFAULT_HEARTBEAT_MS);
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
}

function stopHeartbeat(w: Watch): void {
  if (w.timer !== undefined) clearInterval(w.timer);
  w.timer = undefined;
  w.awaiting = false;
}

function beat(w: Watch, ms: number): void {
  const socket = w.socket;
  // Connecting: connectWebSocket's timeout has it. Closing: ws's own close timer has it.
  if (socket.readyState !== OPEN) return;
  // Paused (the subscriber's flow control): the peer's pong waits unread, so silence says nothing.
  if (socket.isPaused === true) {
    w.awaiting = false;
    return;
  }
  // Any byte read counts as hearing from the peer: a pong stuck behind a large message is late
  // through no fault of the peer. One number per interval, nothing per message.
  const read = (socket as unknown as { _socket?: { bytesRead?: number } })._socket?.bytesRead;
  if (w.awaiting && read === w.read) {
    w.lost = new PosthornError(
      "ConnectionFailed",
      `the WebSocket peer answered no ping within heartbeatMs (${ms} ms) and sent nothing else: the connection was taken for lost and terminated`,
      { retryable: true },
    );
    stopHeartbeat(w);
    socket.terminate();
    return;
  }
  w.awaiting = true;
  w.read = read;
  socket.ping();
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
