import type { CorkableStream } from "@posthorn/core";
import type { Connection, EventContext, Receiver, Sender, Session } from "rhea";

const MARK = Symbol.for("posthorn.amqp.listener");

type Marked = ((context: EventContext) => void) & { [MARK]?: true };

/**
 * Listens to a connection event without taking it away from the application. rhea hands an
 * event to the connection's listeners when it has any, and only otherwise to the container's; so
 * while Posthorn's are the only ones on the connection, the event is passed on to the container
 * as rhea would have done.
 *
 * @returns a function that removes the listener
 */
export function observeConnection(
  connection: Connection,
  event: "disconnected" | "connection_close" | "connection_error",
  handler: (context: EventContext) => void,
): () => void {
  const listener: Marked = (context: EventContext) => {
    const others = connection
      .listeners(event)
      .filter((l) => (l as Marked)[MARK] !== true && l !== listener);
    handler(context);
    if (others.length === 0 && isFirstMarked(connection, event, listener)) {
      const container = (
        connection as unknown as {
          container?: { dispatch?: (name: string, context: EventContext) => boolean };
        }
      ).container;
      container?.dispatch?.(event, context);
    }
  };
  listener[MARK] = true;
  connection.on(event, listener);
  return () => {
    connection.removeListener(event, listener);
  };
}

// Several Posthorn publishers and subscribers may watch one connection; one of them forwards.
function isFirstMarked(connection: Connection, event: string, listener: Marked): boolean {
  return connection.listeners(event).find((l) => (l as Marked)[MARK] === true) === listener;
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
 */
export async function closeLinkAndSession(
  connection: Connection,
  session: Session,
  link: Sender | Receiver,
  detachTimeoutMs = 5000,
  endTimeoutMs = 1000,
): Promise<void> {
  if (connection.is_closed() || !session.is_open()) return;
  if (link.is_open()) {
    const event = link.is_receiver() ? "receiver_close" : "sender_close";
    await answered(connection, link, event, () => link.close(), detachTimeoutMs);
  }
  if (connection.is_closed() || !session.is_open()) return;
  await answered(connection, session, "session_close", () => session.close(), endTimeoutMs);
}

/** Does `act` and waits for `event` on `endpoint`, a lost connection or `timeoutMs`, whichever is first. */
function answered(
  connection: Connection,
  endpoint: Session | Sender | Receiver,
  event: string,
  act: () => void,
  timeoutMs: number,
): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      endpoint.removeListener(event, done);
      stopObserving();
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, timeoutMs));
    const stopObserving = observeConnection(connection, "disconnected", done);
    endpoint.once(event, done);
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
