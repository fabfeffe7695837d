// A peer that keeps, or does not keep, to the link credit the subscriber granted (AMQP 1.0
// 2.6.7): a rhea container listening on a free port plays the broker, over real TCP.

import { amqpSubscriber, toAmqpMessage } from "@posthorn/binding-amqp";
import type { Delivery } from "@posthorn/core";
import { vector } from "@posthorn/testkit";
import rhea, { type Connection, type EventContext } from "rhea";
import { afterEach, describe, expect, it, vi } from "vitest";
import { closeConnection, listenOnLoopback, openConnection } from "./helpers.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Peer {
  port: number;
  /** How many transfers the peer sent. */
  sent: number;
  /** The error of the subscriber's detach, once the peer has read it. */
  detachError: { condition?: unknown; description?: unknown } | undefined;
}

/** The n-th message the peer sends: a CloudEvent in binary mode, id `e<n>`. */
const messageOf = (n: number): Record<string, unknown> =>
  toAmqpMessage({ ...vector("minimal").event, id: `e${n}` }, { codec: rhea }) as never;

/**
 * A peer serving one sender link. `flood` ignores the credit: at the first flow it sends that
 * many transfers at once. Without it, the peer sends up to `total` transfers as credit allows.
 */
async function startPeer(options: {
  total?: number;
  flood?: number;
  properties?: Record<string, unknown>;
}): Promise<Peer> {
  const container = rhea.create_container({ id: "posthorn-credit-peer" });
  const peer: Peer = { port: 0, sent: 0, detachError: undefined };
  container.on("sender_open", (ctx: EventContext) => {
    const sender = ctx.sender as rhea.Sender;
    sender.set_source({ address: (sender.source as { address?: string }).address ?? "" });
  });
  container.on("sendable", (ctx: EventContext) => {
    const sender = ctx.sender as rhea.Sender;
    if (options.flood !== undefined) {
      if (peer.sent > 0) return;
      // rhea's sender sends only what it has credit for: give it the credit the peer pretends to.
      (sender as unknown as { credit: number }).credit = options.flood;
      while (peer.sent < options.flood) sender.send(messageOf(peer.sent++) as never);
      return;
    }
    // Exactly the credit the last flow left: rhea takes away credit only as it writes transfers,
    // on a later tick, and each flow comes after the transfers sent before it were written.
    const credit = (sender as unknown as { credit: number }).credit;
    const last = Math.min(peer.sent + credit, options.total ?? 0);
    while (peer.sent < last) sender.send(messageOf(peer.sent++) as never);
  });
  const onDetach = (ctx: EventContext): void => {
    peer.detachError = (ctx.sender as rhea.Sender).error as Peer["detachError"];
  };
  container.on("sender_close", onDetach);
  container.on("sender_error", onDetach);
  const listening = await listenOnLoopback(
    container,
    options.properties === undefined ? {} : { properties: options.properties },
  );
  peer.port = listening.port;
  cleanups.push(listening.stop);
  return peer;
}

async function connect(peer: Peer): Promise<Connection> {
  const connection = await openConnection({ host: "127.0.0.1", port: peer.port });
  cleanups.push(() => closeConnection(connection));
  return connection;
}

const failure = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => "resolved",
    (err: unknown) => err,
  );

describe("amqp subscriber holds the peer to the link credit it granted", () => {
  it("detaches with amqp:link:transfer-limit-exceeded when the peer floods 10x the credit, and ends iteration with a retryable ConnectionFailed after the deliveries within credit", async () => {
    // rhea logs every transfer past the credit; the test does not need to see them.
    const log = vi.spyOn(console, "error").mockImplementation(() => {});
    cleanups.push(() => log.mockRestore());
    const peer = await startPeer({ flood: 50 });
    const connection = await connect(peer);
    const subscriber = amqpSubscriber(connection, { address: "flood", credit: 5 });
    const iterator = subscriber[Symbol.asyncIterator]();
    const handed: Delivery<unknown>[] = [];
    for (let i = 0; i < 5; i++) {
      const next = await iterator.next();
      expect(next.done).toBe(false);
      handed.push(next.value as Delivery<unknown>);
    }
    expect(handed.map((d) => d.event?.id)).toEqual(["e0", "e1", "e2", "e3", "e4"]);
    expect(await failure(iterator.next())).toMatchObject({
      name: "PosthornError",
      code: "ConnectionFailed",
      retryable: true,
      protocolCode: "amqp:link:transfer-limit-exceeded",
      message: expect.stringContaining("the peer sent transfer 6 after 5 credits were granted"),
    });
    await vi.waitFor(() =>
      expect(peer.detachError).toMatchObject({ condition: "amqp:link:transfer-limit-exceeded" }),
    );
    expect(peer.sent).toBe(50);
    // As on any lost link: the deliveries in hand cannot be settled, the broker redelivers them.
    expect(await failure(handed[0]?.accept() as Promise<void>)).toMatchObject({
      code: "SettlementFailed",
      message: expect.stringContaining("the link that carried this delivery is gone"),
    });
    await subscriber.close();
  });

  it("a peer that sends exactly up to the credit, topped up by each settlement, delivers everything with no error", async () => {
    const log = vi.spyOn(console, "error");
    cleanups.push(() => log.mockRestore());
    const peer = await startPeer({ total: 60 });
    const connection = await connect(peer);
    const subscriber = amqpSubscriber(connection, { address: "kept", credit: 5 });
    const ids: string[] = [];
    const iterator = subscriber[Symbol.asyncIterator]();
    // The first 5 fill the credit; the peer waits for more before the 6th.
    const first: Delivery<unknown>[] = [];
    for (let i = 0; i < 5; i++) first.push((await iterator.next()).value as Delivery<unknown>);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(peer.sent).toBe(5);
    // Settled together, in one turn, while the next transfers are already on their way.
    await Promise.all(first.map((d) => d.accept()));
    ids.push(...first.map((d) => d.event?.id as string));
    while (ids.length < 60) {
      const next = await iterator.next();
      const delivery = next.value as Delivery<unknown>;
      ids.push(delivery.event?.id as string);
      await delivery.accept();
    }
    expect(ids).toEqual(Array.from({ length: 60 }, (_, i) => `e${i}`));
    // The peer kept to the credit: rhea saw no transfer past it.
    expect(log).not.toHaveBeenCalled();
    expect(peer.detachError).toBeUndefined();
    await subscriber.close();
    expect(peer.detachError).toBeUndefined();
  });

  it("does not hold RabbitMQ 3.x to its credit (it sends past it, rabbitmq-server#2597), and holds RabbitMQ 4", async () => {
    const log = vi.spyOn(console, "error").mockImplementation(() => {});
    cleanups.push(() => log.mockRestore());
    for (const version of ["3.10.8", "4.0.5"]) {
      const peer = await startPeer({ flood: 20, properties: { product: "RabbitMQ", version } });
      const connection = await connect(peer);
      const subscriber = amqpSubscriber(connection, { address: `rabbit-${version}`, credit: 2 });
      const iterator = subscriber[Symbol.asyncIterator]();
      let count = 0;
      const outcome = await failure(
        (async () => {
          while (count < 20) {
            await iterator.next();
            count++;
          }
        })(),
      );
      if (version.startsWith("3.")) {
        expect(outcome).toBe("resolved");
        expect(count).toBe(20);
      } else {
        expect(outcome).toMatchObject({ protocolCode: "amqp:link:transfer-limit-exceeded" });
        expect(count).toBe(2);
      }
      await subscriber.close();
    }
  });
});
