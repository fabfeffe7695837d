import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  detectNatsMode,
  fromNatsMessage,
  NATS_CORE_CAPABILITIES,
  type NatsContentMode,
  NatsHeaders,
  natsPublisher,
  natsSubscriber,
  toMessageEnvelope,
} from "@posthorn/binding-nats";
import {
  type CloudEvent,
  type Delivery,
  type EventFormat,
  ExtensionRegistry,
  equivalent,
  isPosthornError,
  malformed,
  type Publisher,
  type Subscriber,
  utf8Encode,
} from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { type BindingPath, describeBindingConformance, vector } from "@posthorn/testkit";
import { afterAll, describe, expect, it } from "vitest";
import { FORMATS } from "./formats.js";
import { startTestNats, tooLarge, unique } from "./nats-server.js";

const server = await startTestNats();
const nc: NatsConnection = await connect({ servers: server.url });
const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
const formats = FORMATS;

afterAll(async () => {
  await nc.close();
  await server.stop();
});

async function firstOf<T>(subscriber: Subscriber<T>): Promise<Delivery<T>> {
  const it = subscriber[Symbol.asyncIterator]();
  const r = await it.next();
  if (r.done) throw new Error("subscriber ended");
  return r.value;
}

/** A path's publisher and subscriber on one subject, reused across the file's round trips. */
function corePath(path: BindingPath) {
  let pair:
    | { publisher: Publisher; subscriber: Subscriber; it: AsyncIterator<Delivery> }
    | undefined;
  return async (event: CloudEvent): Promise<CloudEvent> => {
    if (!pair) {
      const subject = unique("conf");
      const subscriber = natsSubscriber(nc, { subject, formats });
      await nc.flush();
      const publisher = natsPublisher(nc, {
        subject,
        mode: path.mode as NatsContentMode,
        ...(path.format ? { format: path.format } : {}),
      });
      pair = { publisher, subscriber, it: subscriber[Symbol.asyncIterator]() };
    }
    await pair.publisher.publish(event);
    const r = await pair.it.next();
    if (r.done) throw new Error("subscriber ended");
    const d = r.value;
    await d.accept();
    if (d.error) throw d.error;
    if (!d.event) throw malformed("not read as a CloudEvent");
    return d.event;
  };
}

const binaryPath = corePath({ mode: "binary" });
describeBindingConformance({
  name: "nats core (nats-server, binary)",
  paths: [{ mode: "binary" }],
  typed: false,
  caseSensitive: false,
  timeoutMs: 10_000,
  roundTrip: (event) => binaryPath(event),
  skip: (vec, path) => tooLarge(vec.event, path, maxPayload),
});

const structuredPaths = new Map(
  formats.map((f) => [f, corePath({ mode: "structured", format: f })]),
);
describeBindingConformance({
  name: "nats core (nats-server, structured)",
  paths: formats.map((format) => ({ mode: "structured" as const, format })),
  typed: true,
  caseSensitive: true,
  timeoutMs: 10_000,
  roundTrip: (event, path) =>
    (structuredPaths.get(path.format as EventFormat) as (e: CloudEvent) => Promise<CloudEvent>)(
      event,
    ),
  skip: (vec, path) => tooLarge(vec.event, path, maxPayload),
});

