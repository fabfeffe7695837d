// The publisher's bookkeeping of transfers awaiting the peer's disposition: dispositions that
// come in any order, and late ones for publishes that already failed (timed out, aborted), each
// settle their own publish and no other. A rhea peer on a free port holds every transfer it
// receives until the test settles it.

import { amqpPublisher } from "@posthorn/binding-amqp";
import { vector } from "@posthorn/testkit";
import rhea, { type Connection, type Delivery, type EventContext } from "rhea";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeConnection, listenOnLoopback, openConnection } from "./helpers.js";

/** A peer that keeps each transfer unsettled, by the id of the event it carries. */
async function holdingPeer() {
  const container = rhea.create_container({ id: "holding-peer", autoaccept: false });
  const held = new Map<string, Delivery>();
  const arrivals: (() => void)[] = [];
  container.on("receiver_open", (ctx: EventContext) => {
    const receiver = ctx.receiver as rhea.Receiver;
    receiver.set_target({ address: (receiver.target as { address?: string }).address ?? "" });
  });
  container.on("message", (ctx: EventContext) => {
    const props = ctx.message?.application_properties as Record<string, unknown> | undefined;
    held.set(String(props?.cloudEvents_id ?? props?.["cloudEvents:id"]), ctx.delivery as Delivery);
    for (const wake of arrivals.splice(0)) wake();
  });
  const { port, stop } = await listenOnLoopback(container);
  return {
    port,
    held,
    /** Resolves once `n` transfers are held. */
    async holding(n: number): Promise<void> {
      while (held.size < n) await new Promise<void>((resolve) => arrivals.push(resolve));
    },
    stop,
  };
}

const event = (id: string) => vector("minimal").event.cloneWith({ id });
const outcome = (p: Promise<void>) =>
  p.then(
    () => "ok",
    (e: { code?: string }) => e.code,
  );

describe("amqp publisher: transfers in flight", () => {
  let peer: Awaited<ReturnType<typeof holdingPeer>>;
  let connection: Connection;
  beforeAll(async () => {
    peer = await holdingPeer();
    connection = await openConnection({ host: "127.0.0.1", port: peer.port });
  });
  afterAll(async () => {
    await closeConnection(connection);
    await peer.stop();
  });

  it("settles each publish by its own disposition, in any order; late ones for failed publishes change nothing", async () => {
    const publisher = amqpPublisher(connection, { address: "held" });
    await publisher.ready;
    const controller = new AbortController();
    const a = outcome(publisher.publish(event("a")));
    const b = outcome(publisher.publish(event("b"), { abortSignal: controller.signal }));
    const c = outcome(publisher.publish(event("c"), { timeoutMs: 100 }));
    const d = outcome(publisher.publish(event("d")));
    const e = outcome(publisher.publish(event("e")));
    await peer.holding(5);
    // b is aborted and c times out while their transfers await a disposition.
    controller.abort();
    expect(await b).toBe("Aborted");
    expect(await c).toBe("Timeout");
    // The dispositions come last-sent first; those of b and c come after their publishes failed.
    const held = peer.held;
    held.get("e")?.accept();
    held.get("c")?.accept();
    held.get("b")?.accept();
    held.get("d")?.release();
    held.get("a")?.reject({ condition: "amqp:precondition-failed", description: "no" });
    expect(await Promise.all([a, d, e])).toEqual(["PublishRejected", "PublishRejected", "ok"]);
    // Nothing is left in flight: a new publish settles, and close() has nothing to wait for.
    const f = outcome(publisher.publish(event("f")));
    await peer.holding(6);
    peer.held.get("f")?.accept();
    expect(await f).toBe("ok");
    await publisher.close();
  });
});
