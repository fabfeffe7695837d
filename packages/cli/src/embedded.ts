import { createServer, type Server, type Socket } from "node:net";
import { guardedListen } from "@posthorn/binding-amqp";
import rhea, { type EventContext, type Message, type Sender } from "rhea";

/** A server the command started in-process, and how to stop it. */
export interface EmbeddedServer {
  /** Where clients connect: `amqp://127.0.0.1:<port>`, `mqtt://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** Stops listening and drops every connection. Idempotent. */
  stop(): Promise<void>;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      const address = server.address();
      resolve(typeof address === "object" && address !== null ? address.port : 0);
    });
  });
}

function stopper(
  server: Server,
  sockets: Set<Socket>,
  before?: () => Promise<void>,
): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  return () => {
    stopping ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await before?.();
      for (const socket of sockets) socket.destroy();
      await closed;
    })();
    return stopping;
  };
}

/**
 * An AMQP 1.0 peer on a free port, made of one rhea container listening: a sender link attached
 * to an address hands its messages (accepted on arrival) to a receiver link attached to the same
 * address, queueing them until one is there and has credit. It is the smallest thing a publisher
 * and a subscriber can both connect to, so the demo needs no broker; it keeps nothing on disk.
 * It listens through the AMQP binding's frame guard (`guardedListen`).
 */
export async function startAmqpPeer(): Promise<EmbeddedServer> {
  const container = rhea.create_container({ id: "posthorn-demo-peer" });
  const queues = new Map<string, { messages: Message[]; consumers: Sender[] }>();
  const queueOf = (address: string) => {
    let q = queues.get(address);
    if (!q) {
      q = { messages: [], consumers: [] };
      queues.set(address, q);
    }
    return q;
  };
  const pump = (address: string) => {
    const q = queueOf(address);
    while (q.messages.length > 0) {
      const consumer = q.consumers.find((s) => s.is_open() && s.sendable());
      if (!consumer) return;
      consumer.send(q.messages.shift() as Message);
    }
  };
  const remoteAddress = (terminus: unknown): string =>
    String((terminus as { address?: unknown } | undefined)?.address ?? "");
  container.on("sender_open", (ctx: EventContext) => {
    const sender = ctx.sender as Sender;
    const address = remoteAddress(
      (sender as unknown as { remote: { attach: { source?: unknown } } }).remote.attach.source,
    );
    sender.set_source({ address });
    queueOf(address).consumers.push(sender);
    pump(address);
  });
  container.on("sendable", (ctx: EventContext) => {
    const address = remoteAddress(ctx.sender?.source);
    pump(address);
  });
  const forget = (ctx: EventContext) => {
    const sender = ctx.sender;
    if (!sender) return;
    for (const q of queues.values()) q.consumers = q.consumers.filter((s) => s !== sender);
  };
  container.on("sender_close", forget);
  container.on("receiver_open", (ctx: EventContext) => {
    const receiver = ctx.receiver;
    const attach = (receiver as unknown as { remote: { attach: { target?: unknown } } }).remote
      .attach;
    receiver?.set_target({ address: remoteAddress(attach.target) });
  });
  container.on("message", (ctx: EventContext) => {
    const address = remoteAddress(ctx.receiver?.target);
    if (ctx.message) queueOf(address).messages.push(ctx.message);
    pump(address);
  });
  container.on("disconnected", () => undefined);
  container.on("error", () => undefined);
  const sockets = new Set<Socket>();
  // Through the frame guard, as the CLI's client connections are (guardedConnect): a message
  // rhea cannot decode is passed on marked undecodable (its consumer sees MalformedInput), and a
  // frame that breaks the framing ends that connection, instead of reaching rhea's decoder.
  const server = guardedListen(container, { port: 0, host: "127.0.0.1" });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    if (server.listening) resolve();
    server.once("listening", () => resolve());
    server.once("error", reject);
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return { url: `amqp://127.0.0.1:${port}`, port, stop: stopper(server, sockets) };
}

/**
 * The `aedes` MQTT broker in-process on a free port (MQTT 3.1.1; aedes does not speak MQTT 5).
 *
 * @throws Error when `aedes` is not installed
 */
export async function startAedes(): Promise<EmbeddedServer> {
  const { Aedes } = await import("aedes");
  const broker = await Aedes.createBroker();
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    broker.handle(socket);
  });
  const port = await listen(server);
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    stop: stopper(
      server,
      sockets,
      () => new Promise<void>((resolve) => broker.close(() => resolve())),
    ),
  };
}
