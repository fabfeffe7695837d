import type { Socket } from "node:net";
import {
  AckPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
} from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  fromNatsMessage,
  JETSTREAM_CAPABILITIES,
  type JetStreamSubscriber,
  jetStreamPublisher,
  jetStreamSubscriber,
  type NatsContentMode,
  NatsHeaders,
  toMessageEnvelope,
} from "@posthorn/binding-nats";
import {
  asJob,
  CloudEvent,
  type Delivery,
  type EventFormat,
  ExtensionRegistry,
  equivalent,
  malformed,
  utf8Encode,
} from "@posthorn/core";
import { json } from "@posthorn/format-json";
import {
  type BindingPath,
  countSocketWrites,
  describeBindingConformance,
  vector,
} from "@posthorn/testkit";
import { afterAll, describe, expect, it } from "vitest";
import { FORMATS } from "./formats.js";
import { startTestNats, tooLarge, unique } from "./nats-server.js";

const server = await startTestNats();
const nc: NatsConnection = await connect({ servers: server.url });
const js: JetStreamClient = jetstream(nc);
const jsm: JetStreamManager = await jetstreamManager(nc);
const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
const formats = FORMATS;
const streams: string[] = [];
const subscribers: JetStreamSubscriber[] = [];

afterAll(async () => {
  for (const s of subscribers) await s.close();
  for (const name of streams) await jsm.streams.delete(name).catch(() => undefined);
  await nc.close();
  await server.stop();
});

const SECOND = 1_000_000_000;

/** A stream on its own subjects with one durable explicit-ack consumer. */
async function streamWithConsumer(
  options: { workQueue?: boolean; ackWaitMs?: number; duplicateWindowMs?: number } = {},
): Promise<{ stream: string; subject: string; consumer: string }> {
  const stream = unique("S").toUpperCase();
  const subject = `${stream.toLowerCase()}.events`;
  await jsm.streams.add({
    name: stream,
    subjects: [`${stream.toLowerCase()}.>`],
    ...(options.workQueue ? { retention: RetentionPolicy.Workqueue } : {}),
    ...(options.duplicateWindowMs
      ? { duplicate_window: options.duplicateWindowMs * 1_000_000 }
      : {}),
  });
  streams.push(stream);
  const consumer = "workers";
  await jsm.consumers.add(stream, {
    durable_name: consumer,
    ack_policy: AckPolicy.Explicit,
    ack_wait: ((options.ackWaitMs ?? 30_000) / 1000) * SECOND,
  });
  return { stream, subject, consumer };
}

async function subscribe(
  stream: string,
  consumer: string,
  client: JetStreamClient = js,
  options: { drainTimeoutMs?: number } = {},
) {
  const s = await jetStreamSubscriber(client, {
    stream,
    consumer,
    formats,
    maxMessages: 64,
    ...options,
  });
  subscribers.push(s);
  return s;
}

// One pending pull per iterator: a timed-out wait keeps its pull for the next call, so no
// delivery is taken by a pull nobody reads.
const pendingPulls = new WeakMap<AsyncIterator<Delivery>, Promise<IteratorResult<Delivery>>>();

