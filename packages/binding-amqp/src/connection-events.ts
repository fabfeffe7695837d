import type { CorkableStream } from "@posthorn/core";
import { limitTimer, PosthornError } from "@posthorn/core";
import type { Connection, EventContext, Receiver, Sender, Session } from "rhea";

const MARK = Symbol.for("posthorn.amqp.listener");

type Marked = ((context: EventContext) => void) & { [MARK]?: true };

/** Posthorn's handlers of one connection's events: one rhea listener per event, for them all. */
const hubs = new WeakMap<Connection, Map<string, Set<(context: EventContext) => void>>>();

/**
 * Listens to a connection event without taking it away from the application. rhea hands an
 * event to the connection's listeners when it has any, and only otherwise to the container's; so
 * while Posthorn's are the only ones on the connection, the event is passed on to the container
 * as rhea would have done.
 *
 * Every publisher and subscriber on the connection shares one listener per event: a listener
 * each made Node warn of a possible memory leak (`MaxListenersExceededWarning`) at the eleventh
 * publisher or subscriber on one connection.
 *
 * @returns a function that removes the listener
 */
export function observeConnection(
  connection: Connection,
  event: "disconnected" | "connection_close" | "connection_error",
  handler: (context: EventContext) => void,
): () => void {
  let byEvent = hubs.get(connection);
  if (byEvent === undefined) {
    byEvent = new Map();
    hubs.set(connection, byEvent);
  }
  let handlers = byEvent.get(event);
  if (handlers === undefined) {
    const set = new Set<(context: EventContext) => void>();
    handlers = set;
    byEvent.set(event, set);
    const listener: Marked = (context: EventContext) => {
      const others = connection.listeners(event).some((l) => (l as Marked)[MARK] !== true);
      // A handler may remove itself (or another) while they run: each of those present now runs.
      for (const h of [...set]) h(context);
      if (!others) {
        const handled = containerOf(connection)?.dispatch?.(event, context) === true;
        if (!handled && event === "connection_close") unhandledClose(connection, context);
      }
    };
    listener[MARK] = true;
    connection.on(event, listener);
    hubListeners.set(set, listener);
  }
  // A wrapper of its own, so that one function observing twice is removed once per call.
  const entry = (context: EventContext): void => handler(context);
  const set = handlers;
  set.add(entry);
  return () => {
    if (!set.delete(entry) || set.size > 0) return;
    const listener = hubListeners.get(set);
    if (listener !== undefined) connection.removeListener(event, listener);
    hubListeners.delete(set);
    if (byEvent.get(event) === set) byEvent.delete(event);
  };
}

/** The rhea listener of each set of handlers in `hubs`. */
const hubListeners = new WeakMap<Set<(context: EventContext) => void>, Marked>();

interface RheaContainer {
  dispatch?: (name: string, ...args: unknown[]) => boolean;
  listenerCount?: (name: string) => number;
}

function containerOf(connection: Connection): RheaContainer | undefined {
  return (connection as unknown as { container?: RheaContainer }).container;
}

/** Whether anyone but Posthorn listens for `event` on the connection or its container. */
function othersListen(connection: Connection, event: string): boolean {
  if (connection.listeners(event).some((l) => (l as Marked)[MARK] !== true)) return true;
  return (containerOf(connection)?.listenerCount?.(event) ?? 0) > 0;
}

/**
 * rhea raises `error` when the peer closes the connection with a fatal error and nobody listens
 * for `connection_error` or `connection_close`. Posthorn's `connection_close` listener counts as
 * one, so an application whose container listens for `error` still gets it from here.
 */
function unhandledClose(connection: Connection, context: EventContext): void {
  const error = (context as { error?: { condition?: unknown; description?: unknown } }).error;
  if (error === undefined || !isFatal(connection, error.condition)) return;
  if (othersListen(connection, "connection_error")) return;
  const raised = Object.assign(new Error(String(error.description ?? error.condition)), {
    name: "ConnectionError",
    condition: error.condition,
    description: error.description,
    connection,
  });
  // Through the connection, as rhea would: its own listeners first, then the guard's forward.
  guardErrors(connection);
  (connection as unknown as { emit(name: string, err: unknown): boolean }).emit("error", raised);
}

