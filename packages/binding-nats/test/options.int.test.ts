import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  jetStreamPublisher,
  jetStreamSubscriber,
  natsPublisher,
  natsSubscriber,
} from "@posthorn/binding-nats";
import { json } from "@posthorn/format-json";
import { nextDelivery, refusedOption, shutdownEvent } from "@posthorn/testkit";
import { afterAll, describe, expect, it } from "vitest";
import { startTestNats, unique } from "./nats-server.js";

// Numeric options are checked where the publisher or subscriber is made, on a real connection
// to a nats-server the test starts.
const server = await startTestNats();
const nc: NatsConnection = await connect({ servers: server.url });
const js = jetstream(nc);

afterAll(async () => {
  await nc.close();
  await server.stop();
});

const refused = refusedOption;

const NaN_ = Number.NaN;

/**
 * The ids of the events a core subscriber on `subject` receives while `publishing` runs and then
 * `last`, which publishes `shutdownEvent("nats", 9)` normally: what the server routed on the
 * subject, in order, up to that event.
 */
async function seenOn(
  subject: string,
  publishing: () => Promise<void>,
  last: () => Promise<unknown>,
): Promise<string[]> {
  const watcher = natsSubscriber(nc, { subject, formats: [json] });
  await watcher.ready;
  const it = watcher[Symbol.asyncIterator]();
  await publishing();
  // Long enough for what was sent to come back on this connection.
  await new Promise((resolve) => setTimeout(resolve, 150));
  await last();
  const lastId = shutdownEvent("nats", 9).id;
  const seen: string[] = [];
  while (seen.at(-1) !== lastId) {
    const delivery = await nextDelivery(it, 2000);
    seen.push(delivery.event?.id ?? "(no event)");
    await delivery.accept();
  }
  await watcher.close();
  return seen;
}