describe("core NATS publisher and subscriber", () => {
  it("refuses a subject nats.js cannot subscribe to with NotSupported naming it (it was PublishRejected)", () => {
    for (const subject of ["a b", ""]) {
      let thrown: unknown;
      try {
        natsSubscriber(nc, { subject });
      } catch (err) {
        thrown = err;
      }
      expect({ subject, thrown }).toMatchObject({
        subject,
        thrown: { code: "NotSupported", attribute: "subject", retryable: false },
      });
    }
  });

  it("refuses a queue group name the SUB line cannot carry, before anything reaches the server", async () => {
    // Its own connection: on the old code "a b" made the server drop the connection.
    const own = await connect({ servers: server.url });
    try {
      const watched = unique("queue_injected");
      const watcher = natsSubscriber(own, { subject: watched });
      await watcher.ready;
      const queues = [
        "a b",
        "",
        "tab\there",
        // CR/LF ended the SUB line: the server ran the PUB that followed.
        `g\r\nPUB ${watched} 5\r\nhello\r\nSUB ${unique("queue_rest")}`,
      ];
      for (const queue of queues) {
        let thrown: unknown;
        try {
          natsSubscriber(own, { subject: unique("queue"), queue });
        } catch (err) {
          thrown = err;
        }
        expect({ queue, thrown }).toMatchObject({
          queue,
          thrown: {
            code: "NotSupported",
            attribute: "queue",
            message: expect.stringMatching(/^queue must be .*, got "/),
          },
        });
      }
      // A round trip on the same connection, then time for an injected message to come back:
      // nothing was published.
      await own.flush();
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(watcher.pending).toBe(0);
      // A good name still makes a group.
      const member = natsSubscriber(own, { subject: unique("queue"), queue: "billing.v2-eu_1" });
      await member.ready;
      await member.close();
      await watcher.close();
    } finally {
      await own.close();
    }
  });

  it("is at-most-once: accept() is a no-op, release() and reject() are NotSupported", async () => {
    const subject = unique("caps");
    const subscriber = natsSubscriber(nc, { subject });
    expect(subscriber.capabilities).toEqual(NATS_CORE_CAPABILITIES);
    await nc.flush();
    const publisher = natsPublisher(nc, { subject });
    await publisher.publish(vector("typical").event);
    const d = await firstOf(subscriber);
    expect(d.deliveryCount).toBe(1);
    // Each says why, and where it can be done (it said "this transport has no dead-letter path
    // configured", as if configuring something could help).
    await expect(d.release()).rejects.toMatchObject({
      code: "NotSupported",
      message: expect.stringMatching(/core NATS is at most once.*jetStreamSubscriber/),
    });
    await expect(d.reject("no")).rejects.toMatchObject({
      code: "NotSupported",
      message: expect.stringMatching(/core NATS is at most once.*jetStreamSubscriber/),
    });
    await expect(d.inProgress()).rejects.toMatchObject({ code: "NotSupported" });
    await d.accept();
    expect(d.settled).toBe(true);
    await expect(d.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
    await publisher.close();
    await subscriber.close();
  });

  it("decodes structured events with the default json adapted to its registry, as binary ones", async () => {
    const subject = unique("registry");
    const registry = new ExtensionRegistry([
      { name: "priority", type: "Integer" },
      { name: "checksum", type: "Binary" },
    ]);
    const subscriber = natsSubscriber(nc, { subject, formats: [json], registry });
    await subscriber.ready;
    const sent = vector("minimal").event.cloneWith({ priority: "-7", checksum: "AAH+/w==" });
    const it = subscriber[Symbol.asyncIterator]();
    const received: CloudEvent[] = [];
    for (const mode of ["structured", "binary"] as const) {
      const publisher = natsPublisher(nc, { subject, mode, format: json });
      await publisher.publish(sent);
      const r = await it.next();
      received.push(r.value?.event as CloudEvent);
      await publisher.close();
    }
    const [structured, binary] = received;
    expect(structured?.priority).toBe(-7);
    expect(structured?.checksum).toEqual(new Uint8Array([0, 1, 254, 255]));
    expect(structured).toEqual(binary);
    await subscriber.close();
  });

  it("delivers plain NATS messages as Message envelopes with their headers", async () => {
    const subject = unique("plain");
    const subscriber = natsSubscriber(nc, { subject, formats: [json] });
    await nc.flush();
    const headers = new NatsHeaders([
      ["Content-Type", "application/json"],
      ["X-Trace", "abc"],
    ]);
    nc.publish(subject, utf8Encode('{"hello":"world"}'), { headers });
    const d = await firstOf(subscriber);
    expect(d.event).toBeUndefined();
    expect(d.error).toBeUndefined();
    expect(d.message.contentType).toBe("application/json");
    expect(d.message.properties["X-Trace"]).toBe("abc");
    expect(d.message.metadata?.subject).toBe(subject);
    await subscriber.close();
  });

  it("reads the header block as nats.js does: repeated and interleaved names, colons and raw UTF-8 in values", async () => {
    const subject = unique("headers");
    const subscriber = natsSubscriber(nc, { subject, formats: [json] });
    const seen: unknown[] = [];
    const raw = nc.subscribe(subject, {
      callback: (_e, m) => {
        seen.push(m);
      },
    });
    await nc.flush();
    const headers = new NatsHeaders([
      ["ce-specversion", "1.0"],
      ["ce-id", "x1"],
      ["X-Url", "http://h:1/a"],
      ["ce-Source", "/s"],
      ["ce-id", "x1"],
      ["ce-type", "t"],
      ["ce-subject", "caf\u00E9%20\u00C3\u00A9"],
      ["X-Url", "second"],
    ]);
    nc.publish(subject, utf8Encode("hi"), { headers });
    const d = await firstOf(subscriber);
    await nc.flush();
    raw.unsubscribe();
    expect(d.error).toBeUndefined();
    expect(d.event?.id).toBe("x1");
    expect(d.event?.source).toBe("/s");
    expect(d.event?.subject).toBe("caf\u00E9 \u00C3\u00A9");
    // The same message through nats.js's own header map decodes to the same event and properties.
    const viaNats = fromNatsMessage(seen[0] as never, { formats: [json] });
    expect(d.event && equivalent(d.event, viaNats)).toBe(true);
    expect(d.message.properties).toEqual(toMessageEnvelope(seen[0] as never).properties);
    expect(d.message.properties["X-Url"]).toEqual(["http://h:1/a", "second"]);
    await subscriber.close();
  });

  it("reads repeated names as nats.js does past the first 16 names too, and refuses an attribute repeated with another value", async () => {
    const subject = unique("many-repeats");
    const subscriber = natsSubscriber(nc, { subject, formats: [json] });
    const seen: unknown[] = [];
    // nats.js's own header map, built here, makes toMessageEnvelope below read through it.
    const raw = nc.subscribe(subject, {
      callback: (_e, m) => {
        expect(m.headers?.get("X-Url")).toBe("first");
        seen.push(m);
      },
    });
    await nc.flush();
    const filler = Array.from({ length: 20 }, (_, i): [string, string] => [`x-${i}`, `v${i}`]);
    const entries: [string, string][] = [
      ["ce-specversion", "1.0"],
      ["X-Url", "first"],
      ...filler,
      ["ce-id", "x1"],
      ["ce-source", "/s"],
      ["ce-type", "t"],
      ["X-Url", "second"],
      ["x-3", "again"],
    ];
    // NatsHeaders (like nats.js's map) writes a name's values together; a block written by hand,
    // as any client may, keeps them apart: X-Url and x-3 come back after 16 other names.
    const interleaved = (list: [string, string][]) =>
      NatsHeaders.trusted(
        list.flat(),
        `NATS/1.0\r\n${list.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n`,
      );
    nc.publish(subject, utf8Encode("{}"), { headers: interleaved(entries) });
    nc.publish(subject, utf8Encode("{}"), {
      headers: interleaved([...entries, ["ce-id", "x2"]]),
    });
    const ok = await firstOf(subscriber);
    const bad = await firstOf(subscriber);
    await nc.flush();
    raw.unsubscribe();
    expect(ok.error).toBeUndefined();
    expect(ok.event?.id).toBe("x1");
    expect(ok.message.properties["X-Url"]).toEqual(["first", "second"]);
    expect(ok.message.properties["x-3"]).toEqual(["v3", "again"]);
    expect(ok.message.properties).toEqual(toMessageEnvelope(seen[0] as never).properties);
    expect(bad.event).toBeUndefined();
    expect(bad.error?.code).toBe("MalformedInput");
    await subscriber.close();
  });

  it("a header block nats.js refuses arrives as a MalformedInput delivery, and the subscriber goes on", async () => {
    const subject = unique("refused-headers");
    const subscriber = natsSubscriber(nc, { subject, formats: [json] });
    const seen: unknown[] = [];
    const raw = nc.subscribe(subject, { callback: (_e, m) => void seen.push(m) });
    await nc.flush();
    // Blocks as a hostile publisher writes them (the header text is sent as it is).
    const block = (lines: string[]) =>
      NatsHeaders.trusted([], `NATS/1.0\r\n${lines.map((l) => `${l}\r\n`).join("")}\r\n`);
    const ce = ["ce-specversion: 1.0", "ce-source: /s", "ce-type: t"];
    nc.publish(subject, utf8Encode("{}"), { headers: block([...ce, "ce-id: before"]) });
    nc.publish(subject, utf8Encode("{}"), { headers: block([...ce, "bad name: x"]) });
    nc.publish(subject, utf8Encode("{}"), { headers: block([...ce, "x-lf: a\nb"]) });
    nc.publish(subject, utf8Encode("{}"), { headers: block([...ce, "ce-id: after"]) });
    const it = subscriber[Symbol.asyncIterator]();
    const got: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await it.next();
      const d = r.value as Delivery;
      got.push(d.event ? `event ${d.event.id}` : `error ${d.error?.code}`);
      if (d.error) expect(Object.keys(d.message.properties)).toEqual([]);
    }
    expect(got).toEqual([
      "event before",
      "error MalformedInput",
      "error MalformedInput",
      "event after",
    ]);
    await nc.flush();
    raw.unsubscribe();
    expect(nc.isClosed()).toBe(false);
    // The same messages through the functions: typed errors, nats.js's own never.
    for (const m of seen.slice(1, 3)) {
      for (const read of [
        () => fromNatsMessage(m as never, { formats: [json] }),
        () => detectNatsMode(m as never),
        () => toMessageEnvelope(m as never),
      ]) {
        expect(() => read()).toThrow(expect.objectContaining({ code: "MalformedInput" }));
      }
    }
    await subscriber.close();
  });

  it("refuses a ce- header whose bytes are not UTF-8 (MalformedInput), instead of an attribute holding U+FFFD", async () => {
    const subject = unique("not-utf8");
    const subscriber = natsSubscriber(nc, { subject, formats: [json] });
    const seen: unknown[] = [];
    const raw = nc.subscribe(subject, { callback: (_e, m) => void seen.push(m) });
    await nc.flush();
    // A producer that writes Latin-1 text into the header block: 0xE9 is no UTF-8 sequence.
    const latin1 = (lines: string[]) => {
      const text = `NATS/1.0\r\n${lines.map((l) => `${l}\r\n`).join("")}\r\n`;
      return NatsHeaders.trusted(
        [],
        text,
        Uint8Array.from(text, (c) => c.charCodeAt(0)),
      );
    };
    const ce = ["ce-specversion: 1.0", "ce-id: 1", "ce-source: /s", "ce-type: t"];
    nc.publish(subject, utf8Encode("{}"), { headers: latin1([...ce, "ce-subject: caf\xe9"]) });
    // Not a CloudEvent: a plain message keeps its headers as nats.js reads them.
    nc.publish(subject, utf8Encode("{}"), { headers: latin1(["x-name: caf\xe9"]) });
    // U+FFFD itself, sent as UTF-8, is a character like any other.
    const fffd = `NATS/1.0\r\n${ce.join("\r\n")}\r\nce-subject: a\uFFFD\r\n\r\n`;
    nc.publish(subject, utf8Encode("{}"), {
      headers: NatsHeaders.trusted([], fffd, utf8Encode(fffd)),
    });
    const it = subscriber[Symbol.asyncIterator]();
    const first = (await it.next()).value as Delivery;
    expect(first.event).toBeUndefined();
    expect(first.error).toMatchObject({ code: "MalformedInput", attribute: "subject" });
    expect(first.error?.message).toMatch(/ce-subject holds bytes that are not UTF-8/);
    const plain = (await it.next()).value as Delivery;
    expect(plain.error).toBeUndefined();
    expect(plain.message.properties["x-name"]).toBe("caf\uFFFD");
    const replacement = (await it.next()).value as Delivery;
    expect(replacement.event?.subject).toBe("a\uFFFD");
    await nc.flush();
    raw.unsubscribe();
    expect(() => fromNatsMessage(seen[0] as never, { formats: [json] })).toThrow(
      expect.objectContaining({ code: "MalformedInput" }),
    );
    // The same once the application read msg.headers first: nats.js decoded the block as text
    // (0xE9 became U+FFFD), and the binding reads nats.js's map; the block's bytes still decide.
    const decodedFirst = seen[0] as { headers: { get(name: string): string } };
    expect(decodedFirst.headers.get("ce-subject")).toBe("caf\uFFFD");
    expect(() => fromNatsMessage(decodedFirst as never, { formats: [json] })).toThrow(
      expect.objectContaining({ code: "MalformedInput", attribute: "subject" }),
    );
    // A replacement character sent as such still reads through nats.js's map.
    const sentAsSuch = seen[2] as { headers: { get(name: string): string } };
    expect(sentAsSuch.headers.get("ce-subject")).toBe("a\uFFFD");
    expect(fromNatsMessage(sentAsSuch as never, { formats: [json] }).subject).toBe("a\uFFFD");
    await subscriber.close();
  });

  it("reads a header block of colon-less lines in linear time", async () => {
    const subject = unique("colonless");
    const subscriber = natsSubscriber(nc, { subject, formats: [json] });
    await nc.flush();
    // 3.6 MB of lines without a colon: a search for each line's colon ran on to the end of the
    // block, quadratic (1.5 s at 960 KB, about 20 s at this size).
    const text = `NATS/1.0\r\nce-specversion: 1.0\r\nce-id: x\r\nce-source: /s\r\nce-type: t\r\n${"a\r\n".repeat(1_200_000)}\r\n`;
    nc.publish(subject, utf8Encode("{}"), { headers: NatsHeaders.trusted([], text) });
    const started = performance.now();
    const d = await firstOf(subscriber);
    expect(performance.now() - started).toBeLessThan(3000);
    expect(d.error).toBeUndefined();
    expect(d.event?.id).toBe("x");
    await subscriber.close();
  });

  it("reads a header block of 40,000 distinct names in linear time and refuses it with PayloadTooLarge", async () => {
    const subject = unique("many-headers");
    const subscriber = natsSubscriber(nc, { subject, formats: [json] });
    await nc.flush();
    const entries: [string, string][] = [["ce-id", "x"]];
    for (let i = 0; i < 40_000; i++) entries.push([`x-${i}`, "v"]);
    nc.publish(subject, utf8Encode("{}"), { headers: new NatsHeaders(entries) });
    const started = performance.now();
    const d = await firstOf(subscriber);
    const names = Object.keys(d.message.properties);
    // Quadratic matching of names (nats.js's own header map is) takes about 20 s here; reading
    // the block in linear time takes tens of milliseconds.
    expect(performance.now() - started).toBeLessThan(3000);
    expect(d.event).toBeUndefined();
    expect(d.error?.code).toBe("PayloadTooLarge");
    expect(names).toHaveLength(40_001);
    await subscriber.close();
  });

  it("keeps at most maxPending deliveries waiting, dropping and counting the rest (no flow control on core NATS)", async () => {
    const subject = unique("pending");
    const drops: number[] = [];
    const subscriber = natsSubscriber(nc, {
      subject,
      formats: [json],
      maxPending: 5,
      onDrop: (n) => drops.push(n),
    });
    await nc.flush();
    const publisher = natsPublisher(nc, { subject });
    const sent = Array.from({ length: 8 }, (_, i) =>
      vector("typical").event.cloneWith({ id: `p${i}` }),
    );
    await publisher.publish(sent);
    await nc.flush();
    // Once the server echoes a flush on this connection, it has handed over everything before it.
    await nc.flush();
    expect(subscriber.pending).toBe(5);
    expect(subscriber.dropped).toBe(3);
    expect(drops).toEqual([1, 2, 3]);
    const first = await firstOf(subscriber);
    expect(first.event?.id).toBe("p0");
    expect(subscriber.pending).toBe(4);
    nc.publish(subject, utf8Encode("plain"));
    await nc.flush();
    expect(subscriber.pending).toBe(5);
    expect(subscriber.dropped).toBe(3);
    await subscriber.close();
    // Bad configuration is NotSupported, as in the other bindings, not a bare TypeError.
    for (const maxPending of [0, -1, Number.NaN]) {
      const err = (() => {
        try {
          natsSubscriber(nc, { subject, maxPending });
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(isPosthornError(err, "NotSupported")).toBe(true);
      expect((err as Error).message).toContain("maxPending");
    }
  });

  it("an onDrop that throws ends its subscriber with NotSupported, and leaves the connection up (nats.js closed it)", async () => {
    const conn = await connect({ servers: server.url });
    try {
      const subject = unique("ondrop");
      const bug = new Error("user bug");
      const subscriber = natsSubscriber(conn, {
        subject,
        formats: [json],
        maxPending: 2,
        onDrop: () => {
          throw bug;
        },
      });
      const other = natsSubscriber(conn, { subject, formats: [json] });
      await Promise.all([subscriber.ready, other.ready]);
      const publisher = natsPublisher(nc, { subject });
      await publisher.publish(
        ["d0", "d1", "d2"].map((id) => vector("typical").event.cloneWith({ id })),
      );
      await nc.flush();
      // The server routed the three before it answers this round trip on the other connection.
      await conn.flush();
      expect(conn.isClosed()).toBe(false);
      expect(subscriber.dropped).toBe(1);
      // What waited is handed out, then the throw, typed, with the callback's error as cause.
      const it = subscriber[Symbol.asyncIterator]();
      expect((await it.next()).value?.event?.id).toBe("d0");
      expect((await it.next()).value?.event?.id).toBe("d1");
      await expect(it.next()).rejects.toMatchObject({
        name: "PosthornError",
        code: "NotSupported",
        attribute: "onDrop",
        cause: bug,
      });
      // The connection's other subscriber goes on: the three, and one published afterwards.
      await publisher.publish(vector("typical").event.cloneWith({ id: "d3" }));
      const rest = other[Symbol.asyncIterator]();
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) ids.push(String((await rest.next()).value?.event?.id));
      expect(ids).toEqual(["d0", "d1", "d2", "d3"]);
      await subscriber.close();
      await other.close();
    } finally {
      await conn.close();
    }
  });

  it("hands a delivery with a typed error for a message that claims to be a CloudEvent and is not", async () => {
    const subject = unique("broken");
    const subscriber = natsSubscriber(nc, { subject, formats: [json] });
    await nc.flush();
    nc.publish(subject, utf8Encode("{"), {
      headers: new NatsHeaders([["Content-Type", "application/cloudevents+json"]]),
    });
    const d = await firstOf(subscriber);
    expect(d.event).toBeUndefined();
    expect(d.error?.code).toBe("MalformedInput");
    await subscriber.close();
  });

  it("splits a queue group's messages between competing subscribers, each message once", async () => {
    const subject = unique("queue");
    const group = "workers";
    const a = natsSubscriber(nc, { subject, queue: group });
    const nc2 = await connect({ servers: server.url });
    const b = natsSubscriber(nc2, { subject, queue: group });
    await nc.flush();
    await nc2.flush();
    const seen = { a: [] as string[], b: [] as string[] };
    const total = 200;
    const drain = async (s: Subscriber, into: string[]) => {
      for await (const d of s) {
        into.push(d.event?.id ?? "?");
        if (seen.a.length + seen.b.length >= total) break;
      }
    };
    const publisher = natsPublisher(nc, { subject });
    const events = Array.from({ length: total }, (_, i) =>
      vector("minimal").event.cloneWith({ id: `job-${i}` }),
    );
    const running = Promise.all([drain(a, seen.a), drain(b, seen.b)]);
    await publisher.publish(events);
    await publisher.close();
    await Promise.race([running, new Promise((r) => setTimeout(r, 3000))]);
    const all = [...seen.a, ...seen.b];
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBe(total);
    expect(seen.a.length).toBeGreaterThan(0);
    expect(seen.b.length).toBeGreaterThan(0);
    await a.close();
    await b.close();
    await nc2.close();
  });

  it("raises PayloadTooLarge before sending a message over the server's max_payload", async () => {
    const publisher = natsPublisher(nc, { subject: unique("big") });
    const big = vector("minimal").event.withData(
      new Uint8Array(maxPayload),
      "application/octet-stream",
    );
    await expect(publisher.publish(big)).rejects.toMatchObject({
      code: "PayloadTooLarge",
      // Which limit, and what to do about it.
      message: expect.stringContaining(
        `the limit is ${maxPayload} (the server's max_payload: raise it in the server's configuration`,
      ),
    });
    const small = natsPublisher(nc, { subject: unique("big"), maxPayloadBytes: 100 });
    await expect(small.publish(vector("typical").event)).rejects.toMatchObject({
      code: "PayloadTooLarge",
      message: expect.stringContaining("the limit is 100 (the publisher's maxPayloadBytes)"),
    });
  });

  it("refuses to publish after close(), and batch mode", async () => {
    const publisher = natsPublisher(nc, { subject: unique("closed") });
    await expect(
      publisher.publish(vector("minimal").event, { mode: "batch" }),
    ).rejects.toMatchObject({
      code: "NotSupported",
    });
    await publisher.close();
    await publisher.close();
    const err = await publisher.publish(vector("minimal").event).catch((e: unknown) => e);
    expect(isPosthornError(err, "Closed")).toBe(true);
  });

  it("ends iteration when the subscriber closes, after delivering what was queued", async () => {
    const subject = unique("closing");
    const subscriber = natsSubscriber(nc, { subject });
    await nc.flush();
    const publisher = natsPublisher(nc, { subject });
    await publisher.publish([vector("minimal").event, vector("typical").event]);
    await nc.flush();
    await new Promise((r) => setTimeout(r, 50));
    await subscriber.close();
    const ids: string[] = [];
    for await (const d of subscriber) ids.push(d.event?.id ?? "?");
    expect(ids).toHaveLength(2);
  });
});
