// A subscriber's source filter, rhea to rhea with no broker: AMQP 1.0 (3.5.3) has the sending
// end's attach carry the filter actually in place, so a peer that leaves one out does not apply
// it. A rhea container listening on loopback plays the broker, echoing the filter or not.
import { amqpSubscriber } from "@posthorn/binding-amqp";
import { PosthornError } from "@posthorn/core";
import rhea, { type Connection, type EventContext } from "rhea";
import { afterEach, describe, expect, it } from "vitest";
import { closeConnection, listenOnLoopback } from "./helpers.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A peer serving links from any address: it echoes the receiver's filter in its attach only for
 * addresses starting with "echo", sends numbered messages while it has credit, and records the
 * transfers it sent and how each link was detached.
 */
async function startPeer() {
  const container = rhea.create_container({ id: "posthorn-filter-peer" });
  const sent: string[] = [];
  const detached: unknown[] = [];
  container.on("sender_open", (ctx: EventContext) => {
    const sender = ctx.sender as rhea.Sender;
    const wanted = sender.source as { address?: string; filter?: Record<string, unknown> };
    const address = wanted.address ?? "";
    sender.set_source(
      address.startsWith("echo") && wanted.filter
        ? { address, filter: wanted.filter }
        : { address },
    );
    const send = (): void => {
      while (sender.sendable() && sent.length < 10)
        sender.send({ body: `m-${sent.push(address)}` });
    };
    sender.on("sendable", send);
    sender.on("sender_close", () => detached.push(sender.error));
    send();
  });
  const { port, stop } = await listenOnLoopback(container);
  cleanups.push(stop);
  return { port, sent, detached };
}

async function connect(port: number): Promise<Connection> {
  const connection = rhea.create_container().connect({
    host: "127.0.0.1",
    port,
    reconnect: false,
  } as Parameters<rhea.Container["connect"]>[0]);
  await new Promise<void>((resolve) => connection.once("connection_open", () => resolve()));
  cleanups.push(() => closeConnection(connection));
  return connection;
}

const selector = rhea.filter.selector("color = 'red'");

describe("amqp subscriber and the filter the peer attaches with", () => {
  it("a filter the peer leaves out of its attach fails ready and iteration with NotSupported, no credit granted", async () => {
    const peer = await startPeer();
    const connection = await connect(peer.port);
    const subscriber = amqpSubscriber(connection, {
      address: "plain",
      receiverOptions: { source: { filter: selector } },
    });
    // ready resolved and the peer sent every message, the filter not applied.
    const refused = expect.objectContaining({
      name: "PosthornError",
      code: "NotSupported",
      attribute: "receiverOptions.source.filter.jms-selector",
      message: expect.stringContaining('without the filter "jms-selector"'),
    });
    await expect(subscriber.ready).rejects.toEqual(refused);
    const iterator = subscriber[Symbol.asyncIterator]();
    const next = await iterator.next().then(
      () => "resolved",
      (e: unknown) => e,
    );
    expect(next).toBeInstanceOf(PosthornError);
    expect(next).toEqual(refused);
    // The subscriber detached the link, saying why.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(peer.sent).toEqual([]);
    expect(peer.detached).toEqual([expect.objectContaining({ condition: "amqp:not-implemented" })]);
    const started = Date.now();
    await subscriber.close();
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it("a filter the peer echoes is taken, and messages flow", async () => {
    const peer = await startPeer();
    const connection = await connect(peer.port);
    const subscriber = amqpSubscriber(connection, {
      address: "echo",
      credit: 2,
      receiverOptions: { source: { filter: selector } },
    });
    await expect(subscriber.ready).resolves.toBeUndefined();
    const iterator = subscriber[Symbol.asyncIterator]();
    const first = (await iterator.next()).value;
    expect(String(first.message.body)).toBe("m-1");
    await first.accept();
    await subscriber.close();
    expect(peer.detached).toEqual([undefined]);
  });

  it("a subscriber with no filter is not checked for one", async () => {
    const peer = await startPeer();
    const connection = await connect(peer.port);
    const subscriber = amqpSubscriber(connection, { address: "plain", credit: 1 });
    await expect(subscriber.ready).resolves.toBeUndefined();
    const first = (await subscriber[Symbol.asyncIterator]().next()).value;
    await first.accept();
    await subscriber.close();
  });
});
