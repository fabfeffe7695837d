import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  jetStreamPublisher,
  jetStreamSubscriber,
  natsPublisher,
  natsSubscriber,
} from "@posthorn/binding-nats";
import { CloudEvent, type Delivery, isPosthornError, type Subscriber } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { afterAll, describe, expect, it } from "vitest";
import { startTestNats, unique } from "./nats-server.js";

const server = await startTestNats();
// The subscribers' connection and the publishers' are different, so nothing orders a SUB on
// one before a PUB on the other: only the server having the subscription does.
const subscribing: NatsConnection = await connect({ servers: server.url });
const publishing: NatsConnection = await connect({ servers: server.url });

afterAll(async () => {
  await subscribing.close();
  await publishing.close();
  await server.stop();
});

function event(id: string): CloudEvent {
  return new CloudEvent({
    specversion: "1.0",
    id,
    source: "/ready",
    type: "com.example.ready",
    datacontenttype: "application/json",
    data: { id },
  });
}

/** The first delivery, or `undefined` when none comes within `timeoutMs`. */
async function firstWithin(
  subscriber: Subscriber,
  timeoutMs: number,
): Promise<Delivery | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const it = subscriber[Symbol.asyncIterator]();
  try {
    return await Promise.race([
      it.next().then((r) => (r.done ? undefined : r.value)),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe("natsSubscriber ready", () => {
  it("resolves once the server has the subscription: a message published at once on another connection arrives, 50 times over", async () => {
    const missed: number[] = [];
    for (let i = 0; i < 50; i++) {
      const subject = unique("ready");
      const subscriber = natsSubscriber(subscribing, { subject, formats: [json] });
      await subscriber.ready;
      const publisher = natsPublisher(publishing, { subject, mode: "binary" });
      await publisher.publish(event(`e-${i}`));
      const delivery = await firstWithin(subscriber, 2000);
      if (delivery?.event?.id !== `e-${i}`) missed.push(i);
      await subscriber.close();
      await publisher.close();
    }
    expect(missed).toEqual([]);
  });

  it("rejects with a PosthornError, and iteration fails, when the connection closes before the server answered", async () => {
    const nc = await connect({ servers: server.url });
    const subscriber = natsSubscriber(nc, { subject: unique("ready_closed"), formats: [json] });
    const closed = nc.close();
    const error = await subscriber.ready.then(
      () => undefined,
      (err: unknown) => err,
    );
    await closed;
    expect(isPosthornError(error)).toBe(true);
    expect(error).toMatchObject({ code: "Closed" });
    const it = subscriber[Symbol.asyncIterator]();
    await expect(it.next()).rejects.toBe(error);
  });
});

describe("jetStreamSubscriber ready", () => {
  it("is resolved on the subscriber the factory returns, and a message published then arrives", async () => {
    const jsm = await jetstreamManager(subscribing);
    const stream = unique("READY").toUpperCase();
    const subject = `${stream.toLowerCase()}.events`;
    await jsm.streams.add({ name: stream, subjects: [subject] });
    await jsm.consumers.add(stream, { durable_name: "workers", ack_policy: AckPolicy.Explicit });
    try {
      const subscriber = await jetStreamSubscriber(jetstream(subscribing), {
        stream,
        consumer: "workers",
        formats: [json],
      });
      await expect(subscriber.ready).resolves.toBeUndefined();
      const publisher = jetStreamPublisher(jetstream(publishing), { subject, mode: "binary" });
      await publisher.publish(event("js-1"));
      const delivery = await firstWithin(subscriber, 5000);
      expect(delivery?.event?.id).toBe("js-1");
      await delivery?.accept();
      await subscriber.close();
      await publisher.close();
    } finally {
      await jsm.streams.delete(stream);
    }
  });
});
