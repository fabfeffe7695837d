import type { CorkableStream } from "@posthorn/core";
import type { Connection, EventContext, Session } from "rhea";

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
 * Ends a session Posthorn opened (detaching its links) and waits for the peer's answer, at most
 * `timeoutMs`. Nothing to do when the connection or the session is already gone.
 */
export function endSession(
  connection: Connection,
  session: Session,
  timeoutMs = 5000,
): Promise<void> {
  if (connection.is_closed() || !session.is_open()) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    session.once("session_close", () => {
      clearTimeout(timer);
      resolve();
    });
    session.close();
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