function isFatal(connection: Connection, condition: unknown): boolean {
  const c = connection as unknown as { _is_fatal?: (condition: unknown) => boolean };
  return c._is_fatal?.(condition) ?? true;
}

const MISSING_ERROR = { condition: "amqp:connection:forced", description: "disconnected" };
const CLOSED = { condition: "amqp:connection:forced", description: "the connection was closed" };

/** How a connection went away, for a publisher or subscriber on it. */
export interface ConnectionLoss {
  /** The AMQP error or socket error, or a stand-in `amqp:connection:forced` one. */
  readonly error: unknown;
  /** Whether rhea reconnects (and re-attaches the link) after this. */
  readonly reconnecting: boolean;
  /**
   * Whether the application closed the connection (`connection.close()`) and the peer answered:
   * publishers and subscribers report `Closed` then, and `ConnectionFailed` for every other loss.
   */
  readonly byApplication: boolean;
}

/**
 * Whether the connection was closed on this side by the application, as opposed to by rhea
 * itself: rhea closes it after an idle timeout and when answering a peer's close with a non-fatal
 * error, and marks both with `closed_with_non_fatal_error` (a peer's fatal close is answered only
 * after `connection_close` was dispatched, while the connection is still open on this side).
 */
function closedByApplication(connection: Connection): boolean {
  const c = connection as unknown as {
    state?: { local_open?: boolean };
    closed_with_non_fatal_error?: boolean;
  };
  return c.state?.local_open === false && c.closed_with_non_fatal_error !== true;
}

/**
 * Why a publisher or subscriber made on `connection` now could never attach its link, if so:
 * the application already closed the connection and the peer answered (`Closed`; rhea does not
 * reopen it), or the connection dropped and will not come back by itself: rhea's `reconnect` is
 * off or gave up, or the peer refused the login (`ConnectionFailed`, not retryable: a new
 * connection is needed). Made on such a connection, a publish waited for its `timeoutMs` and a
 * subscriber's `ready` and iteration for ever.
 *
 * @param connection - the connection given
 * @param what - the publisher or subscriber, for the message (`the publisher to /queue/a`)
 * @returns the error to fail with at once, or `undefined` when the link may still attach
 */
export function deadConnection(connection: Connection, what: string): PosthornError | undefined {
  if (connection.is_closed() && closedByApplication(connection)) {
    return new PosthornError(
      "Closed",
      `the application closed the connection before ${what} was made`,
    );
  }
  if (dropped(connection) === "for good") {
    return new PosthornError(
      "ConnectionFailed",
      `the connection was lost before ${what} was made, and it does not reconnect (rhea's reconnect is off or gave up): open a new connection`,
      { retryable: false },
    );
  }
  return undefined;
}

/**
 * Makes a session begun while the connection waits to reconnect begin again once it is back.
 * rhea writes what a session or link opened in that gap sends into the dropped connection's
 * transport, which it replaces on reconnecting, and then counts those frames as sent: the link
 * never attached (a publish waited for its `timeoutMs`, a subscriber got nothing). Marked as
 * rhea marks the sessions and links open at the drop, they are begun and attached again with
 * the connection.
 *
 * @param connection - the connection the session is on
 * @param session - a session just begun, its links attached
 */
export function resumeWithConnection(connection: Connection, session: Session): void {
  if (dropped(connection) === "reconnecting") {
    (session as unknown as { _disconnect?: () => void })._disconnect?.();
  }
}

/**
 * Whether the connection dropped and what comes next, read off rhea's state: after a drop it is
 * no longer open locally though it was open before, and rhea has a reconnect timer set while it
 * will reconnect (cleared when it tries). `undefined` while it is open or opening.
 */
function dropped(connection: Connection): "reconnecting" | "for good" | undefined {
  const c = connection as unknown as {
    state?: { local_open?: unknown; was_open?: unknown };
    scheduled_reconnect?: unknown;
  };
  if (connection.is_open() || c.state?.local_open !== false || c.state.was_open !== true) {
    return undefined;
  }
  return c.scheduled_reconnect === undefined ? "for good" : "reconnecting";
}

