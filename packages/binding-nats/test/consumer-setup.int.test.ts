import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { jetStreamSubscriber } from "@posthorn/binding-nats";
import { json } from "@posthorn/format-json";
import { afterAll, describe, expect, it } from "vitest";
import { startTestNats, unique } from "./nats-server.js";

// What a new user meets when the stream or consumer is not what jetStreamSubscriber needs.

const server = await startTestNats();
const nc = await connect({ servers: server.url });
const js = jetstream(nc);
const jsm = await jetstreamManager(nc);
const streams: string[] = [];

afterAll(async () => {
  for (const name of streams) await jsm.streams.delete(name).catch(() => undefined);
  await nc.close();
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

  it("takes a consumer with explicit acks", async () => {
    const name = await stream();
    await jsm.consumers.add(name, { durable_name: "ok", ack_policy: AckPolicy.Explicit });
    const subscriber = await jetStreamSubscriber(js, { stream: name, consumer: "ok" });
    await subscriber.close();
  });
});
