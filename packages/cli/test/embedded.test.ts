import { toAmqpMessage } from "@posthorn/binding-amqp";
import type { Delivery, Subscriber } from "@posthorn/core";
import { vector } from "@posthorn/testkit";
import rhea, { type EventContext } from "rhea";
import { afterEach, describe, expect, it } from "vitest";
import { type EmbeddedServer, startAmqpPeer } from "../src/embedded.js";
import { createSubscriber } from "../src/index.js";

// The AMQP peer the demo (and conformance without AMQP_URL) starts listens through the frame
// guard, so what reaches it from a connection it accepted is checked as on the CLI's own client
// connections.

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A data section claiming 4 GiB in a 10-byte message: rhea's decoder throws a RangeError. */
const truncated = Buffer.from([0x00, 0x53, 0x75, 0xb0, 0xff, 0xff, 0xff, 0xff, 1, 2]);
const typical = (): Buffer =>
  rhea.message.encode(toAmqpMessage(vector("typical").event, { codec: rhea }) as never);

/** A plain rhea client that sends `payloads` (message bytes) to `address` on the peer. */
function hostileSender(peer: EmbeddedServer, address: string, payloads: Buffer[]) {
  const client = rhea.create_container({ id: "posthorn-hostile-client" });
  const disconnected: unknown[] = [];
  client.on("disconnected", (ctx: EventContext) => disconnected.push(ctx.error ?? "closed"));
  client.on("error", () => {});
  const connection = client.connect({ host: "127.0.0.1", port: peer.port, reconnect: false });
  const sender = connection.open_sender({ target: { address } });
  const queue = [...payloads];
  const send = (): void => {
    while (queue.length > 0 && sender.sendable()) sender.send(queue.shift() as never, undefined, 0);
  };
  sender.on("sendable", send);
  cleanups.push(() => void connection.close());
  return { disconnected };
}

async function take(subscriber: Subscriber, n: number): Promise<Delivery[]> {
  const iterator = subscriber[Symbol.asyncIterator]();
  const taken: Delivery[] = [];
  while (taken.length < n) {
    const next = await iterator.next();
    if (next.done === true) break;
    taken.push(next.value);
  }
  return taken;
}

describe("startAmqpPeer", () => {
  it("passes a message rhea cannot decode on as MalformedInput, keeping the sender's connection", async () => {
    const peer = await startAmqpPeer();
    cleanups.push(() => peer.stop());
    const subscriber = await createSubscriber(`${peer.url}/hostile`, { timeoutMs: 5000 });
    cleanups.push(() => subscriber.close());
    const client = hostileSender(peer, "hostile", [truncated, typical()]);
    const [bad, good] = await Promise.race([
      take(subscriber, 2),
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error("nothing arrived within 5 s")), 5000),
      ),
    ]);
    // Without the guard, rhea's decoder met the bytes in the peer and nothing arrived.
    expect(bad?.event).toBeUndefined();
    expect(bad?.error).toMatchObject({
      code: "MalformedInput",
      message: expect.stringMatching(/claims more bytes than there are/),
    });
    expect(Buffer.from(bad?.message.body ?? [])).toEqual(truncated);
    expect(good?.event).toEqual(vector("typical").event);
    await good?.accept();
    expect(client.disconnected).toEqual([]);
  });
});
