import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import {
  type JetStreamClientLike,
  jetStreamPublisher,
  jetStreamSubscriber,
} from "@posthorn/binding-nats";
import { CloudEvent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { connect as connectV2 } from "nats";
import { afterAll, describe, expect, it } from "vitest";
import { startTestNats, unique } from "./nats-server.js";

// What a new user meets when the stream or consumer is not what jetStreamSubscriber needs.

const server = await startTestNats();
const nc = await connect({ servers: server.url });
const js = jetstream(nc);
const jsm = await jetstreamManager(nc);
const ncV2 = await connectV2({ servers: server.url });
// Both nats.js lines, whose errors for the same mistakes differ.
const clients: ReadonlyArray<readonly [string, JetStreamClientLike]> = [
  ["@nats-io/jetstream v3", js],
  ["nats v2", ncV2.jetstream()],
];
const streams: string[] = [];

afterAll(async () => {
  for (const name of streams) await jsm.streams.delete(name).catch(() => undefined);
  await nc.close();
  await ncV2.close();
  await server.stop();
});

async function stream(): Promise<string> {
  const name = unique("SETUP").toUpperCase();
  await jsm.streams.add({ name, subjects: [`${name.toLowerCase()}.>`] });
  streams.push(name);
  return name;
}

describe("jetStreamSubscriber", () => {
  it("refuses a consumer with ack_policy none, whose settlements the server ignores", async () => {
    const name = await stream();
    await jsm.consumers.add(name, { durable_name: "fire", ack_policy: AckPolicy.None });
    const made = jetStreamSubscriber(js, { stream: name, consumer: "fire", formats: [json] });
    await expect(made).rejects.toMatchObject({
      name: "PosthornError",
      code: "NotSupported",
      protocolCode: "none",
      message: expect.stringMatching(/ack_policy "none".*AckPolicy\.Explicit/),
    });
  });

  it("refuses a consumer with ack_policy all, where one ack settles earlier messages too", async () => {
    const name = await stream();
    await jsm.consumers.add(name, { durable_name: "all", ack_policy: AckPolicy.All });
    const made = jetStreamSubscriber(js, { stream: name, consumer: "all", formats: [json] });
    await expect(made).rejects.toMatchObject({ code: "NotSupported", protocolCode: "all" });
  });

  it("refuses a consumer name that asks nats.js for an ordered consumer, whose acks the server ignores", async () => {
    const name = await stream();
    for (const consumer of [undefined, "", { name_prefix: "o" }] as unknown as string[]) {
      const made = jetStreamSubscriber(js, { stream: name, consumer, formats: [json] });
      await expect(made).rejects.toMatchObject({
        code: "NotSupported",
        attribute: "consumer",
        message: expect.stringMatching(/durable consumer.*ordered consumer/),
      });
    }
  });

  it("takes a consumer with explicit acks", async () => {
    const name = await stream();
    await jsm.consumers.add(name, { durable_name: "ok", ack_policy: AckPolicy.Explicit });
    const subscriber = await jetStreamSubscriber(js, { stream: name, consumer: "ok" });
    await subscriber.close();
  });
});

describe.each(clients)("with %s", (_, client) => {
  it("says a missing stream does not exist, as a subscribe failure that retrying will not mend", async () => {
    const missing = unique("MISSING").toUpperCase();
    const made = jetStreamSubscriber(client, { stream: missing, consumer: "workers" });
    await expect(made).rejects.toMatchObject({
      code: "ConnectionFailed",
      retryable: false,
      message: expect.stringContaining(`stream "${missing.slice(0, 40)}`),
    });
    await expect(made).rejects.toThrow(/does not exist on this server: create it/);
  });

  it("says which consumer is missing and how to create it", async () => {
    const name = await stream();
    const made = jetStreamSubscriber(client, { stream: name, consumer: "nobody" });
    await expect(made).rejects.toMatchObject({ code: "ConnectionFailed", retryable: false });
    await expect(made).rejects.toThrow(
      /has no consumer "nobody": create the durable pull consumer/,
    );
  });

  it("says a push consumer is not one it reads", async () => {
    const name = await stream();
    await jsm.consumers.add(name, {
      durable_name: "push",
      ack_policy: AckPolicy.Explicit,
      deliver_subject: `${name.toLowerCase()}_deliver`,
    });
    const made = jetStreamSubscriber(client, { stream: name, consumer: "push" });
    await expect(made).rejects.toMatchObject({ code: "ConnectionFailed", retryable: false });
    await expect(made).rejects.toThrow(/is a push consumer/);
  });

  it.each(["consumer", "stream"] as const)(
    "ends iteration with an error when its %s is deleted, instead of waiting for good",
    async (deleted) => {
      const name = await stream();
      await jsm.consumers.add(name, { durable_name: "w", ack_policy: AckPolicy.Explicit });
      const subscriber = await jetStreamSubscriber(client, { stream: name, consumer: "w" });
      // Handled from the start: the failure can arrive while the deletion's own request is still
      // waiting for its answer, and a rejection left unhandled until then fails the run.
      const next = subscriber[Symbol.asyncIterator]()
        .next()
        .then(
          () => "resolved",
          (err: unknown) => err,
        );
      // The pull request is at the server before the deletion.
      await nc.flush();
      await new Promise((resolve) => setTimeout(resolve, 100));
      if (deleted === "consumer") await jsm.consumers.delete(name, "w");
      else await jsm.streams.delete(name);
      const outcome = await Promise.race([
        next,
        new Promise((resolve) => setTimeout(() => resolve("still waiting after 5 s"), 5000)),
      ]);
      expect(outcome).toMatchObject({
        name: "PosthornError",
        code: "ConnectionFailed",
        retryable: false,
        message: expect.stringMatching(/consumer "w" of stream .* was deleted/),
      });
      await subscriber.close();
    },
  );

  it("says no stream stores the subject of a JetStream publish", async () => {
    const subject = unique("uncovered");
    const publisher = jetStreamPublisher(client, { subject });
    const published = publisher.publish(CloudEvent.create({ type: "t", source: "/s" }));
    await expect(published).rejects.toMatchObject({ code: "PublishRejected", retryable: false });
    await expect(published).rejects.toThrow(/no JetStream stream stores subject/);
  });
});
