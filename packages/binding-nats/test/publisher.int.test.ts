import { getEventListeners } from "node:events";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetStreamPublisher, natsPublisher } from "@posthorn/binding-nats";
import { isPosthornError, PosthornError } from "@posthorn/core";
import { settledWithin, shutdownEvent, unencodableEvent } from "@posthorn/testkit";
import { afterAll, describe, expect, it } from "vitest";
import { startTestNats, unique } from "./nats-server.js";

// The publishers' contract against a nats-server this file starts (or NATS_URL's).
const server = await startTestNats();
const nc: NatsConnection = await connect({ servers: server.url });

afterAll(async () => {
  await nc.close();
  await server.stop();
});

describe("natsPublisher close()", () => {
  it("called twice with messages not yet flushed, resolves both calls only once the server has them all", async () => {
    const subject = unique("close_twice");
    // A subscription on the publishing connection: the server answers the flush's PING after it
    // has routed every message published before it, so each one is counted here by then.
    let received = 0;
    const sub = nc.subscribe(subject, {
      callback: () => {
        received++;
      },
    });
    await nc.flush();
    const publisher = natsPublisher(nc, { subject });
    const total = 500;
    for (let i = 0; i < total; i++) await publisher.publish(shutdownEvent("nats", i));
    // Each call reports how many messages had come back when it resolved.
    const first = publisher.close().then(() => received);
    const second = publisher.close().then(() => received);
    expect(received).toBe(0);
    expect(await settledWithin(Promise.all([first, second]), 5000)).toEqual({
      resolved: [total, total],
    });
    expect(await settledWithin(publisher.close(), 2000)).toEqual({ resolved: undefined });
    sub.unsubscribe();
  });
});