/**
 * Calls `handler` when the connection is lost: the socket dropped (`disconnected`), or the
 * connection was closed, by the peer or by the application (`connection_close`). rhea reports a
 * closed connection only with `connection_close`: its socket ending afterwards is no
 * `disconnected`. Also keeps rhea's `error` events from ending the process
 * ({@link guardErrors}).
 *
 * @returns a function that removes the listeners
 */
export function observeConnectionLoss(
  connection: Connection,
  handler: (loss: ConnectionLoss) => void,
): () => void {
  guardErrors(connection);
  const stops = [
    // A socket lost before the peer answered a close counts as lost, whoever asked for the close.
    observeConnection(connection, "disconnected", (context) => {
      handler({
        error: context.error ?? MISSING_ERROR,
        reconnecting: context.reconnecting === true,
        byApplication: false,
      });
    }),
    observeConnection(connection, "connection_close", (context) => {
      const error = (context as { error?: { condition?: unknown } }).error;
      // A non-fatal condition (amqp:connection:forced by default) on a connection with reconnect
      // on and not closed by the application: rhea reconnects, as after a dropped socket.
      const options = (connection as unknown as { options?: { reconnect?: unknown } }).options;
      const localOpen = (connection as unknown as { state?: { local_open?: boolean } }).state
        ?.local_open;
      const reconnecting =
        error !== undefined &&
        Boolean(options?.reconnect) &&
        localOpen === true &&
        !isFatal(connection, error.condition);
      handler({
        error: error ?? CLOSED,
        reconnecting,
        byApplication: !reconnecting && closedByApplication(connection),
      });
    }),
  ];
  return () => {
    for (const stop of stops) stop();
  };
}

const guarded = new WeakSet<Connection>();

/**
 * Gives the connection one `error` listener for good (once per connection). rhea dispatches
 * `error` to the connection's listeners, else to the container's, where an `error` event nobody
 * listens for is thrown: from a socket callback, that ends the process. rhea raises one when it
 * cannot decode a frame or a message the peer sent (it then ends the connection, which publishers
 * and subscribers report as `ConnectionFailed`) and when the peer closes the connection with a
 * fatal error nobody handles. The listener passes the error on to the container when the
 * container has `error` listeners, and otherwise drops it.
 */
export function guardErrors(connection: Connection): void {
  if (guarded.has(connection)) return;
  guarded.add(connection);
  const forward = (err: unknown): void => {
    // Listeners of the application's own on the connection already got it from the emit.
    if (connection.listeners("error").some((l) => l !== forward)) return;
    const container = containerOf(connection);
    if ((container?.listenerCount?.("error") ?? 0) > 0) container?.dispatch?.("error", err);
  };
  connection.on("error", forward as never);
}

/**
 * Detaches a link Posthorn opened, then ends its session: waits for the peer's detach, at most
 * `detachTimeoutMs`, then for its end, at most `endTimeoutMs`. Nothing to do when the connection
 * or the session is already gone; a connection lost during a wait ends it.
 *
 * The link goes first. Ending a session with its link still attached while the broker was
 * sending on it, RabbitMQ 3.10 left about one end in fifty unanswered (its log shows the
 * session's internal channel failing to shut down), and the link stayed attached. It still leaves
 * about one in three hundred unanswered with the link detached: nothing waits on the session then
 * (its link and dispositions are done), so the wait for its end is short, and rhea keeps the
 * session until an answer comes or the connection closes.
 *
 * A link whose attach is not answered yet is detached once it is, the wait for that counting
 * against `detachTimeoutMs`; while the connection is still opening, or when no answer came in
 * time, nothing waits, and the link is detached when the answer comes. On a connection waiting to
 * reconnect, the session is taken off the connection. rhea re-begins every session it holds, and
 * re-attaches its links, whenever the connection (re)opens, and it takes back a detach sent before
 * the attach was answered. A closed subscriber's link used to be attached all the same, take its
 * credit and stay the queue's consumer until the connection closed (against RabbitMQ 3.10 it
 * released one message 100 times, its whole credit, within a second).
 */
