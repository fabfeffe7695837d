// A misbehaving or vanishing peer, rhea to rhea with no broker: a rhea container listening on a
// free port plays the peer, and each test closes its connection, destroys its socket or sends
// what rhea cannot decode.

import type { Socket } from "node:net";
import { amqpPublisher, amqpSubscriber, DEFAULT_CLOSE_TIMEOUT_MS } from "@posthorn/binding-amqp";
import type { Delivery } from "@posthorn/core";
import { vector } from "@posthorn/testkit";
import rhea, { type Connection, type Container, type EventContext } from "rhea";
import { afterEach, describe, expect, it, vi } from "vitest";
import { closeConnection, listenOnLoopback } from "./helpers.js";

interface Peer {
  readonly port: number;
  readonly container: Container;
  /** The peer's side of each connection, in the order they opened. */
  readonly connections: Connection[];
  /** Bodies of the messages the peer accepted. */
  readonly received: unknown[];
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A peer that accepts every message sent to it (credit 100) and serves the links attached from
 * it through `onSender`.
 */
async function startPeer(onSender?: (ctx: EventContext) => void): Promise<Peer> {
  const container = rhea.create_container({
    id: "posthorn-faulty-peer",
    credit_window: 0,
    autoaccept: false,
  } as Parameters<typeof rhea.create_container>[0]);
  const connections: Connection[] = [];
  const received: unknown[] = [];
  container.on("connection_open", (ctx: EventContext) => connections.push(ctx.connection));
  container.on("receiver_open", (ctx: EventContext) => {
    const receiver = ctx.receiver as rhea.Receiver;
    receiver.set_target({ address: (receiver.target as { address?: string }).address ?? "" });
    receiver.add_credit(100);
  });
  container.on("sender_open", (ctx: EventContext) => {
    const sender = ctx.sender as rhea.Sender;
    sender.set_source({ address: (sender.source as { address?: string }).address ?? "" });
    onSender?.(ctx);
  });
  container.on("message", (ctx: EventContext) => {
    received.push(ctx.message?.body);
    ctx.delivery?.accept();
    ctx.receiver?.add_credit(1);
  });
  const { port, stop } = await listenOnLoopback(container);
  cleanups.push(stop);
  return { port, container, connections, received };
}

/**
 * A connection from a container of its own with no listeners at all, as an application that
 * listens for nothing has: rhea throws an `error` event nobody handles.
 */
async function bareConnection(
  port: number,
  options: Record<string, unknown> = {},
): Promise<{ connection: Connection; container: Container }> {
  const container = rhea.create_container();
  const connection = container.connect({
    host: "127.0.0.1",
    port,
    reconnect: false,
    ...options,
  } as Parameters<Container["connect"]>[0]);
  await new Promise<void>((resolve) => connection.once("connection_open", () => resolve()));
  cleanups.push(() => closeConnection(connection));
  return { connection, container };
}

/** `promise`'s outcome, or `"pending"` when it has none after `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | "pending"> {
  return Promise.race([
    promise,
    new Promise<"pending">((resolve) => setTimeout(() => resolve("pending"), ms)),
  ]);
}

const failure = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => "resolved",
    (err: unknown) => err,
  );

describe("amqp publisher and subscriber when the peer misbehaves or goes away", () => {
  it("a publish made while rhea waits to reconnect goes out on the re-attached link", async () => {
    const peer = await startPeer();
    const { connection } = await bareConnection(peer.port, {
      reconnect: true,
      initial_reconnect_delay: 300,
      max_reconnect_delay: 300,
    });
    connection.on("disconnected", () => {});
    const publisher = amqpPublisher(connection, { address: "reconnect", timeoutMs: 20_000 });
    await publisher.publish(vector("minimal").event);
    const dropped = new Promise((resolve) => connection.once("disconnected", resolve));
    (peer.connections[0] as unknown as { socket: Socket }).socket.destroy();
    await dropped;
    // The link still holds the credit of the lost connection here: rhea took a transfer into a
    // session buffer it discards when reconnecting, and the publish waited for its Timeout.
    const sent = publisher.publish(vector("typical").event);
    expect(await within(failure(sent), 10_000)).toBe("resolved");
    expect(peer.received).toHaveLength(2);
    expect(await within(publisher.close(), 10_000)).toBeUndefined();
  });

  it("the peer closing the connection with an error fails waiting publishes with ConnectionFailed", async () => {
    const peer = await startPeer();
    peer.container.removeAllListeners("message");
    // Takes the first message without settling it, then closes the connection.
    peer.container.on("message", (ctx: EventContext) => {
      ctx.connection.close({ condition: "amqp:internal-error", description: "going away" });
    });
    const { connection } = await bareConnection(peer.port);
    const publisher = amqpPublisher(connection, { address: "closing", timeoutMs: 30_000 });
    await publisher.ready;
    const waiting = failure(publisher.publish(vector("minimal").event));
    expect(await within(waiting, 10_000)).toMatchObject({
      name: "PosthornError",
      code: "ConnectionFailed",
      protocolCode: "amqp:internal-error",
    });
    expect(await failure(publisher.publish(vector("minimal").event))).toMatchObject({
      code: "ConnectionFailed",
    });
    expect(await within(publisher.close(), 10_000)).toBeUndefined();
  });

  it("the application closing the connection fails waiting and later publishes with Closed, not ConnectionFailed", async () => {
    const peer = await startPeer();
    peer.container.removeAllListeners("message");
    // Takes every message without settling it.
    peer.container.on("message", (ctx: EventContext) => {
      peer.received.push(ctx.message?.body);
    });
    const { connection } = await bareConnection(peer.port);
    const publisher = amqpPublisher(connection, { address: "app-closed", timeoutMs: 30_000 });
    await publisher.ready;
    const waiting = failure(publisher.publish(vector("minimal").event));
    await vi.waitFor(() => expect(peer.received).toHaveLength(1));
    await closeConnection(connection);
    expect(await within(waiting, 10_000)).toMatchObject({
      name: "PosthornError",
      code: "Closed",
      retryable: false,
      message: expect.stringContaining("the application closed the connection"),
    });
    expect(await failure(publisher.publish(vector("minimal").event))).toMatchObject({
      code: "Closed",
      retryable: false,
    });
    expect(await within(publisher.close(), 10_000)).toBeUndefined();
  });

  for (const who of ["the peer", "the application"] as const) {
    const code = who === "the peer" ? "ConnectionFailed" : "Closed";
    it(`a subscriber's iteration fails with ${code} when ${who} closes the connection`, async () => {
      let closePeerSide: (() => void) | undefined;
      const peer = await startPeer((ctx) => {
        closePeerSide = () =>
          ctx.connection.close({ condition: "amqp:internal-error", description: "bye" });
      });
      const { connection } = await bareConnection(peer.port);
      const subscriber = amqpSubscriber(connection, { address: "source" });
      await subscriber.ready;
      const next = failure(subscriber[Symbol.asyncIterator]().next());
      if (who === "the peer") closePeerSide?.();
      else connection.close();
      expect(await within(next, 10_000)).toMatchObject({ code, retryable: code !== "Closed" });
      expect(await within(subscriber.close(), 10_000)).toBeUndefined();
    });
  }

  it("a transfer rhea cannot decode ends the connection (ConnectionFailed) and does not crash the process", async () => {
    const peer = await startPeer((ctx) => {
      const sender = ctx.sender as rhea.Sender;
      sender.once("sendable", () => {
        // A data section claiming 4 GiB in a 10-byte message: rhea's decoder throws a RangeError.
        const garbage = Buffer.from([0x00, 0x53, 0x75, 0xb0, 0xff, 0xff, 0xff, 0xff, 1, 2]);
        sender.send(garbage as never, undefined, 0);
      });
    });
    const { connection } = await bareConnection(peer.port);
    const subscriber = amqpSubscriber(connection, { address: "garbage", credit: 5 });
    const next = failure(subscriber[Symbol.asyncIterator]().next());
    expect(await within(next, 10_000)).toMatchObject({ code: "ConnectionFailed" });
    expect(await within(subscriber.close(), 10_000)).toBeUndefined();
  });

  it("a fatal connection close nobody listens for does not crash; a container listening for 'error' still gets it", async () => {
    for (const listening of [false, true]) {
      let closePeerSide: (() => void) | undefined;
      const peer = await startPeer((ctx) => {
        closePeerSide = () =>
          ctx.connection.close({ condition: "amqp:unauthorized-access", description: "revoked" });
      });
      const { connection, container } = await bareConnection(peer.port);
      const errors: unknown[] = [];
      if (listening) container.on("error", (err: unknown) => errors.push(err));
      const subscriber = amqpSubscriber(connection, { address: "fatal" });
      await subscriber.ready;
      const next = failure(subscriber[Symbol.asyncIterator]().next());
      closePeerSide?.();
      expect(await within(next, 10_000)).toMatchObject({
        code: "ConnectionFailed",
        protocolCode: "amqp:unauthorized-access",
        retryable: false,
      });
      expect(errors).toHaveLength(listening ? 1 : 0);
      if (listening) expect(errors[0]).toMatchObject({ condition: "amqp:unauthorized-access" });
      await subscriber.close();
    }
  });
});

describe("amqp subscriber and a peer that sends deliveries pre-settled", () => {
  it("release() and reject() of a delivery the peer sent settled fail with SettlementFailed; accept() resolves; credit comes back", async () => {
    // The subscriber asks for unsettled deliveries (snd_settle_mode 0); this peer sends each
    // transfer settled all the same, as a broker in an at-most-once mode would.
    let sender: rhea.Sender | undefined;
    let sent = 0;
    const send = (): void => {
      while (sender?.sendable() && sent < 5) {
        const delivery = sender.send({ body: `presettled-${sent++}` });
        (delivery as { settled: boolean }).settled = true;
      }
    };
    const peer = await startPeer((ctx) => {
      sender = ctx.sender as rhea.Sender;
      sender.on("sendable", send);
      send();
    });
    const { connection } = await bareConnection(peer.port);
    const subscriber = amqpSubscriber(connection, { address: "presettled", credit: 1 });
    const iterator = subscriber[Symbol.asyncIterator]();
    const next = async () => (await iterator.next()).value as Delivery;
    // release() resolved, and the message, already gone from the peer, was lost unnoticed.
    const released = await next();
    expect(await failure(released.release())).toMatchObject({
      name: "PosthornError",
      code: "SettlementFailed",
      message: expect.stringContaining("release() cannot hand it back"),
    });
    const rejected = await next();
    expect(await failure(rejected.reject("bad"))).toMatchObject({
      code: "SettlementFailed",
      message: expect.stringContaining("reject() cannot hand it back"),
    });
    // With credit 1, each later delivery came only because the failed settlements gave it back.
    const accepted = await next();
    expect(await failure(accepted.accept())).toBe("resolved");
    expect(String((await next()).message.body)).toContain("presettled-3");
    await subscriber.close();
  });
});

describe("amqp publisher's settle modes on the wire", () => {
  it("keeps its own settle modes under the connection's sender_options: publish resolves on the peer's accepted", async () => {
    const peer = await startPeer();
    const modes: unknown[] = [];
    peer.container.on("receiver_open", (ctx: EventContext) => {
      const receiver = ctx.receiver as unknown as {
        snd_settle_mode?: number;
        rcv_settle_mode?: number;
      };
      modes.push([receiver.snd_settle_mode, receiver.rcv_settle_mode]);
    });
    // rhea applies these to every sender of the connection; the option checks never saw them.
    const { connection } = await bareConnection(peer.port, {
      sender_options: { snd_settle_mode: 1, rcv_settle_mode: 1 },
    });
    const publisher = amqpPublisher(connection, { address: "sender-modes", timeoutMs: 2000 });
    // Old code: the transfer went out pre-settled, and publish waited for an outcome that never
    // comes: Timeout, though the peer had the message.
    expect(await failure(publisher.publish(vector("minimal").event))).toBe("resolved");
    expect(peer.received).toHaveLength(1);
    expect(modes).toEqual([[2, 0]]);
    await publisher.close();
  });
});

describe("amqp subscriber's settle modes on the wire", () => {
  it("asks for unsettled deliveries, even under rhea's mixed default or the connection's receiver_options; release() reaches a peer that would pre-settle", async () => {
    // A peer that takes the receiver's word: it sends settled unless the attach asked for
    // unsettled deliveries (snd_settle_mode 0); mixed (2, rhea's default) lets it choose, and
    // it chooses settled, as AMQP 1.0 (2.8.2) allows.
    const asked: unknown[] = [];
    const outcomes: string[] = [];
    const senders: rhea.Sender[] = [];
    const peer = await startPeer((ctx) => {
      const sender = ctx.sender as rhea.Sender;
      senders.push(sender);
      const mode = (sender as unknown as { snd_settle_mode?: number }).snd_settle_mode;
      asked.push([mode, (sender as unknown as { rcv_settle_mode?: number }).rcv_settle_mode]);
      let sent = 0;
      const send = (): void => {
        while (sender.sendable() && sent < 1) {
          const delivery = sender.send({ body: `settle-mode-${sent++}` });
          if (mode !== 0) (delivery as { settled: boolean }).settled = true;
        }
      };
      sender.on("sendable", send);
      sender.on("released", () => outcomes.push("released"));
      sender.on("accepted", () => outcomes.push("accepted"));
      send();
    });
    // The second connection asks, through rhea's connection-wide receiver_options, for
    // pre-settled deliveries received in mode second: the subscriber's link must not inherit it.
    for (const options of [{}, { receiver_options: { snd_settle_mode: 1, rcv_settle_mode: 1 } }]) {
      const { connection } = await bareConnection(peer.port, options);
      const subscriber = amqpSubscriber(connection, { address: "settle-mode", credit: 1 });
      const iterator = subscriber[Symbol.asyncIterator]();
      const delivery = (await iterator.next()).value as Delivery;
      // Old code: rhea's default (mixed) went out, the peer sent the delivery settled, and
      // release() failed with SettlementFailed: the message was gone.
      expect(await failure(delivery.release())).toBe("resolved");
      await subscriber.close();
    }
    expect(asked).toEqual([
      [0, 0],
      [0, 0],
    ]);
    await vi.waitFor(() => expect(outcomes).toHaveLength(2), { timeout: 5000 });
    expect(outcomes).toEqual(["released", "released"]);
  });
});

describe("amqp publisher and subscriber closed before their links are attached", () => {
  /**
   * What the peer sees of the links: each attach and each detach, by address, and each link
   * given credit (a subscriber's flow). A link close() left behind shows up in all three.
   */
  function watchLinks(peer: Peer): { attached: string[]; detached: string[]; credited: string[] } {
    const seen = { attached: [] as string[], detached: [] as string[], credited: [] as string[] };
    const name = (ctx: EventContext): string => {
      const terminus = (ctx.sender ? ctx.sender.source : ctx.receiver?.target) as
        | { address?: string }
        | undefined;
      return terminus?.address ?? "";
    };
    for (const event of ["sender_open", "receiver_open"]) {
      peer.container.on(event, (ctx: EventContext) => seen.attached.push(name(ctx)));
    }
    for (const event of ["sender_close", "receiver_close"]) {
      peer.container.on(event, (ctx: EventContext) => seen.detached.push(name(ctx)));
    }
    peer.container.on("sender_flow", (ctx: EventContext) => {
      if (((ctx.sender as unknown as { credit?: number }).credit ?? 0) > 0) {
        seen.credited.push(name(ctx));
      }
    });
    return seen;
  }

