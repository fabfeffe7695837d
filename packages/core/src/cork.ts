/** A stream that can hold its writes: a Node `net.Socket` (or anything with cork/uncork). */
export interface CorkableStream {
  /** Starts holding writes in memory. */
  cork?(): void;
  /** Sends the writes held since `cork()`, together. */
  uncork?(): void;
}

const corked = new WeakSet<object>();
// Node's process.nextTick, where there is one (a browser has no sockets to cork).
const nextTick = (globalThis as { process?: { nextTick?(fn: () => void): void } }).process
  ?.nextTick;

/**
 * Holds `stream`'s writes until the current tick ends, once per tick, so that everything a
 * client library writes in this tick leaves in one `writev` instead of one system call per
 * frame. Call it after handing the library the tick's first send: the uncork is queued with
 * `process.nextTick`, behind a library's own `nextTick` flush queued by that send (rhea's), and
 * after writes made synchronously (ws's). Nothing is held past the tick. Does nothing for a
 * stream without `cork`, or outside Node.
 *
 * @param stream - the client's socket, e.g. rhea's `connection.socket` or ws's `_socket`
 */
export function corkForThisTick(stream: CorkableStream | undefined): void {
  if (stream?.cork === undefined || nextTick === undefined || corked.has(stream)) return;
  corked.add(stream);
  stream.cork();
  nextTick(() => {
    corked.delete(stream);
    stream.uncork?.();
  });
}
