import { connect, Socket } from "node:net";
import type { ISocketFactory } from "kafkajs";

// Kafka API keys, as the first two bytes after a request's 4-byte size.
/** Produce: a producer's send. */
const PRODUCE = 0;
/** ListOffsets: how a consumer learns where the end (or the beginning) of a partition is. */
const LIST_OFFSETS = 2;
/** OffsetCommit: a consumer group's commit. */
const OFFSET_COMMIT = 8;
/** JoinGroup: the first step of joining a consumer group. */
const JOIN_GROUP = 11;

type Write = (chunk: Buffer, encoding?: BufferEncoding) => boolean;

/** The API key of a request as kafkajs writes it: in one `write` call, size first. */
function apiKeyOf(chunk: unknown): number | undefined {
  return Buffer.isBuffer(chunk) && chunk.length >= 6 ? chunk.readInt16BE(4) : undefined;
}

/**
 * A kafkajs socket factory whose connections hold every ListOffsets request back for `delayMs`
 * (and the requests written after it, so that the order on the connection stays the client's).
 * A consumer made with it learns where the end of a partition is that much later: the gap
 * between joining the group and fixing the start offset of a partition without a committed
 * offset, which on the in-process test broker is otherwise too short for a test to hit.
 *
 * @param delayMs - how long each ListOffsets request is held back
 */
export function slowOffsetLookups(delayMs: number): ISocketFactory {
  return slowRequests(LIST_OFFSETS, delayMs);
}

/**
 * A kafkajs socket factory whose connections hold every Produce request back for `delayMs` (and
 * the requests written after it): a producer made with it has its sends acknowledged that much
 * later, so a send can still be running when a test closes what waits for it.
 *
 * @param delayMs - how long each Produce request is held back
 */
export function slowProduces(delayMs: number): ISocketFactory {
  return slowRequests(PRODUCE, delayMs);
}

/** Connections that hold each request of API `apiKey` back for `delayMs`, keeping their order. */
function slowRequests(apiKey: number, delayMs: number): ISocketFactory {
  return ({ host, port, onConnect }) => {
    const socket: Socket = connect({ host, port }, onConnect);
    const write = socket.write.bind(socket) as Write;
    let queue: Promise<void> | undefined;
    let queued = 0;
    socket.write = ((chunk: Buffer, encoding?: BufferEncoding) => {
      const slow = apiKeyOf(chunk) === apiKey;
      if (!slow && queue === undefined) return write(chunk, encoding);
      queued++;
      queue = (queue ?? Promise.resolve())
        .then(() => (slow ? new Promise<void>((r) => setTimeout(r, delayMs)) : undefined))
        .then(() => {
          if (!socket.destroyed) write(chunk, encoding);
          if (--queued === 0) queue = undefined;
        });
      return true;
    }) as typeof socket.write;
    return socket;
  };
}

/**
 * A kafkajs socket factory whose connections are cut when an OffsetCommit request is written: a
 * consumer made with it reads and joins as usual, and every commit it sends fails.
 */
export function failingCommits(): ISocketFactory {
  return ({ host, port, onConnect }) => {
    const socket: Socket = connect({ host, port }, onConnect);
    const write = socket.write.bind(socket) as Write;
    socket.write = ((chunk: Buffer, encoding?: BufferEncoding) => {
      if (apiKeyOf(chunk) !== OFFSET_COMMIT) return write(chunk, encoding);
      socket.destroy(new Error("test: connection cut on OffsetCommit"));
      return false;
    }) as typeof socket.write;
    return socket;
  };
}

/**
 * A kafkajs socket factory whose connections are cut when a JoinGroup request is written: a
 * consumer made with it can connect and subscribe, but crashes when it tries to join its group.
 */
export function failingJoins(): ISocketFactory {
  return ({ host, port, onConnect }) => {
    const socket: Socket = connect({ host, port }, onConnect);
    const write = socket.write.bind(socket) as Write;
    socket.write = ((chunk: Buffer, encoding?: BufferEncoding) => {
      if (apiKeyOf(chunk) !== JOIN_GROUP) return write(chunk, encoding);
      socket.destroy(new Error("test: connection cut on JoinGroup"));
      return false;
    }) as typeof socket.write;
    return socket;
  };
}

/**
 * A kafkajs socket factory whose connections can be cut at once, after which every new one fails
 * as a broker that went away does: a consumer made with it loses the cluster while the cluster
 * itself (and every other client) carries on. `restore()` lets new connections through again.
 */
export function cuttableConnections(): {
  factory: ISocketFactory;
  cut(): void;
  restore(): void;
} {
  const open = new Set<Socket>();
  let cut = false;
  const factory: ISocketFactory = ({ host, port, onConnect }) => {
    if (cut) {
      // Never connected: it fails on the next tick, as a refused connection does.
      const refused = new Socket();
      setImmediate(() =>
        refused.destroy(new Error("test: connect ECONNREFUSED (connections cut)")),
      );
      return refused;
    }
    const socket: Socket = connect({ host, port }, onConnect);
    open.add(socket);
    socket.once("close", () => open.delete(socket));
    return socket;
  };
  return {
    factory,
    cut() {
      cut = true;
      for (const socket of open) socket.destroy(new Error("test: connection cut"));
    },
    restore() {
      cut = false;
    },
  };
}