/** What `make` throws. */
function thrown(make: () => unknown): unknown {
  try {
    make();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe("structured mode without a format", () => {
  it("is NotSupported for a structured-mode publisher, core or JetStream, as in the other bindings", () => {
    const core = thrown(() => natsPublisher(nc, { subject: unique("nofmt"), mode: "structured" }));
    expect(isPosthornError(core, "NotSupported")).toBe(true);
    const js = thrown(() =>
      jetStreamPublisher(jetstream(nc), { subject: unique("nofmt"), mode: "structured" }),
    );
    expect(isPosthornError(js, "NotSupported")).toBe(true);
  });

  it("rejects a structured publish on a binary publisher with NotSupported, and sends nothing", async () => {
    const subject = unique("nofmt_call");
    let received = 0;
    const sub = nc.subscribe(subject, {
      callback: () => {
        received++;
      },
    });
    await nc.flush();
    const publisher = natsPublisher(nc, { subject });
    for (const events of [shutdownEvent("nats", 1), [shutdownEvent("nats", 2)]]) {
      const err = await publisher.publish(events, { mode: "structured" }).catch((e: unknown) => e);
      expect(isPosthornError(err, "NotSupported")).toBe(true);
      expect((err as Error).message).toMatch(/format/);
    }
    const js = jetStreamPublisher(jetstream(nc), { subject });
    const err = await js.publish(shutdownEvent("nats", 3), { mode: "structured" }).catch((e) => e);
    expect(isPosthornError(err, "NotSupported")).toBe(true);
    await publisher.close();
    expect(received).toBe(0);
    sub.unsubscribe();
  });
});

describe("publish(array) with an event that cannot be encoded", () => {
  const invalid = unencodableEvent("nats");
  const array = () => [shutdownEvent("nats", 1), invalid, shutdownEvent("nats", 3)];

  it("core NATS: rejects with the encoding error and sends none of the array", async () => {
    const subject = unique("array_invalid");
    let received = 0;
    const sub = nc.subscribe(subject, {
      callback: () => {
        received++;
      },
    });
    await nc.flush();
    const publisher = natsPublisher(nc, { subject });
    await expect(publisher.publish(array())).rejects.toMatchObject({
      name: "PosthornError",
      code: "InvalidEvent",
    });
    // close() flushes: the server has routed whatever was published, back to this connection.
    await publisher.close();
    expect(received).toBe(0);
    sub.unsubscribe();
  });

  it("JetStream: rejects with the encoding error and the stream stores none of the array", async () => {
    const jsm = await jetstreamManager(nc);
    const stream = unique("ARRAY_INVALID").toUpperCase();
    const subject = `${stream.toLowerCase()}.events`;
    await jsm.streams.add({ name: stream, subjects: [subject] });
    try {
      const publisher = jetStreamPublisher(jetstream(nc), { subject });
      await expect(publisher.publish(array())).rejects.toMatchObject({
        name: "PosthornError",
        code: "InvalidEvent",
      });
      await publisher.close();
      expect((await jsm.streams.info(stream)).state.messages).toBe(0);
    } finally {
      await jsm.streams.delete(stream);
    }
  });
});

describe("a subject function that throws", () => {
  const bug = new Error("no region on this event");
  const subject = () => {
    throw bug;
  };

  it("rejects the publish with InvalidEvent, the error as cause, core and JetStream, nothing sent", async () => {
    const core = natsPublisher(nc, { subject });
    const js = jetStreamPublisher(jetstream(nc), { subject });
    for (const publish of [
      () => core.publish(shutdownEvent("nats", 1)),
      () => core.publish([shutdownEvent("nats", 1), shutdownEvent("nats", 2)]),
      () => js.publish(shutdownEvent("nats", 1)),
      () => js.publishWithAck(shutdownEvent("nats", 1)),
      () => js.publish([shutdownEvent("nats", 1), shutdownEvent("nats", 2)]),
    ]) {
      // It used to reject with the function's raw Error.
      await expect(publish()).rejects.toMatchObject({
        name: "PosthornError",
        code: "InvalidEvent",
        attribute: "subject",
        retryable: false,
        cause: bug,
        message: expect.stringContaining('the subject function threw for event "shutdown-1"'),
      });
    }
    // A PosthornError the function throws is passed on as it is.
    const own = new PosthornError("NotSupported", "no subject for this type");
    const typed = natsPublisher(nc, {
      subject: () => {
        throw own;
      },
    });
    await expect(typed.publish(shutdownEvent("nats", 1))).rejects.toBe(own);
    await core.close();
    await js.close();
  });
});

describe("a JetStream messageId function that throws", () => {
  it("rejects with InvalidEvent, the error as cause, and the stream stores none of an array", async () => {
    const jsm = await jetstreamManager(nc);
    const stream = unique("MSGID").toUpperCase();
    const subject = `${stream.toLowerCase()}.events`;
    await jsm.streams.add({ name: stream, subjects: [subject] });
    try {
      const bug = new Error("no tenant on this event");
      const publisher = jetStreamPublisher(jetstream(nc), {
        subject,
        messageId: (e) => {
          if (e.id === "shutdown-3") throw bug;
          return e.id;
        },
      });
      const refused = {
        name: "PosthornError",
        code: "InvalidEvent",
        attribute: "messageId",
        cause: bug,
      };
      // It threw once the two events before it were published, with the raw Error.
      await expect(
        publisher.publish([1, 2, 3].map((i) => shutdownEvent("nats", i))),
      ).rejects.toMatchObject(refused);
      await expect(publisher.publishWithAck(shutdownEvent("nats", 3))).rejects.toMatchObject(
        refused,
      );
      await publisher.close();
      expect((await jsm.streams.info(stream)).state.messages).toBe(0);
    } finally {
      await jsm.streams.delete(stream);
    }
  });
});

describe("subjects NATS cannot publish to", () => {
  const refused = { name: "PosthornError", code: "NotSupported", attribute: "subject" };

  it("a wildcard token is refused with NotSupported before anything is sent: a fixed subject when the publisher is made, a computed or per-call one per publish", async () => {
    const base = unique("wild");
    // nats-server took such publishes: this subscription got each one (and `${base}.a` none).
    let received = 0;
    const sub = nc.subscribe(`${base}.>`, { callback: () => void received++ });
    const jsm = await jetstreamManager(nc);
    const stream = unique("WILD").toUpperCase();
    const js = `${stream.toLowerCase()}`;
    await jsm.streams.add({ name: stream, subjects: [`${js}.>`] });
    try {
      await nc.flush();
      for (const subject of [`${base}.*`, `${base}.>`, `${base}.*.x`, "*", ">", `${js}.*`]) {
        expect(thrown(() => natsPublisher(nc, { subject }))).toMatchObject(refused);
        expect(thrown(() => jetStreamPublisher(jetstream(nc), { subject }))).toMatchObject(refused);
      }
      const event = shutdownEvent("nats", 1);
      for (const publish of [
        () => natsPublisher(nc, { subject: () => `${base}.*` }).publish(event),
        () => natsPublisher(nc, { subject: `${base}.a` }).publish(event, { subject: `${base}.>` }),
        () =>
          natsPublisher(nc, { subject: `${base}.a` }).publish([event], { subject: `${base}.*` }),
        () => jetStreamPublisher(jetstream(nc), { subject: () => `${js}.>` }).publish(event),
        () =>
          jetStreamPublisher(jetstream(nc), { subject: `${js}.a` }).publishWithAck(event, {
            subject: `${js}.*`,
          }),
      ]) {
        await expect(publish()).rejects.toMatchObject({
          ...refused,
          message: expect.stringMatching(/a "\*" or ">" token is a wildcard/),
        });
      }
      // A "*" or ">" inside a token is no wildcard.
      await natsPublisher(nc, { subject: `${base}.a*b` }).publish(event);
      await jetStreamPublisher(jetstream(nc), { subject: `${js}.a>b` }).publish(event);
      await nc.flush();
      expect(received).toBe(1);
      expect((await jsm.streams.info(stream)).state.messages).toBe(1);
    } finally {
      sub.unsubscribe();
      await jsm.streams.delete(stream);
    }
  });

  it("a subject with an empty token is refused: nats-server took it and delivered it to no one", async () => {
    const base = unique("hollow");
    // Not even a subscriber to everything got such a publish (checked against nats-server 2.9.10).
    let received = 0;
    const sub = nc.subscribe(">", {
      callback: (_err, msg) => {
        if (msg.subject.startsWith(base)) received++;
      },
    });
    try {
      await nc.flush();
      for (const subject of [`${base}..a`, `.${base}`, `${base}.`, "."]) {
        expect(thrown(() => natsPublisher(nc, { subject }))).toMatchObject(refused);
        expect(thrown(() => jetStreamPublisher(jetstream(nc), { subject }))).toMatchObject(refused);
        await expect(
          natsPublisher(nc, { subject: () => subject }).publish(shutdownEvent("nats", 1)),
        ).rejects.toMatchObject({ ...refused, message: expect.stringMatching(/empty token/) });
      }
      // The same subject with every token filled goes out.
      await natsPublisher(nc, { subject: `${base}.a.b` }).publish(shutdownEvent("nats", 2));
      await nc.flush();
      expect(received).toBe(1);
    } finally {
      sub.unsubscribe();
    }
  });

  it("an empty subject, or one with white space or a control character, is NotSupported too", async () => {
    for (const subject of ["", "a b", "a\tb", "a\r\nPUB x 1", "a\u0000b", undefined, 42]) {
      const options = { subject } as unknown as { subject: string };
      expect(thrown(() => natsPublisher(nc, options))).toMatchObject(refused);
      expect(thrown(() => jetStreamPublisher(jetstream(nc), options))).toMatchObject(refused);
      const computed = natsPublisher(nc, { subject: () => subject as string });
      await expect(computed.publish(shutdownEvent("nats", 1))).rejects.toMatchObject(refused);
    }
  });
});

describe("JetStream publish(array) with an abortSignal", () => {
  it("listens once per call, not once per message in flight: no leak warning, none left", async () => {
    const jsm = await jetstreamManager(nc);
    const stream = unique("ARRAY_ABORT").toUpperCase();
    const subject = `${stream.toLowerCase()}.events`;
    await jsm.streams.add({ name: stream, subjects: [subject] });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      const publisher = jetStreamPublisher(jetstream(nc), { subject, maxInFlight: 64 });
      const events = (from: number, n: number) =>
        Array.from({ length: n }, (_, i) => shutdownEvent("nats", from + i));
      // Stored in full, with up to 64 acknowledgements outstanding at once.
      const kept = new AbortController();
      const publishing = publisher.publish(events(0, 300), { abortSignal: kept.signal });
      await new Promise((r) => setImmediate(r));
      expect(getEventListeners(kept.signal, "abort")).toHaveLength(1);
      await publishing;
      expect(getEventListeners(kept.signal, "abort")).toHaveLength(0);
      expect((await jsm.streams.info(stream)).state.messages).toBe(300);
      // Aborted with most of the array not yet sent: the call rejects Aborted and sends no more.
      const stopped = new AbortController();
      const cut = publisher.publish(events(1000, 300), { abortSignal: stopped.signal });
      stopped.abort();
      const err = await cut.catch((e: unknown) => e);
      expect(isPosthornError(err, "Aborted")).toBe(true);
      expect(getEventListeners(stopped.signal, "abort")).toHaveLength(0);
      await publisher.close();
      const stored = (await jsm.streams.info(stream)).state.messages;
      expect(stored).toBeGreaterThanOrEqual(300);
      expect(stored).toBeLessThanOrEqual(300 + 64);
      await new Promise((r) => setTimeout(r, 50));
      expect(warnings.map((w) => w.name)).not.toContain("MaxListenersExceededWarning");
    } finally {
      process.off("warning", onWarning);
      await jsm.streams.delete(stream);
    }
  });
});