async function next(it: AsyncIterator<Delivery>, timeoutMs = 5000): Promise<Delivery | undefined> {
  let pull = pendingPulls.get(it);
  if (!pull) {
    pull = it.next();
    pendingPulls.set(it, pull);
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((r) => {
    timer = setTimeout(() => r("timeout"), timeoutMs);
  });
  const r = await Promise.race([pull, timeout]);
  clearTimeout(timer);
  if (r === "timeout") return undefined;
  pendingPulls.delete(it);
  return r.done ? undefined : r.value;
}

describe("jetStreamSubscriber registry", () => {
  it("decodes structured events with the default json adapted to its registry, as binary ones", async () => {
    const { stream, subject, consumer } = await streamWithConsumer();
    const registry = new ExtensionRegistry([
      { name: "priority", type: "Integer" },
      { name: "checksum", type: "Binary" },
    ]);
    const subscriber = await jetStreamSubscriber(js, {
      stream,
      consumer,
      formats: [json],
      registry,
    });
    subscribers.push(subscriber);
    const sent = vector("minimal").event.cloneWith({ priority: "-7", checksum: "AAH+/w==" });
    const it = subscriber[Symbol.asyncIterator]();
    const received: CloudEvent[] = [];
    for (const mode of ["structured", "binary"] as const) {
      // The same id twice: no de-duplication here.
      const publisher = jetStreamPublisher(js, {
        subject,
        mode,
        format: json,
        messageId: () => undefined,
      });
      await publisher.publish(sent);
      const d = await next(it);
      received.push(d?.event as CloudEvent);
      await d?.accept();
    }
    const [structured, binary] = received;
    expect(structured?.priority).toBe(-7);
    expect(structured?.checksum).toEqual(new Uint8Array([0, 1, 254, 255]));
    expect(structured).toEqual(binary);
  });
});

function jetStreamPath(path: BindingPath) {
  let pair: { publish: (e: CloudEvent) => Promise<void>; it: AsyncIterator<Delivery> } | undefined;
  return async (event: CloudEvent): Promise<CloudEvent> => {
    if (!pair) {
      const { stream, subject, consumer } = await streamWithConsumer();
      const publisher = jetStreamPublisher(js, {
        subject,
        mode: path.mode as NatsContentMode,
        ...(path.format ? { format: path.format } : {}),
        // Conformance publishes one vector per id several times: no de-duplication here.
        messageId: () => undefined,
      });
      const subscriber = await subscribe(stream, consumer);
      pair = { publish: (e) => publisher.publish(e), it: subscriber[Symbol.asyncIterator]() };
    }
    await pair.publish(event);
    const d = await next(pair.it);
    if (!d) throw new Error("no delivery");
    await d.accept();
    if (d.error) throw d.error;
    if (!d.event) throw malformed("not read as a CloudEvent");
    return d.event;
  };
}

const binary = jetStreamPath({ mode: "binary" });
describeBindingConformance({
  name: "nats JetStream (nats-server, binary)",
  paths: [{ mode: "binary" }],
  typed: false,
  caseSensitive: false,
  timeoutMs: 10_000,
  roundTrip: (event) => binary(event),
  skip: (vec, path) => tooLarge(vec.event, path, maxPayload),
});

const structured = new Map(
  formats.map((f) => [f, jetStreamPath({ mode: "structured", format: f })]),
);
describeBindingConformance({
  name: "nats JetStream (nats-server, structured)",
  paths: formats.map((format) => ({ mode: "structured" as const, format })),
  typed: true,
  caseSensitive: true,
  timeoutMs: 10_000,
  roundTrip: (event, path) =>
    (structured.get(path.format as EventFormat) as (e: CloudEvent) => Promise<CloudEvent>)(event),
  skip: (vec, path) => tooLarge(vec.event, path, maxPayload),
});

describe("JetStream settlement", () => {
  it("writes the acks of deliveries settled in one tick in one system call, and loses none", async () => {
    const { stream, subject, consumer } = await streamWithConsumer();
    const count = 50;
    const events = Array.from({ length: count }, (_, i) =>
      vector("typical").event.cloneWith({ id: `cork-${i}` }),
    );
    await jetStreamPublisher(js, { subject, messageId: () => undefined }).publish(events);
    // A connection of its own, so that only the subscriber's writes are counted.
    const own = await connect({ servers: server.url });
    try {
      const sub = await subscribe(stream, consumer, jetstream(own));
      const it = sub[Symbol.asyncIterator]();
      const first = await next(it);
      // Every message in nats.js's buffer (one pull of up to 64 asked for all of them).
      await new Promise((resolve) => setTimeout(resolve, 300));
      // One tick: each pull resolves through microtasks only, and so does each accept.
      const deliveries = [first];
      for (let i = 1; i < count; i++) deliveries.push(await next(it));
      const socket = (own as unknown as { protocol: { transport: { socket: Socket } } }).protocol
        .transport.socket;
      const writes = countSocketWrites(socket);
      try {
        for (const d of deliveries) await d?.accept();
        await new Promise((resolve) => setImmediate(resolve));
        expect(new Set(deliveries.map((d) => d?.event?.id)).size).toBe(count);
        // Without the cork, one write per ack (50 here).
        expect(writes.calls).toBe(1);
      } finally {
        writes.restore();
      }
      let pending = -1;
      for (let i = 0; i < 50 && pending !== 0; i++) {
        pending = (await jsm.consumers.info(stream, consumer)).num_ack_pending;
        if (pending !== 0) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(pending).toBe(0);
      expect((await jsm.consumers.info(stream, consumer)).ack_floor.stream_seq).toBe(count);
    } finally {
      await own.close();
    }
  });

  it("accept() acks: the message is not delivered again", async () => {
    const { stream, subject, consumer } = await streamWithConsumer({ ackWaitMs: 1000 });
    await jetStreamPublisher(js, { subject }).publish(vector("typical").event);
    const sub = await subscribe(stream, consumer);
    expect(sub.capabilities).toEqual(JETSTREAM_CAPABILITIES);
    const it = sub[Symbol.asyncIterator]();
    const d = await next(it);
    expect(d?.deliveryCount).toBe(1);
    expect(asJob(d as Delivery)?.attempt).toBe(1);
    await d?.accept();
    expect(await next(it, 1800)).toBeUndefined();
    const info = await jsm.consumers.info(stream, consumer);
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
  });

  it("release({ delayMs }) naks: redelivered no sooner than the delay, with the attempt counted", async () => {
    const { stream, subject, consumer } = await streamWithConsumer();
    await jetStreamPublisher(js, { subject }).publish(vector("typical").event);
    const it = (await subscribe(stream, consumer))[Symbol.asyncIterator]();
    const first = await next(it);
    const released = Date.now();
    await first?.release({ delayMs: 700 });
    const again = await next(it, 5000);
    const waited = Date.now() - released;
    expect(again?.event?.id).toBe(vector("typical").event.id);
    expect(again?.deliveryCount).toBe(2);
    expect(asJob(again as Delivery)?.attempt).toBe(2);
    expect(waited).toBeGreaterThanOrEqual(650);
    await again?.accept();
  });

  it("release({ delayMs }) past the longest delay nats-server takes, or of a fraction of a nanosecond, still holds the message back", async () => {
    const { stream, subject, consumer } = await streamWithConsumer();
    const events = ["huge", "backoff"].map((id) => vector("typical").event.cloneWith({ id }));
    await jetStreamPublisher(js, { subject }).publish(events);
    const it = (await subscribe(stream, consumer))[Symbol.asyncIterator]();
    const [huge, backoff] = [await next(it), await next(it)];
    expect([huge?.event?.id, backoff?.event?.id]).toEqual(["huge", "backoff"]);
    // nats.js sends delayMs * 10^6 as a JSON number, which the server reads into a Go duration
    // (int64 nanoseconds): 9.007e21 did not parse, and the server took a plain nak (back at once).
    await huge?.release({ delayMs: Number.MAX_SAFE_INTEGER });
    const released = Date.now();
    // An exponential backoff's 1331.0000000000005 ms is 1331000000.0000005 ns: no int64 either.
    await backoff?.release({ delayMs: 1000 * 1.1 ** 3 });
    const again = await next(it, 5000);
    expect(again?.event?.id).toBe("backoff");
    expect(again?.deliveryCount).toBe(2);
    expect(Date.now() - released).toBeGreaterThanOrEqual(1300);
    await again?.accept();
    expect(await next(it, 1500)).toBeUndefined();
    // The server holds it, delivered once and not acknowledged, until its far redelivery time.
    const info = await jsm.consumers.info(stream, consumer);
    expect(info.num_ack_pending).toBe(1);
  });

  it("reject() terminates: no redelivery, and the server publishes a MSG_TERMINATED advisory", async () => {
    const { stream, subject, consumer } = await streamWithConsumer({ ackWaitMs: 1000 });
    const advisories: string[] = [];
    const adv = nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.${stream}.${consumer}`, {
      callback: (_err, m) => {
        advisories.push(m.string());
      },
    });
    await jetStreamPublisher(js, { subject }).publish(vector("typical").event);
    const it = (await subscribe(stream, consumer))[Symbol.asyncIterator]();
    const d = await next(it);
    await d?.reject("cannot parse the order");
    expect(await next(it, 1800)).toBeUndefined();
    expect(advisories).toHaveLength(1);
    expect(JSON.parse(advisories[0] as string).stream_seq).toBe(1);
    adv.unsubscribe();
  });

  it("a release() of the delivery that reaches max_deliver is the last: no redelivery, a MAX_DELIVERIES advisory, and metadata.maxDeliver said so", async () => {
    const { stream, subject } = await streamWithConsumer();
    const consumer = "limited";
    await jsm.consumers.add(stream, {
      durable_name: consumer,
      ack_policy: AckPolicy.Explicit,
      max_deliver: 2,
    });
    const advisories: string[] = [];
    const adv = nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${consumer}`, {
      callback: (_err, m) => {
        advisories.push(m.string());
      },
    });
    await nc.flush();
    await jetStreamPublisher(js, { subject }).publish(vector("typical").event);
    const it = (await subscribe(stream, consumer))[Symbol.asyncIterator]();
    const first = await next(it);
    expect(first?.deliveryCount).toBe(1);
    expect(first?.message.metadata?.maxDeliver).toBe(2);
    await first?.release();
    const last = await next(it);
    expect(last?.deliveryCount).toBe(2);
    expect(last?.deliveryCount).toBe(last?.message.metadata?.maxDeliver);
    await last?.release();
    // The server delivers it no more: not at once, not after an ack wait.
    expect(await next(it, 1500)).toBeUndefined();
    expect(advisories).toHaveLength(1);
    expect(JSON.parse(advisories[0] as string)).toMatchObject({ stream_seq: 1, deliveries: 2 });
    // Still stored, and no longer pending on the consumer.
    expect((await jsm.streams.info(stream)).state.messages).toBe(1);
    expect((await jsm.consumers.info(stream, consumer)).num_ack_pending).toBe(0);
    adv.unsubscribe();
  });

  it("inProgress() keeps a long job from being redelivered past the ack wait", async () => {
    const { stream, subject, consumer } = await streamWithConsumer({ ackWaitMs: 1000 });
    await jetStreamPublisher(js, { subject }).publish(vector("typical").event);
    const sub = await subscribe(stream, consumer);
    const it = sub[Symbol.asyncIterator]();
    const d = await next(it);
    const pending = it.next();
    let redelivered = false;
    void pending.then(() => {
      redelivered = true;
    });
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 500));
      await d?.inProgress();
    }
    expect(redelivered).toBe(false);
    await d?.accept();
    expect(redelivered).toBe(false);
    await sub.close();
  });

  it("messages pulled ahead are kept in progress until handed out: with the default maxMessages each job is handled once", async () => {
    // Handlers of 1.2 s, past the 1 s ack wait, calling inProgress() every 300 ms for the job in
    // hand. The others wait in nats.js's buffer (c for 2.4 s, e for 3.6 s): three jobs pulled
    // together before the first is handed out, two more that arrive while it is handled. Without
    // the subscriber's +WPI for them, the server sent each again as it waited past the ack wait.
    const { stream, subject, consumer } = await streamWithConsumer({ ackWaitMs: 1000 });
    const publisher = jetStreamPublisher(js, { subject });
    const job = (id: string) =>
      new CloudEvent({ specversion: "1.0", id, source: "/jobs", type: "job" });
    for (const id of ["a", "b", "c"]) await publisher.publish(job(id));
    const sub = await jetStreamSubscriber(js, { stream, consumer, formats });
    subscribers.push(sub);
    const it = sub[Symbol.asyncIterator]();
    const seen: string[] = [];
    for (let d = await next(it, 3000); d; d = await next(it, 1500)) {
      seen.push(`${d.event?.id}#${d.deliveryCount}`);
      if (seen.length === 1) for (const id of ["d", "e"]) await publisher.publish(job(id));
      const work = setInterval(() => void d?.inProgress(), 300);
      await new Promise((r) => setTimeout(r, 1200));
      clearInterval(work);
      await d.accept();
    }
    await sub.close();
    expect(seen).toEqual(["a#1", "b#1", "c#1", "d#1", "e#1"]);
  });

  it("close() releases deliveries handed out and not settled, so another consumer gets them at once", async () => {
    const { stream, subject, consumer } = await streamWithConsumer();
    await jetStreamPublisher(js, { subject }).publish(vector("typical").event);
    const first = await subscribe(stream, consumer);
    const d = await next(first[Symbol.asyncIterator]());
    expect(first.inFlight).toBe(1);
    // A second worker is already waiting when the first shuts down.
    const second = await subscribe(stream, consumer);
    const secondIt = second[Symbol.asyncIterator]();
    const waiting = next(secondIt, 3000);
    const closeStarted = Date.now();
    await first.close();
    // drainTimeoutMs defaults to 0: close() does not wait for the delivery in hand.
    expect(Date.now() - closeStarted).toBeLessThan(1000);
    expect(d?.settled).toBe(true);
    await expect(d?.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
    const again = await waiting;
    expect(again?.event?.id).toBe(vector("typical").event.id);
    expect(again?.deliveryCount).toBe(2);
    await again?.accept();
  });

  it("close() with drainTimeoutMs waits for a delivery in hand: accepted during the wait, it is acked and close() resolves soon after", async () => {
    // A long ack wait: a message that comes back came back because it was not acked.
    const { stream, subject, consumer } = await streamWithConsumer({ ackWaitMs: 60_000 });
    await jetStreamPublisher(js, { subject }).publish(vector("typical").event);
    const sub = await subscribe(stream, consumer, js, { drainTimeoutMs: 5000 });
    const d = await next(sub[Symbol.asyncIterator]());
    expect(d?.event?.id).toBe(vector("typical").event.id);
    let closedAt: number | undefined;
    const closing = sub.close();
    expect(sub.close()).toBe(closing);
    void closing.then(() => {
      closedAt = Date.now();
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(closedAt).toBeUndefined();
    await d?.inProgress();
    const acceptedAt = Date.now();
    await d?.accept();
    await closing;
    expect((closedAt as number) - acceptedAt).toBeLessThan(1000);
    expect(sub.inFlight).toBe(0);
    const again = await subscribe(stream, consumer);
    expect(await next(again[Symbol.asyncIterator](), 1500)).toBeUndefined();
    // Asked after that wait: the server applies an ack after it answered the flush that sent it.
    const info = await jsm.consumers.info(stream, consumer);
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
  });

  it("close() with drainTimeoutMs naks a delivery still unsettled when the wait is over: settling it then is SettlementFailed, and it is delivered again", async () => {
    const { stream, subject, consumer } = await streamWithConsumer({ ackWaitMs: 60_000 });
    await jetStreamPublisher(js, { subject }).publish(vector("typical").event);
    const sub = await subscribe(stream, consumer, js, { drainTimeoutMs: 300 });
    const d = await next(sub[Symbol.asyncIterator]());
    const started = Date.now();
    await sub.close();
    const closeMs = Date.now() - started;
    expect(closeMs).toBeGreaterThanOrEqual(250);
    expect(closeMs).toBeLessThan(3000);
    await expect(d?.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
    // Well inside the 60 s ack wait: it came back because close() naked it.
    const again = await next((await subscribe(stream, consumer))[Symbol.asyncIterator](), 5000);
    expect(again?.event?.id).toBe(vector("typical").event.id);
    await again?.accept();
  });

  it("close() with drainTimeoutMs stops waiting when the connection closes", async () => {
    const { stream, subject, consumer } = await streamWithConsumer({ ackWaitMs: 60_000 });
    await jetStreamPublisher(js, { subject }).publish(vector("typical").event);
    const nc2 = await connect({ servers: server.url });
    const sub = await subscribe(stream, consumer, jetstream(nc2), { drainTimeoutMs: 10_000 });
    const d = await next(sub[Symbol.asyncIterator]());
    expect(d).toBeDefined();
    const closing = sub.close();
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await nc2.close();
    await closing;
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(d?.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
  });

  it("stores a re-published event once within the duplicate window (message id = source and id)", async () => {
    const { stream, subject } = await streamWithConsumer({ duplicateWindowMs: 60_000 });
    const publisher = jetStreamPublisher(js, { subject });
    const event = vector("unicode-id").event;
    const first = await publisher.publishWithAck(event);
    const second = await publisher.publishWithAck(event);
    await publisher.publish(event);
    expect(first.duplicate).toBe(false);
    expect(second.duplicate).toBe(true);
    expect(second.sequence).toBe(first.sequence);
    const info = await jsm.streams.info(stream);
    expect(info.state.messages).toBe(1);
    await publisher.publish(event.cloneWith({ id: "another" }));
    expect((await jsm.streams.info(stream)).state.messages).toBe(2);
    // Another source's event with the same id is another event (ids are unique per source):
    // with the id alone as message id the stream dropped it, and publish() resolved.
    const elsewhere = await publisher.publishWithAck(event.cloneWith({ source: "/elsewhere" }));
    expect(elsewhere.duplicate).toBe(false);
    expect((await jsm.streams.info(stream)).state.messages).toBe(3);
  });

  it("refuses a subject no stream listens on with PublishRejected", async () => {
    const publisher = jetStreamPublisher(js, { subject: unique("nostream"), timeoutMs: 2000 });
    await expect(publisher.publish(vector("minimal").event)).rejects.toMatchObject({
      code: "PublishRejected",
    });
  });

  it("raises PayloadTooLarge before sending a message over the server's max_payload", async () => {
    const { subject } = await streamWithConsumer();
    const publisher = jetStreamPublisher(js, { subject });
    const big = vector("minimal").event.withData(
      new Uint8Array(maxPayload),
      "application/octet-stream",
    );
    await expect(publisher.publish(big)).rejects.toMatchObject({ code: "PayloadTooLarge" });
  });

  it("refuses a stored header block of 5,400 names (JetStream keeps at most 64 KiB) with PayloadTooLarge, every name in the properties", async () => {
    const { stream, subject, consumer } = await streamWithConsumer();
    const entries: [string, string][] = [["ce-id", "x"]];
    for (let i = 0; i < 5400; i++) entries.push([`x-${i}`, "v"]);
    await js.publish(subject, utf8Encode("{}"), { headers: new NatsHeaders(entries) });
    const it = (await subscribe(stream, consumer))[Symbol.asyncIterator]();
    const d = await next(it);
    expect(d?.event).toBeUndefined();
    expect(d?.error?.code).toBe("PayloadTooLarge");
    expect(Object.keys(d?.message.properties ?? {})).toHaveLength(5401);
    await d?.reject();
  });

  it("a stored header block nats.js refuses arrives as a MalformedInput delivery, and iteration goes on", async () => {
    const { stream, subject, consumer } = await streamWithConsumer();
    const block = (last: string) =>
      NatsHeaders.trusted(
        [],
        `NATS/1.0\r\nce-specversion: 1.0\r\nce-source: /s\r\nce-type: t\r\n${last}\r\n\r\n`,
      );
    await js.publish(subject, utf8Encode("{}"), { headers: block("bad name: x") });
    await js.publish(subject, utf8Encode("{}"), { headers: block("ce-id: after") });
    const it = (await subscribe(stream, consumer))[Symbol.asyncIterator]();
    const bad = await next(it);
    expect(bad?.event).toBeUndefined();
    expect(bad?.error?.code).toBe("MalformedInput");
    await bad?.reject();
    const good = await next(it);
    expect(good?.event?.id).toBe("after");
    await good?.accept();
  });

  it("reads a JetStream message's header block from its bytes, never through nats.js's header map, to the same event and properties", async () => {
    const { stream, subject } = await streamWithConsumer();
    await js.publish(subject, utf8Encode("hi"), {
      headers: new NatsHeaders([
        ["ce-specversion", "1.0"],
        ["ce-id", "x1"],
        ["X-Url", "http://h:1/a"],
        ["ce-Source", "/s"],
        ["ce-type", "t"],
        ["ce-subject", "caf\u00E9%20\u00C3\u00A9"],
        ["X-Url", "second"],
      ]),
    });
    await jsm.consumers.add(stream, { durable_name: "readers", ack_policy: AckPolicy.None });
    const m = await (await js.consumers.get(stream, "readers")).next({ expires: 5000 });
    if (!m) throw new Error("no message");
    // nats.js builds its header map on the first read of `headers` (quadratic in the names: 207 ms
    // for a 64 KiB block of 5,400 names here); the reader must not ask for it.
    const ownGetter = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(m), "headers")?.get;
    let reads = 0;
    Object.defineProperty(m, "headers", {
      get() {
        reads++;
        return ownGetter?.call(this);
      },
    });
    const event = fromNatsMessage(m as never, { formats });
    const { properties } = toMessageEnvelope(m as never);
    expect(reads).toBe(0);
    expect(event.subject).toBe("caf\u00E9 \u00C3\u00A9");
    expect(properties["X-Url"]).toEqual(["http://h:1/a", "second"]);
    const viaMap = { data: m.data, headers: m.headers, subject: m.subject };
    expect(reads).toBe(1);
    expect(equivalent(event, fromNatsMessage(viaMap as never, { formats }))).toBe(true);
    expect(properties).toEqual(toMessageEnvelope(viaMap as never).properties);
  });

  it("two consumers on one work-queue stream split 1,000 jobs: none lost, none handled twice", async () => {
    const { stream, subject, consumer } = await streamWithConsumer({ workQueue: true });
    const total = 1000;
    const publisher = jetStreamPublisher(js, { subject });
    const events = Array.from({ length: total }, (_, i) =>
      vector("typical").event.cloneWith({ id: `job-${i}` }),
    );
    await publisher.publish(events);
    expect((await jsm.streams.info(stream)).state.messages).toBe(total);

    const nc2 = await connect({ servers: server.url });
    const workers = [
      await subscribe(stream, consumer),
      await subscribe(stream, consumer, jetstream(nc2)),
    ];
    const handled = new Map<string, number>();
    const perWorker = [0, 0];
    let done = 0;
    await Promise.all(
      workers.map(async (w, index) => {
        const it = w[Symbol.asyncIterator]();
        while (done < total) {
          const d = await next(it, 1000);
          if (!d) continue;
          const id = d.event?.id as string;
          handled.set(id, (handled.get(id) ?? 0) + 1);
          perWorker[index] = (perWorker[index] ?? 0) + 1;
          await d.accept();
          done++;
        }
      }),
    );
    for (const w of workers) await w.close();
    await nc2.close();
    expect(handled.size).toBe(total);
    expect([...handled.values()].every((n) => n === 1)).toBe(true);
    expect(perWorker[0]).toBeGreaterThan(0);
    expect(perWorker[1]).toBeGreaterThan(0);
    // Work-queue retention: every acked job is gone from the stream.
    await new Promise((r) => setTimeout(r, 200));
    expect((await jsm.streams.info(stream)).state.messages).toBe(0);
  }, 30_000);
});

describe("JetStream publisher close()", () => {
  it("waits for every publish still awaiting its PubAck, single and array, whatever order they end in", async () => {
    const { stream, subject } = await streamWithConsumer();
    const publisher = jetStreamPublisher(js, { subject });
    const events = Array.from({ length: 30 }, (_, i) =>
      vector("typical").event.cloneWith({ id: `close-${i}` }),
    );
    let settled = 0;
    const publishes = [
      ...events.slice(0, 20).map((e) => publisher.publish(e)),
      publisher.publish(events.slice(20)),
    ].map((p) => p.finally(() => settled++));
    await publisher.close();
    // What is left of each publish after its PubAck runs in the microtasks before this.
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(publishes.length);
    await Promise.all(publishes);
    expect((await jsm.streams.info(stream)).state.messages).toBe(30);
  });
});