export async function closeLinkAndSession(
  connection: Connection,
  session: Session,
  link: Sender | Receiver,
  detachTimeoutMs = 5000,
  endTimeoutMs = 1000,
): Promise<void> {
  const opened = link.is_receiver() ? "receiver_open" : "sender_open";
  const closed = link.is_receiver() ? "receiver_close" : "sender_close";
  const deadline = Date.now() + detachTimeoutMs;
  // A session the peer ended (RabbitMQ refusing an address ends it) holds nothing any more, and
  // its link's attach will never be answered.
  if (connection.is_closed() || endedByPeer(session)) return;
  if (awaitingAttach(link) && connection.is_open()) {
    await answered(connection, link, [opened, closed], () => {}, detachTimeoutMs);
  }
  if (connection.is_closed()) return;
  if (dropped(connection) === "reconnecting") {
    session.remove();
    return;
  }
  if (awaitingAttach(link)) {
    retireOnAttach(connection, session, link, opened, closed);
    return;
  }
  if (!session.is_open()) return;
  if (link.is_open()) {
    const left = Math.max(deadline - Date.now(), 0);
    await answered(connection, link, [closed], () => link.close(), left);
  }
  if (connection.is_closed() || !session.is_open()) return;
  await answered(connection, session, ["session_close"], () => session.close(), endTimeoutMs);
}

/** Whether the peer ended the session: its end came, or rhea already closed it after one. */
function endedByPeer(session: Session): boolean {
  const remote = (session as unknown as { remote?: { end?: unknown } }).remote;
  return remote?.end !== undefined || session.is_itself_closed();
}

/**
 * Whether the link asked to attach and has had no answer yet: made on a connection still
 * opening, or on a session not yet begun, or re-attaching after rhea reconnected.
 */
function awaitingAttach(link: Sender | Receiver): boolean {
  const l = link as unknown as {
    state?: { local_open?: boolean; remote_open?: boolean };
    remote?: { detach?: unknown };
  };
  return (
    l.state?.local_open === true && l.state.remote_open !== true && l.remote?.detach === undefined
  );
}

/**
 * Detaches the link as soon as its attach is answered, and ends its session once the detach is
 * (or at once when the peer refuses the link); takes the session off the connection if the
 * connection drops first and rhea reconnects.
 */
function retireOnAttach(
  connection: Connection,
  session: Session,
  link: Sender | Receiver,
  opened: string,
  closed: string,
): void {
  const stop = (): void => {
    link.removeListener(opened, onOpen);
    link.removeListener(closed, onClose);
    stopObserving();
  };
  const onOpen = (): void => {
    stop();
    link.once(closed, () => session.close());
    link.close();
  };
  const onClose = (): void => {
    stop();
    session.close();
  };
  link.once(opened, onOpen);
  link.once(closed, onClose);
  const stopObserving = observeConnectionLoss(connection, ({ reconnecting }) => {
    stop();
    if (reconnecting) session.remove();
  });
}

/**
 * Does `act` and waits for one of `events` on `endpoint`, a lost connection or `timeoutMs`,
 * whichever is first.
 */
function answered(
  connection: Connection,
  endpoint: Session | Sender | Receiver,
  events: readonly string[],
  act: () => void,
  timeoutMs: number,
): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      for (const event of events) endpoint.removeListener(event, done);
      stopObserving();
      resolve();
    };
    const timer = limitTimer(done, timeoutMs);
    const stopObserving = observeConnectionLoss(connection, done);
    for (const event of events) endpoint.once(event, done);
    act();
  });
}

/**
 * Turns Nagle's algorithm off on the connection's socket unless the connection's
 * `tcp_no_delay` option is `false`: what rhea's own `open_sender`/`open_receiver` do, which
 * links attached on a session of their own skip.
 */
export function applyNoDelay(connection: Connection): void {
  const c = connection as unknown as {
    get_option?(name: string, fallback: unknown): unknown;
    socket?: { setNoDelay?(on: boolean): void };
  };
  if (c.get_option?.("tcp_no_delay", true) !== false) c.socket?.setNoDelay?.(true);
}

/** The connection's socket, for core's corkForThisTick (rhea writes every frame on its own). */
export function socketOf(connection: Connection): CorkableStream | undefined {
  return (connection as unknown as { socket?: CorkableStream }).socket;
}
