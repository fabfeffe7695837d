import type { Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  jetStreamPublisher,
  jetStreamSubscriber,
  natsPublisher,
  natsSubscriber,
} from "@posthorn/binding-nats";
import { type Delivery, isPosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { vector, watchTimerOverflows } from "@posthorn/testkit";
import { connect as connectV2 } from "nats";
import { afterAll, describe, expect, it } from "vitest";
import { startTestNats, unique } from "./nats-server.js";

// Leaving a for-await loop closes the subscriber (core's Subscriber contract), against a
// nats-server this file starts. Without that, a queue-group member that left its loop keeps its
// share of the group's messages, and a JetStream message in hand waits out the ack wait.
const server = await startTestNats();
const nc: NatsConnection = await connect({ servers: server.url });
const jsm = await jetstreamManager(nc);

afterAll(async () => {
  await nc.close();
  await server.stop();
});

/** What the tests use of a connection of either client. */
interface ClosableConnection {
  readonly protocol: { readonly transport: { readonly socket: Socket } };
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Pulls one delivery, or undefined after `ms`. */
async function nextWithin(it: AsyncIterator<Delivery>, ms: number): Promise<Delivery | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([
    it.next(),
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]).finally(() => clearTimeout(timer));
  return r === undefined || r.done ? undefined : r.value;
}

describe("leaving the loop over core NATS", () => {
  it("a queue-group member that breaks out of its loop leaves the group: the remaining member gets every later message", async () => {
    const subject = unique("leave-group");
    const group = "workers";
    const leaver = natsSubscriber(nc, { subject, queue: group, formats: [json] });
    const nc2 = await connect({ servers: server.url });
    try {
      await nc.flush();
      const publisher = natsPublisher(nc, { subject });
      await publisher.publish(vector("minimal").event.cloneWith({ id: "first" }));
      for await (const d of leaver) {
        expect(d.event?.id).toBe("first");
        break;
      }

      const stayer = natsSubscriber(nc2, { subject, queue: group, formats: [json] });
      await nc2.flush();
      const total = 200;
      const ids = new Set<string>();
      const received = (async () => {
        for await (const d of stayer) {
          ids.add(d.event?.id ?? "?");
          if (ids.size === total) break;
        }
      })();
      await publisher.publish(
        Array.from({ length: total }, (_, i) => vector("minimal").event.cloneWith({ id: `m${i}` })),
      );
      await nc.flush();
      await Promise.race([received, new Promise((r) => setTimeout(r, 3000))]);
      expect(ids.size).toBe(total);
      await stayer.close();
    } finally {
      await nc2.close();
    }
  });
});

describe("leaving the loop over JetStream", () => {
  const js = jetstream(nc);

  /**
   * A stream holding `count` jobs, "job-1" first, and its durable consumer "workers"; returns the
   * stream.
   */
  async function jobs(count = 1): Promise<string> {
    const stream = unique("LEAVE").toUpperCase();
    const subject = `${stream.toLowerCase()}.jobs`;
    await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] });
    // An ack wait far longer than the tests wait: only a nak brings the message back in time.
    await jsm.consumers.add(stream, {
      durable_name: "workers",
      ack_policy: AckPolicy.Explicit,
      ack_wait: 60 * 1_000_000_000,
    });
    await jetStreamPublisher(js, { subject }).publish(
      Array.from({ length: count }, (_, i) =>
        vector("minimal").event.cloneWith({ id: `job-${i + 1}` }),
      ),
    );
    return stream;
  }

  /**
   * What a second worker on the stream's consumer gets, accepting each, until it waits a second
   * for more: the job ids in arrival order.
   */
  async function jobsLeft(stream: string): Promise<string[]> {
    const second = await jetStreamSubscriber(js, { stream, consumer: "workers", formats: [json] });
    const it = second[Symbol.asyncIterator]();
    const ids: string[] = [];
    for (let d = await nextWithin(it, 3000); d; d = await nextWithin(it, 1000)) {
      ids.push(d.event?.id ?? "?");
      await d.accept();
    }
    await second.close();
    return ids;
  }

  it("a delivery in hand when the loop is left is naked: it comes back at once, not after the ack wait", async () => {
    const stream = await jobs();
    try {
      const first = await jetStreamSubscriber(js, { stream, consumer: "workers", formats: [json] });
      let kept: Delivery | undefined;
      for await (const d of first) {
        kept = d;
        break;
      }
      expect(kept?.event?.id).toBe("job-1");
      expect(kept?.deliveryCount).toBe(1);
      // Released by the close: settling it now says so.
      const err = await kept?.accept().catch((e: unknown) => e);
      expect(isPosthornError(err, "SettlementFailed")).toBe(true);

      const second = await jetStreamSubscriber(js, {
        stream,
        consumer: "workers",
        formats: [json],
      });
      const again = await nextWithin(second[Symbol.asyncIterator](), 5000);
      expect(again?.event?.id).toBe("job-1");
      // Its deliveryCount is not asserted: nats-server 2.9.10 counts a message naked after the
      // pull that carried it was stopped as delivered once (deliverySequence 2, deliveryCount 1),
      // with an explicit close() as well.
      await again?.accept();
      await second.close();
    } finally {
      await jsm.streams.delete(stream).catch(() => undefined);
    }
  });

  it("with drainTimeoutMs, leaving the loop waits for a delivery handed to other work: accepted meanwhile, it is acked", async () => {
    const stream = await jobs();
    try {
      const first = await jetStreamSubscriber(js, {
        stream,
        consumer: "workers",
        formats: [json],
        drainTimeoutMs: 5000,
      });
      let handled: Promise<void> | undefined;
      const started = Date.now();
      for await (const d of first) {
        handled = (async () => {
          await new Promise((r) => setTimeout(r, 200));
          await d.accept();
        })();
        break;
      }
      const left = Date.now() - started;
      await handled;
      expect(left).toBeGreaterThanOrEqual(150);
      expect(left).toBeLessThan(2000);

      const second = await jetStreamSubscriber(js, {
        stream,
        consumer: "workers",
        formats: [json],
      });
      expect(await nextWithin(second[Symbol.asyncIterator](), 1500)).toBeUndefined();
      await second.close();
      expect((await jsm.consumers.info(stream, "workers")).num_ack_pending).toBe(0);
    } finally {
      await jsm.streams.delete(stream).catch(() => undefined);
    }
  });

  it("messages pulled ahead and not handed out come back once each, at once, when the loop is left", async () => {
    const stream = await jobs(10);
    try {
      const first = await jetStreamSubscriber(js, { stream, consumer: "workers", formats: [json] });
      for await (const d of first) {
        expect(d.event?.id).toBe("job-1");
        await d.accept();
        break;
      }
      // nats.js had pulled the other nine; the close naked them. Naked oldest first, nats-server
      // 2.9 redelivered one of them twice and kept another until the ack wait (60 s here).
      expect((await jobsLeft(stream)).sort()).toEqual([
        "job-10",
        "job-2",
        "job-3",
        "job-4",
        "job-5",
        "job-6",
        "job-7",
        "job-8",
        "job-9",
      ]);
    } finally {
      await jsm.streams.delete(stream).catch(() => undefined);
    }
  });

  it("a release() before close(), with more jobs stored than pulled ahead: every job comes back once, at once", async () => {
    const stream = await jobs(30);
    try {
      const first = await jetStreamSubscriber(js, {
        stream,
        consumer: "workers",
        formats: [json],
        maxMessages: 10,
      });
      const it1 = first[Symbol.asyncIterator]();
      await (await nextWithin(it1, 3000))?.accept();
      const released = await nextWithin(it1, 3000);
      expect(released?.event?.id).toBe("job-2");
      await released?.release();
      await sleep(100);
      // nats.js queues its next pull requests behind the messages it holds, and sends them as
      // those are taken. Taken by close() after the subscription was gone, they went out with
      // that subscription's inbox: the released job was delivered there and came back only after
      // the ack wait (60 s here), and nats-server 2.9 sent another twice.
      await first.close();
      expect((await jobsLeft(stream)).sort()).toEqual(
        Array.from({ length: 29 }, (_, i) => `job-${i + 2}`).sort(),
      );
    } finally {
      await jsm.streams.delete(stream).catch(() => undefined);
    }
  });

  it("messages the server had sent when close() began come back once each, at once", async () => {
    const stream = await jobs(2000);
    // A connection of its own, whose reading the test holds back; consumer info through another.
    const own = await connect({ servers: server.url });
    try {
      const first = await jetStreamSubscriber(jetstream(own), {
        stream,
        consumer: "workers",
        formats: [json],
        maxMessages: 1000,
      });
      const it = first[Symbol.asyncIterator]();
      await (await nextWithin(it, 3000))?.accept();
      await own.flush();
      // The client reads nothing more while the server sends the rest of the pull (1,000): they
      // wait in the socket, on the wire, as under load.
      const socket = (own as unknown as { protocol: { transport: { socket: Socket } } }).protocol
        .transport.socket;
      socket.pause();
      for (let i = 0; i < 100; i++) {
        const info = await jsm.consumers.info(stream, "workers");
        if (info.num_ack_pending >= 999) break;
        await sleep(20);
      }
      // Stopped at once, nats.js dropped what was still in the socket, and the server held it
      // until the ack wait (60 s here): 769 of 1,000 in a run without the pause.
      const closing = first.close();
      socket.resume();
      await closing;
      const ids = await jobsLeft(stream);
      expect(ids).toHaveLength(1999);
      expect(new Set(ids).size).toBe(1999);
    } finally {
      await own.close();
      await jsm.streams.delete(stream).catch(() => undefined);
    }
  });

  // The subscriber's own connection, from nats.js v3 or the `nats` v2 package (the drain reads
  // the same members of both clients' pull iterators).
  const clients = [
    {
      name: "nats.js v3",
      open: async () => {
        const own = await connect({ servers: server.url });
        return { own: own as unknown as ClosableConnection, js: jetstream(own) };
      },
    },
    {
      name: "nats v2",
      open: async () => {
        const own = await connectV2({ servers: server.url });
        return { own: own as unknown as ClosableConnection, js: own.jetstream() };
      },
    },
  ];

  it.each(clients)(
    "messages the server sends while close() is under way come back once each, at once ($name)",
    async ({ open }) => {
      const stream = unique("LEAVE").toUpperCase();
      const subject = `${stream.toLowerCase()}.jobs`;
      await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] });
      // Only a nak brings a job back before the ack wait, which jobsLeft never waits out.
      await jsm.consumers.add(stream, {
        durable_name: "workers",
        ack_policy: AckPolicy.Explicit,
        ack_wait: 30 * 1_000_000_000,
      });
      const { own, js: ownJs } = await open();
      const socket = own.protocol.transport.socket;
      const write = socket.write;
      try {
        const first = await jetStreamSubscriber(
          ownJs as Parameters<typeof jetStreamSubscriber>[0],
          {
            stream,
            consumer: "workers",
            formats: [json],
            maxMessages: 2000,
          },
        );
        // nats.js sends its first pull request when the iterator is first pulled.
        const publisher = jetStreamPublisher(js, { subject });
        await publisher.publish(vector("minimal").event.cloneWith({ id: "job-0" }));
        await (await nextWithin(first[Symbol.asyncIterator](), 3000))?.accept();
        await own.flush();
        // What the client writes from now on reaches the server 300 ms late, in order: a slow
        // link (or a busy server) while the server's consumer goes on sending for the pull.
        socket.write = ((...args: Parameters<Socket["write"]>) => {
          setTimeout(() => write.apply(socket, args), 300);
          return true;
        }) as Socket["write"];
        const closing = first.close();
        // 1,000 jobs published over about a second, through another connection, while it closes.
        for (let batch = 0; batch < 20; batch++) {
          await publisher.publish(
            Array.from({ length: 50 }, (_, i) =>
              vector("minimal").event.cloneWith({ id: `job-${batch * 50 + i + 1}` }),
            ),
          );
          await sleep(50);
        }
        await closing;
        socket.write = write;
        // Stopped after a round trip, nats.js dropped what the server sent between its answer
        // and the unsubscription, and the server held those until the ack wait.
        const ids = await jobsLeft(stream);
        expect(ids).toHaveLength(1000);
        expect(new Set(ids).size).toBe(1000);
      } finally {
        socket.write = write;
        await own.close();
        await jsm.streams.delete(stream).catch(() => undefined);
      }
    },
  );

  it("stopTimeoutMs Infinity sets no limit: close() waits for the server's answer", async () => {
    const stream = await jobs(10);
    const own = await connect({ servers: server.url });
    const socket = (own as unknown as { protocol: { transport: { socket: Socket } } }).protocol
      .transport.socket;
    const overflows = watchTimerOverflows();
    try {
      const first = await jetStreamSubscriber(jetstream(own), {
        stream,
        consumer: "workers",
        formats: [json],
        stopTimeoutMs: Infinity,
      });
      const kept = await nextWithin(first[Symbol.asyncIterator](), 3000);
      expect(kept?.event?.id).toBe("job-1");
      socket.pause();
      let closed = false;
      const closing = first.close().then(() => {
        closed = true;
      });
      // A timer set to Infinity fires after 1 ms: close() went on without the answer by then.
      await sleep(300);
      expect(closed).toBe(false);
      socket.resume();
      await closing;
      expect(overflows.count()).toBe(0);
    } finally {
      overflows.stop();
      socket.resume();
      await own.close();
      await jsm.streams.delete(stream).catch(() => undefined);
    }
  });

  it("close() waits at most stopTimeoutMs for a server that does not answer", async () => {
    const stream = await jobs(10);
    const own = await connect({ servers: server.url });
    const socket = (own as unknown as { protocol: { transport: { socket: Socket } } }).protocol
      .transport.socket;
    try {
      const first = await jetStreamSubscriber(jetstream(own), {
        stream,
        consumer: "workers",
        formats: [json],
        stopTimeoutMs: 500,
      });
      const kept = await nextWithin(first[Symbol.asyncIterator](), 3000);
      expect(kept?.event?.id).toBe("job-1");
      // The client reads nothing more, so no answer of the server reaches it.
      socket.pause();
      const started = Date.now();
      const closedAfterMs = await Promise.race([
        first.close().then(() => Date.now() - started),
        sleep(5000).then(() => Number.POSITIVE_INFINITY),
      ]);
      // One round trip given up on after 500 ms; the ones after it are not waited for.
      expect(closedAfterMs).toBeGreaterThanOrEqual(450);
      expect(closedAfterMs).toBeLessThan(1500);
      // The delivery in hand was naked all the same.
      expect(
        isPosthornError(await kept?.accept().catch((e: unknown) => e), "SettlementFailed"),
      ).toBe(true);
    } finally {
      socket.resume();
      await own.close();
      await jsm.streams.delete(stream).catch(() => undefined);
    }
  });
});
