import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import {
  jetStreamPublisher,
  jetStreamSubscriber,
  natsPublisher,
  natsSubscriber,
} from "@posthorn/binding-nats";
import { json } from "@posthorn/format-json";
import {
  baselineHandles,
  expectNoLeakedHandles,
  type LaunchedBroker,
  type OpenHandles,
  shutdownEvent,
  startNatsServer,
  takeDeliveries,
} from "@posthorn/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unique } from "./nats-server.js";

// Graceful shutdown against a nats-server this file starts: close() resolves with work in
// flight, unsettled JetStream deliveries go back at once, and no socket or timer is left.
let server: LaunchedBroker;
let baseline: OpenHandles;

beforeAll(async () => {
  server = await startNatsServer();
  baseline = await baselineHandles();
});

afterAll(async () => {
  await server?.stop();
});

describe("NATS graceful shutdown", () => {
  it("JetStream: close() resolves with publishes in flight and deliveries in hand, which go back to another subscriber at once", async () => {
    const nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc);
    const stream = unique("SHUTDOWN").toUpperCase();
    const subject = `${stream.toLowerCase()}.jobs`;
    await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] });
    // A long ack wait: whatever comes back quickly came back because close() released it.
    await jsm.consumers.add(stream, {
      durable_name: "workers",
      ack_policy: AckPolicy.Explicit,
      ack_wait: 60 * 1_000_000_000,
    });
    const js = jetstream(nc);
    const publisher = jetStreamPublisher(js, { subject });
    const publishes = [1, 2, 3, 4].map((i) => publisher.publish(shutdownEvent("nats", i)));
    await publisher.close();
    await Promise.all(publishes);
    await expect(publisher.publish(shutdownEvent("nats", 9))).rejects.toMatchObject({
      code: "Closed",
    });

    const first = await jetStreamSubscriber(js, {
      stream,
      consumer: "workers",
      formats: [json],
      maxMessages: 2,
    });
    const it = first[Symbol.asyncIterator]();
    const [a, b] = await takeDeliveries(it, 2);
    await a?.accept();
    expect(first.inFlight).toBe(1);
    // Wait until nats.js pulled ahead (job 3, maybe 4, into its buffer) and nothing is in transit:
    // the answer comes on the same connection, after those messages.
    // (A message still on the wire when close() stops the pull is dropped by nats.js and comes
    // back only after the ack wait; docs/reliability.md.)
    const deadline = Date.now() + 5000;
    for (;;) {
      const info = await jsm.consumers.info(stream, "workers");
      // Nothing in transit: no pull is outstanding, or nothing is left to send to one.
      const quiet = info.num_waiting === 0 || info.num_pending === 0;
      if (quiet && info.delivered.stream_seq >= 3) break;
      if (Date.now() > deadline)
        throw new Error(`the server did not deliver the jobs: ${JSON.stringify(info)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await first.close();
    expect((await it.next()).done).toBe(true);
    await expect(b?.accept()).rejects.toMatchObject({ code: "SettlementFailed" });

    const second = await jetStreamSubscriber(js, {
      stream,
      consumer: "workers",
      formats: [json],
      maxMessages: 8,
    });
    // Well inside the 60 s ack wait: they came back because close() released them.
    const rest = await takeDeliveries(second[Symbol.asyncIterator](), 3, 10_000);
    const ids = rest.map((d) => d.event?.id);
    // A stream is read in order: a was shutdown-1, b in hand, 3 (and maybe 4) pulled ahead.
    expect(a?.event?.id).toBe("shutdown-1");
    expect(ids.sort()).toEqual(["shutdown-2", "shutdown-3", "shutdown-4"]);
    expect(rest.find((d) => d.event?.id === b?.event?.id)?.deliveryCount).toBe(2);
    for (const d of rest) await d.accept();
    await second.close();
    await jsm.streams.delete(stream);
    await nc.close();
    await expectNoLeakedHandles(baseline);
  });

  it("core NATS: close() flushes the publisher and drains the subscriber; nothing is left open", async () => {
    const nc = await connect({ servers: server.url });
    const subject = unique("shutdown.core");
    const subscriber = natsSubscriber(nc, { subject, formats: [json] });
    const publisher = natsPublisher(nc, { subject });
    await Promise.all([1, 2, 3].map((i) => publisher.publish(shutdownEvent("nats", i))));
    await publisher.close();
    const got = await takeDeliveries(subscriber[Symbol.asyncIterator](), 3);
    expect(got.map((d) => d.event?.id)).toEqual(["shutdown-1", "shutdown-2", "shutdown-3"]);
    await subscriber.close();
    await nc.close();
    await expectNoLeakedHandles(baseline);
  });
});