describe("NATS numeric options", () => {
  it("jetStreamPublisher refuses a maxInFlight of NaN, which published nothing and resolved", () => {
    const subject = unique("opts");
    // Array.from({ length: Math.min(NaN, n) }) started no worker: publish([...]) resolved at once
    // with nothing sent.
    expect(() => jetStreamPublisher(js, { subject, maxInFlight: NaN_ })).toThrow(
      refused("maxInFlight", "NaN"),
    );
    expect(() => jetStreamPublisher(js, { subject, maxInFlight: 0 })).toThrow(
      refused("maxInFlight", "0"),
    );
    expect(() => jetStreamPublisher(js, { subject, maxInFlight: 1.5 })).toThrow(
      refused("maxInFlight", "1.5"),
    );
    expect(() => jetStreamPublisher(js, { subject, timeoutMs: -1 })).toThrow(
      refused("timeoutMs", "-1"),
    );
    expect(() =>
      jetStreamPublisher(js, { subject, maxInFlight: Infinity, timeoutMs: Infinity }),
    ).not.toThrow();
  });

  it("both publishers refuse bad limits, and a bad per-call or flush timeoutMs rejects the call", async () => {
    const subject = unique("opts");
    for (const make of [
      (o: object) => natsPublisher(nc, { subject, ...o }),
      (o: object) => jetStreamPublisher(js, { subject, ...o }),
    ]) {
      expect(() => make({ maxPayloadBytes: NaN_ })).toThrow(refused("maxPayloadBytes", "NaN"));
      expect(() => make({ maxPayloadBytes: -1 })).toThrow(refused("maxPayloadBytes", "-1"));
      expect(() => make({ closeTimeoutMs: NaN_ })).toThrow(refused("closeTimeoutMs", "NaN"));
    }
    const core = natsPublisher(nc, { subject });
    await expect(core.publish(shutdownEvent("nats", 0), { timeoutMs: NaN_ })).rejects.toEqual(
      refused("timeoutMs", "NaN"),
    );
    // NaN made flush() race a timer that fired at once, and fail with Timeout.
    await expect(core.flush({ timeoutMs: NaN_ })).rejects.toEqual(refused("timeoutMs", "NaN"));
    await core.close();
    const jsp = jetStreamPublisher(js, { subject });
    await expect(jsp.publish(shutdownEvent("nats", 1), { timeoutMs: -1 })).rejects.toEqual(
      refused("timeoutMs", "-1"),
    );
    await jsp.close();
  });

  it("a per-call timeoutMs of 0 fails a core publish with Timeout and publishes nothing", async () => {
    const subject = unique("opts-zero");
    const publisher = natsPublisher(nc, { subject });
    const seen = await seenOn(
      subject,
      async () => {
        // The message went out, and the call resolved.
        await expect(
          publisher.publish(shutdownEvent("nats", 0), { timeoutMs: 0 }),
        ).rejects.toMatchObject({ name: "PosthornError", code: "Timeout" });
        await expect(
          publisher.publish([shutdownEvent("nats", 1), shutdownEvent("nats", 2)], { timeoutMs: 0 }),
        ).rejects.toMatchObject({ code: "Timeout" });
        await publisher.flush();
      },
      () => publisher.publish(shutdownEvent("nats", 9), { timeoutMs: 5000 }),
    );
    expect(seen).toEqual([shutdownEvent("nats", 9).id]);
    await publisher.close();
  });

  it("a timeoutMs of 0 fails a JetStream publish with Timeout and sends nothing to the stream", async () => {
    const jsm = await jetstreamManager(nc);
    const stream = unique("OPTS_ZERO").toUpperCase();
    const subject = `${stream.toLowerCase()}.events`;
    await jsm.streams.add({ name: stream, subjects: [subject] });
    try {
      // The message went out, was stored, and the caller was told Timeout before any PubAck.
      const given = jetStreamPublisher(js, { subject, timeoutMs: 0 });
      const perCall = jetStreamPublisher(js, { subject });
      let sequence = 0;
      const seen = await seenOn(
        subject,
        async () => {
          await expect(given.publish(shutdownEvent("nats", 0))).rejects.toMatchObject({
            name: "PosthornError",
            code: "Timeout",
          });
          await expect(
            given.publish([shutdownEvent("nats", 1), shutdownEvent("nats", 2)]),
          ).rejects.toMatchObject({ code: "Timeout" });
          await expect(
            perCall.publishWithAck(shutdownEvent("nats", 3), { timeoutMs: 0 }),
          ).rejects.toMatchObject({ code: "Timeout" });
          await expect(
            perCall.publish(shutdownEvent("nats", 4), { timeoutMs: 0 }),
          ).rejects.toMatchObject({ code: "Timeout" });
        },
        async () => {
          const ack = await given.publishWithAck(shutdownEvent("nats", 9), { timeoutMs: 5000 });
          sequence = ack.sequence;
        },
      );
      expect(seen).toEqual([shutdownEvent("nats", 9).id]);
      // The first message the stream ever stored.
      expect(sequence).toBe(1);
      expect((await jsm.streams.info(stream)).state.messages).toBe(1);
      await given.close();
      await perCall.close();
    } finally {
      await jsm.streams.delete(stream);
    }
  });

  it("a JetStream timeoutMs of Infinity, or past the longest timer, waits for the PubAck", async () => {
    const jsm = await jetstreamManager(nc);
    const stream = unique("OPTS_INF").toUpperCase();
    const subject = `${stream.toLowerCase()}.events`;
    await jsm.streams.add({ name: stream, subjects: [subject] });
    const overflows: string[] = [];
    const onWarning = (warning: Error) => {
      if (warning.name === "TimeoutOverflowWarning") overflows.push(warning.message);
    };
    process.on("warning", onWarning);
    try {
      // nats.js gave the limit to setTimeout, which fired after 1 ms: Timeout every time, the
      // event stored all the same.
      const unlimited = jetStreamPublisher(js, { subject, timeoutMs: Infinity });
      const perCall = jetStreamPublisher(js, { subject });
      const acks = [
        await unlimited.publishWithAck(shutdownEvent("nats", 0)),
        await perCall.publishWithAck(shutdownEvent("nats", 1), { timeoutMs: Infinity }),
        await perCall.publishWithAck(shutdownEvent("nats", 2), { timeoutMs: 2 ** 31 }),
      ];
      await unlimited.publish([shutdownEvent("nats", 3), shutdownEvent("nats", 4)]);
      expect(acks.map((a) => a.sequence)).toEqual([1, 2, 3]);
      expect((await jsm.streams.info(stream)).state.messages).toBe(5);
      // setImmediate: Node emits process warnings on a later tick.
      await new Promise((resolve) => setImmediate(resolve));
      expect(overflows).toEqual([]);
      await unlimited.close();
      await perCall.close();
    } finally {
      process.off("warning", onWarning);
      await jsm.streams.delete(stream);
    }
  });

  it("natsSubscriber refuses a bad maxPending or decoding limit before it subscribes", () => {
    const subject = unique("opts");
    const cases: [object, string, string][] = [
      [{ maxPending: 0 }, "maxPending", "0"],
      [{ maxPending: 2.5 }, "maxPending", "2.5"],
      [{ maxPayloadBytes: NaN_ }, "maxPayloadBytes", "NaN"],
      [{ maxHeaders: -1 }, "maxHeaders", "-1"],
      [{ json: { maxDepth: NaN_ } }, "json.maxDepth", "NaN"],
      [{ maxJsonDepth: 1.5 }, "maxJsonDepth", "1.5"],
    ];
    for (const [options, option, shown] of cases) {
      expect(() => natsSubscriber(nc, { subject, ...options })).toThrow(refused(option, shown));
    }
    const sub = natsSubscriber(nc, { subject, maxPending: Infinity, maxPayloadBytes: 0 });
    return sub.close();
  });

  it("jetStreamSubscriber refuses bad values before it looks the consumer up", async () => {
    // The stream does not exist: a value that were taken would fail with the lookup instead.
    const target = { stream: unique("no-stream"), consumer: "none" };
    const cases: [object, string, string][] = [
      // nats.js took 0 and NaN for its default of 100 messages.
      [{ maxMessages: 0 }, "maxMessages", "0"],
      [{ maxMessages: NaN_ }, "maxMessages", "NaN"],
      [{ maxMessages: Infinity }, "maxMessages", "Infinity"],
      // nats.js took 0 and NaN for its default of 30 s, and refused less than 1 s itself.
      [{ expiresMs: 0 }, "expiresMs", "0"],
      [{ expiresMs: NaN_ }, "expiresMs", "NaN"],
      [{ expiresMs: 999 }, "expiresMs", "999"],
      [{ drainTimeoutMs: NaN_ }, "drainTimeoutMs", "NaN"],
      [{ stopTimeoutMs: -1 }, "stopTimeoutMs", "-1"],
      [{ maxHeaders: NaN_ }, "maxHeaders", "NaN"],
    ];
    for (const [options, option, shown] of cases) {
      await expect(jetStreamSubscriber(js, { ...target, ...options })).rejects.toEqual(
        refused(option, shown),
      );
    }
    await expect(jetStreamSubscriber(js, { ...target, expiresMs: 1000 })).rejects.not.toMatchObject(
      {
        code: "NotSupported",
      },
    );
  });
});
