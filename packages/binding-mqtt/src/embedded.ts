import { createServer, type Server, type Socket } from "node:net";

/** Options for {@link startEmbeddedMqttBroker}. */
export interface EmbeddedMqttBrokerOptions {
  /** TCP port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
}

/** An in-process MQTT 3.1.1 broker, and how to stop it. */
export interface EmbeddedMqttBroker {
  /** `mqtt://127.0.0.1:<port>`. */
  readonly url: string;
  /** The TCP port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** Disconnects every client and stops listening. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts an in-process MQTT broker (the `aedes` package, an optional peer dependency) on
 * 127.0.0.1, for demos, examples and machines without Mosquitto. aedes speaks MQTT 3.1.1 (and
 * 3.1): use the binding's structured JSON mode with it. It keeps everything in memory.
 *
 * @param options - the port (default 0: a free one)
 * @throws Error when `aedes` is not installed, or the port cannot be bound
 * @example
 * ```ts
 * const broker = await startEmbeddedMqttBroker();
 * const client = await mqtt.connectAsync(broker.url);
 * // ...
 * await client.endAsync();
 * await broker.stop();
 * ```
 */
export async function startEmbeddedMqttBroker(
  options: EmbeddedMqttBrokerOptions = {},
): Promise<EmbeddedMqttBroker> {
  let aedesModule: typeof import("aedes");
  try {
    aedesModule = await import("aedes");
  } catch (err) {
    throw new Error("startEmbeddedMqttBroker needs the aedes package: npm install aedes", {
      cause: err,
    });
  }
  const broker = await aedesModule.Aedes.createBroker();
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    broker.handle(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  let stopped: Promise<void> | undefined;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    stop() {
      stopped ??= (async () => {
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        await new Promise<void>((resolve) => broker.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await serverClosed;
      })();
      return stopped;
    },
  };
}