  it("closed while rhea waits to reconnect: neither link is attached again when the connection is back", async () => {
    const peer = await startPeer();
    const links = watchLinks(peer);
    const { connection } = await bareConnection(peer.port, {
      reconnect: true,
      initial_reconnect_delay: 200,
      max_reconnect_delay: 200,
    });
    connection.on("disconnected", () => {});
    const subscriber = amqpSubscriber(connection, { address: "gone-source" });
    const publisher = amqpPublisher(connection, { address: "gone-target" });
    await Promise.all([subscriber.ready, publisher.ready]);
    const dropped = new Promise((resolve) => connection.once("disconnected", resolve));
    (peer.connections[0] as unknown as { socket: Socket }).socket.destroy();
    await dropped;
    expect(await within(Promise.all([subscriber.close(), publisher.close()]), 3000)).not.toBe(
      "pending",
    );
    links.attached.length = 0;
    links.credited.length = 0;
    // A link made now is attached once the connection is back, with whatever rhea still holds.
    const witness = amqpSubscriber(connection, { address: "witness" });
    expect(await within(failure(witness.ready), 5000)).toBe("resolved");
    await vi.waitFor(() => expect(links.credited).toContain("witness"));
    // Both used to come back, the closed subscriber's link with 100 credit.
    expect(links.attached).toEqual(["witness"]);
    expect(links.credited).toEqual(["witness"]);
    await witness.close();
  });

