import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  jetStreamSubscriber,
  NatsHeaders,
  natsSubscriber,
  toNatsMessage,
} from "@posthorn/binding-nats";
import type { Delivery } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { vector } from "@posthorn/testkit";
import { afterAll, describe, expect, it } from "vitest";
import { startTestNats, unique } from "./nats-server.js";

// The decoding limits protect the receiver, so they hold for every message, CloudEvent or not:
// a plain message past one arrives as its Message with PayloadTooLarge beside it, settled as an
// event past the limit is. A plain message used to pass whatever its size and header count, and a
// structured event's headers went uncounted.

const server = await startTestNats();
const nc: NatsConnection = await connect({ servers: server.url });
const js = jetstream(nc);
const jsm = await jetstreamManager(nc);
const streams: string[] = [];

afterAll(async () => {
  for (const name of streams) await jsm.streams.delete(name).catch(() => undefined);
  await nc.close();
  await server.stop();
});

const limits = { maxPayloadBytes: 1000, maxHeaders: 10, formats: [json] };

function manyHeaders(count: number, first: ReadonlyArray<[string, string]> = []): NatsHeaders {
  const entries: [string, string][] = [...first];
  for (let i = 0; i < count; i++) entries.push([`x-h${i}`, "v"]);
  return new NatsHeaders(entries);
}

/** The messages each subscriber is sent, in order, and what each must arrive as. */
function send(publish: (data: Uint8Array, headers?: NatsHeaders) => Promise<unknown>) {
  const structured = toNatsMessage(vector("minimal").event, { mode: "structured", format: json });
  const structuredHeaders: [string, string][] = [...structured.headers].map(([name, values]) => [
    name,
    String(values[0]),
  ]);
  return (async () => {
    // A plain payload past maxPayloadBytes.
    await publish(new Uint8Array(1500).fill(0x61));
    // A plain message with 20 header values past maxHeaders.
    await publish(new Uint8Array(10), manyHeaders(20));
    // A structured event whose headers are past maxHeaders.
    await publish(structured.data, manyHeaders(20, structuredHeaders));
    // Within both limits: no error.
    await publish(new Uint8Array(1000), manyHeaders(10));
  })();
}

function expectOverLimits(got: Delivery[]): void {
  expect(got.map((d) => d.error?.code)).toEqual([
    "PayloadTooLarge",
    "PayloadTooLarge",
    "PayloadTooLarge",
    undefined,
  ]);
  expect(got.map((d) => d.event)).toEqual([undefined, undefined, undefined, undefined]);
  expect(got[0]?.error?.message).toMatch(
    /1500 bytes exceeds the limit of 1000 \(maxPayloadBytes\)/,
  );
  expect(got[1]?.error?.message).toMatch(/more than 10 header values \(maxHeaders\)/);
  // Each keeps its Message as it came: the payload and every header.
  expect(got[0]?.message.body).toHaveLength(1500);
  expect(Object.keys(got[1]?.message.properties ?? {})).toHaveLength(20);
  expect(got[2]?.message.contentType).toBe("application/cloudevents+json");
  expect(got[3]?.message.body).toHaveLength(1000);
}

describe("decoding limits on messages that are no CloudEvent", () => {
  it("core NATS: a plain message past maxPayloadBytes or maxHeaders, and a structured event past maxHeaders, come with PayloadTooLarge", async () => {
    const subject = unique("plainlimits");
    const subscriber = natsSubscriber(nc, { subject, ...limits });
    await subscriber.ready;
    await send(async (data, headers) => nc.publish(subject, data, headers ? { headers } : {}));
    const got: Delivery[] = [];
    for await (const d of subscriber) {
      got.push(d);
      if (got.length === 4) break;
    }
    expectOverLimits(got);
  });

  it("JetStream: the same, and reject() terminates such a message as it does an event past the limit", async () => {
    const stream = unique("PLAINLIM").toUpperCase();
    const subject = `${stream.toLowerCase()}.in`;
    await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] });
    streams.push(stream);
    await jsm.consumers.add(stream, {
      durable_name: "w",
      ack_policy: AckPolicy.Explicit,
      ack_wait: 1_000_000_000,
    });
    await send((data, headers) => js.publish(subject, data, headers ? { headers } : {}));
    const subscriber = await jetStreamSubscriber(js, { stream, consumer: "w", ...limits });
    const got: Delivery[] = [];
    for await (const d of subscriber) {
      got.push(d);
      if (d.error) await d.reject(d.error.message);
      else await d.accept();
      if (got.length === 4) break;
    }
    expectOverLimits(got);
    // Terminated or acknowledged, each of them: nothing waits to come back after the 1 s ack wait.
    const info = await jsm.consumers.info(stream, "w");
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_redelivered).toBe(0);
  });
});
