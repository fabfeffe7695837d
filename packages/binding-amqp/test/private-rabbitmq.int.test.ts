// private-rabbitmq.ts chooses the node's ports, then rabbitmq-server binds them: in between,
// another process can take one. These tests take it for real, in that window (the port probe's
// server has its port bound by a "blocker" the moment it closes), and check that the node comes
// up on ports of its own, never taking the blocker for RabbitMQ.
import { createServer, Server } from "node:net";
import { amqpProtocolAnswer, inCi } from "@posthorn/testkit";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  type PrivateRabbitMq,
  rabbitMqBinaries,
  startPrivateRabbitMq,
} from "./private-rabbitmq.js";

const installed = rabbitMqBinaries() !== undefined;
if (!installed && inCi()) {
  throw new Error("rabbitmq-server is not installed; under CI=true the AMQP fault tests must run");
}

interface Blocker {
  readonly port: number;
  /** Connections it accepted: a start that took "something answers" for ready. */
  connections: number;
  readonly server: Server;
}

const blockers: Blocker[] = [];
let restoreClose: (() => void) | undefined;

afterEach(async () => {
  restoreClose?.();
  for (const b of blockers.splice(0)) await new Promise((r) => b.server.close(r));
});

function block(port: number): Promise<Blocker> {
  const blocker: Blocker = {
    port,
    connections: 0,
    server: createServer((socket) => {
      blocker.connections++;
      socket.destroy();
    }),
  };
  blockers.push(blocker);
  return new Promise((resolve, reject) => {
    blocker.server.once("error", reject);
    blocker.server.listen(port, "127.0.0.1", () => resolve(blocker));
  });
}

/**
 * The port of the next loopback server closed in this process (the node's port probe closes its
 * AMQP port first) is bound by a blocker as soon as it closes, before the closer goes on.
 */
function takeNextClosedPort(): Promise<Blocker> {
  const close = Server.prototype.close;
  restoreClose = () => {
    Server.prototype.close = close;
  };
  return new Promise<Blocker>((taken) => {
    Server.prototype.close = function (this: Server, callback?: (err?: Error) => void) {
      const address = this.address();
      if (typeof address !== "object" || address?.address !== "127.0.0.1") {
        return close.call(this, callback);
      }
      restoreClose?.();
      return close.call(this, (err?: Error) => {
        void block(address.port).then((b) => {
          taken(b);
          callback?.(err);
        });
      });
    } as typeof close;
  });
}

describe.skipIf(!installed)("a private RabbitMQ node on ports another process takes", () => {
  let broker: PrivateRabbitMq | undefined;
  afterAll(async () => {
    await broker?.dispose();
  }, 30_000);

  it("comes up on other ports when its AMQP port was taken before it bound it, and speaks AMQP 1.0 there", {
    timeout: 120_000,
  }, async () => {
    const taken = takeNextClosedPort();
    broker = await startPrivateRabbitMq();
    const blocker = await taken;
    // Before: ready meant "something answers on the port", which the blocker did.
    expect(broker.port).not.toBe(blocker.port);
    expect(blocker.connections).toBe(0);
    expect(await amqpProtocolAnswer("127.0.0.1", broker.port)).toBe("1.0");
  });

  it("start() after stop(), when another process took its port meanwhile, rejects naming the ports", {
    timeout: 120_000,
  }, async () => {
    if (broker === undefined) throw new Error("the node of the first test did not start");
    await broker.stop();
    const blocker = await block(broker.port);
    await expect(broker.start()).rejects.toThrow(
      `cannot start the private RabbitMQ node again on its ports (${broker.port}, `,
    );
    expect(blocker.connections).toBe(0);
  });
});