  it("closed while the connection is still opening: each link is detached once attached, and the subscriber takes no credit", async () => {
    const peer = await startPeer();
    const links = watchLinks(peer);
    const container = rhea.create_container();
    const connection = container.connect({
      host: "127.0.0.1",
      port: peer.port,
      reconnect: false,
    } as Parameters<Container["connect"]>[0]);
    cleanups.push(() => closeConnection(connection));
    const subscriber = amqpSubscriber(connection, { address: "early-source" });
    const publisher = amqpPublisher(connection, { address: "early-target" });
    expect(await within(Promise.all([subscriber.close(), publisher.close()]), 3000)).not.toBe(
      "pending",
    );
    const witness = amqpSubscriber(connection, { address: "witness" });
    expect(await within(failure(witness.ready), 5000)).toBe("resolved");
    await vi.waitFor(() => expect(links.credited).toContain("witness"));
    // Both used to stay attached for as long as the connection lived, the subscriber with 100
    // credit.
    await vi.waitFor(() => expect(links.detached.sort()).toEqual(["early-source", "early-target"]));
    expect(links.attached.sort()).toEqual(["early-source", "early-target", "witness"]);
    expect(links.credited).toEqual(["witness"]);
    await witness.close();
  });
});

describe("amqp publisher close() against a peer that never settles", () => {
  /** A peer that takes every transfer and never sends a disposition; `received` counts them. */
  async function silentPeer(): Promise<Peer> {
    const peer = await startPeer();
    peer.container.removeAllListeners("message");
    peer.container.on("message", (ctx: EventContext) => {
      peer.received.push(ctx.message?.body);
      ctx.receiver?.add_credit(1);
    });
    return peer;
  }

  it("rejects with Timeout after closeTimeoutMs, naming how many publishes were unsettled, and rejects each of them with Timeout", async () => {
    const peer = await silentPeer();
    const { connection } = await bareConnection(peer.port);
    // timeoutMs Infinity: nothing but closeTimeoutMs bounds the wait. Two transfers in flight,
    // the third queued behind maxInFlight.
    const publisher = amqpPublisher(connection, {
      address: "silent",
      timeoutMs: Number.POSITIVE_INFINITY,
      closeTimeoutMs: 300,
      maxInFlight: 2,
    });
    await publisher.ready;
    const sends = [1, 2, 3].map((i) =>
      failure(publisher.publish({ ...vector("minimal").event, id: `silent-${i}` })),
    );
    await vi.waitFor(() => expect(peer.received).toHaveLength(2));
    const started = performance.now();
    const closed = failure(publisher.close());
    expect(await within(closed, 10_000)).toMatchObject({
      name: "PosthornError",
      code: "Timeout",
      message: expect.stringContaining("3 publishes to silent were still unsettled"),
    });
    const closeMs = performance.now() - started;
    expect(closeMs).toBeGreaterThanOrEqual(280);
    expect(closeMs).toBeLessThan(3000);
    // Nothing is left pending: every publish failed, retryable (the peer may have the message).
    for (const sent of sends) {
      expect(await within(sent, 100)).toMatchObject({
        code: "Timeout",
        retryable: true,
        message: expect.stringContaining("closeTimeoutMs (300 ms)"),
      });
    }
    // Every call gets the same answer, and the publisher refuses new publishes.
    expect(await within(failure(publisher.close()), 100)).toMatchObject({ code: "Timeout" });
    expect(await failure(publisher.publish(vector("minimal").event))).toMatchObject({
      code: "Closed",
    });
    // The link was detached: the peer's side of it is closed.
    expect(peer.received).toHaveLength(2);
  });

  it(`bounds close() by DEFAULT_CLOSE_TIMEOUT_MS (${DEFAULT_CLOSE_TIMEOUT_MS} ms) when closeTimeoutMs is not given`, {
    timeout: 20_000,
  }, async () => {
    expect(DEFAULT_CLOSE_TIMEOUT_MS).toBe(5000);
    const peer = await silentPeer();
    const { connection } = await bareConnection(peer.port);
    const publisher = amqpPublisher(connection, {
      address: "silent-default",
      timeoutMs: Number.POSITIVE_INFINITY,
    });
    await publisher.ready;
    const sent = failure(publisher.publish(vector("minimal").event));
    await vi.waitFor(() => expect(peer.received).toHaveLength(1));
    const started = performance.now();
    expect(await within(failure(publisher.close()), 15_000)).toMatchObject({
      code: "Timeout",
      message: expect.stringContaining("1 publishes to silent-default were still unsettled"),
    });
    const closeMs = performance.now() - started;
    expect(closeMs).toBeGreaterThanOrEqual(DEFAULT_CLOSE_TIMEOUT_MS - 50);
    expect(closeMs).toBeLessThan(DEFAULT_CLOSE_TIMEOUT_MS + 3000);
    expect(await within(sent, 100)).toMatchObject({ code: "Timeout" });
  });

  it("fails each publish with Timeout at its own timeoutMs, not up to a quarter of it (or 1 s) late", {
    timeout: 20_000,
  }, async () => {
    const peer = await silentPeer();
    const { connection } = await bareConnection(peer.port);
    const short = amqpPublisher(connection, { address: "silent-2s", timeoutMs: 2000 });
    const long = amqpPublisher(connection, { address: "silent-5s", timeoutMs: 5000 });
    await Promise.all([short.ready, long.ready]);
    const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    // How long each publish took to fail, next to its limit.
    const timed = (
      publisher: typeof short,
      id: string,
      limit: number,
      timeoutMs?: number,
    ): Promise<[string, number, number]> => {
      const started = performance.now();
      return publisher
        .publish({ ...vector("minimal").event, id }, timeoutMs === undefined ? {} : { timeoutMs })
        .then(
          () => [id, Number.POSITIVE_INFINITY, limit],
          () => [id, performance.now() - started, limit],
        );
    };
    const runs = [timed(short, "a", 2000), timed(long, "d", 5000)];
    await pause(260);
    runs.push(timed(short, "b", 2000));
    await pause(40);
    // A shorter limit on one call: the timer is set earlier for it.
    runs.push(timed(short, "c", 600, 600));
    await pause(200);
    runs.push(timed(long, "e", 5000));
    // One timer ticked every quarter of the limit, at most every second: "a" and "b" failed 111
    // and 148 ms late (ticks 500 ms apart, then 150 ms once "c" came), "e" 501 ms late.
    for (const [id, ms, limit] of await Promise.all(runs)) {
      expect(ms, id).toBeGreaterThanOrEqual(limit - 5);
      expect(ms, id).toBeLessThan(limit + 100);
    }
    await Promise.all([short.close(), long.close()]);
  });

  it("resolves as before when the peer settles within closeTimeoutMs", async () => {
    let settle: (() => void) | undefined;
    const peer = await startPeer();
    peer.container.removeAllListeners("message");
    peer.container.on("message", (ctx: EventContext) => {
      peer.received.push(ctx.message?.body);
      // Settled 100 ms after close() began.
      settle = () => ctx.delivery?.accept();
    });
    const { connection } = await bareConnection(peer.port);
    const publisher = amqpPublisher(connection, { address: "late", closeTimeoutMs: 2000 });
    await publisher.ready;
    const sent = failure(publisher.publish(vector("minimal").event));
    await vi.waitFor(() => expect(settle).toBeDefined());
    const closed = failure(publisher.close());
    setTimeout(() => settle?.(), 100);
    expect(await within(closed, 5000)).toBe("resolved");
    expect(await within(sent, 100)).toBe("resolved");
  });
});
