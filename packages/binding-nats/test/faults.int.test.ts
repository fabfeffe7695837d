import { readdir, readFile } from "node:fs/promises";
import {
  AckPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  jetStreamPublisher,
  jetStreamSubscriber,
  type NatsConnectionLike,
  natsPublisher,
  natsSubscriber,
} from "@posthorn/binding-nats";
import { type Delivery, isPosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import {
  DeliveryLedger,
  expectEverySentEventReceived,
  faultEvent,
  type LaunchedBroker,
  nextDelivery,
  publishEachWithRetry,
  receiveIntoLedger,
  settledWithin,
  startNatsServer,
} from "@posthorn/testkit";
import { connect as connectV2 } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unique } from "./nats-server.js";

// Faults against a nats-server this file starts (JetStream, file store in a temporary directory
// that restart() keeps): a hard kill and restart mid-stream, and a consumer that dies mid-job.
const EVENTS = Number(process.env.POSTHORN_FAULT_EVENTS ?? 10_000);
const SECOND = 1_000_000_000;

let server: LaunchedBroker;
const connections: NatsConnection[] = [];

beforeAll(async () => {
  server = await startNatsServer();
});

afterAll(async () => {
  for (const nc of connections.splice(0)) await nc.close().catch(() => undefined);
  await server?.stop();
});

/** A connection that keeps reconnecting while the server is away. */
async function natsConnection(): Promise<NatsConnection> {
  const nc = await connect({
    servers: server.url,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
    pingInterval: 1000,
  });
  connections.push(nc);
  return nc;
}

async function streamWithConsumer(
  jsm: JetStreamManager,
  ackWaitMs: number,
): Promise<{ stream: string; subject: string; consumer: string }> {
  const stream = unique("FAULTS").toUpperCase();
  const subject = `${stream.toLowerCase()}.events`;
  await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] });
  await jsm.consumers.add(stream, {
    durable_name: "workers",
    ack_policy: AckPolicy.Explicit,
    ack_wait: (ackWaitMs / 1000) * SECOND,
  });
  return { stream, subject, consumer: "workers" };
}

describe("JetStream under broker faults (acknowledged publish, explicit acks)", () => {
  it(`a server kill and restart mid-stream of ${EVENTS} events loses nothing the publisher reported as sent`, {
    timeout: 120_000,
  }, async () => {
    const ledger = new DeliveryLedger("nats-jetstream");
    const pubConn = await natsConnection();
    const subConn = await natsConnection();
    const { stream, subject, consumer } = await streamWithConsumer(
      await jetstreamManager(pubConn),
      2000,
    );
    const subscriber = await jetStreamSubscriber(jetstream(subConn), {
      stream,
      consumer,
      formats: [json],
      maxMessages: 256,
      expiresMs: 2000,
    });
    const consuming = receiveIntoLedger(subscriber, ledger);

    const js: JetStreamClient = jetstream(pubConn);
    const publisher = jetStreamPublisher(js, { subject, timeoutMs: 2000 });
    const events = Array.from({ length: EVENTS }, (_, i) => faultEvent("nats", i));
    const publishing = publishEachWithRetry(events, 64, (e) => publisher.publish(e), ledger);

    await ledger.waitForSent(Math.floor(EVENTS / 3), 60_000);
    const receivedBefore = ledger.deliveryCount;
    await server.kill();
    await new Promise((r) => setTimeout(r, 500));
    await server.restart();
    await publishing;
    const complete = await ledger.waitForAll(45_000);
    console.log(`${ledger.summary()} [killed after ${receivedBefore} deliveries]`);

    await publisher.close();
    await subscriber.close();
    await consuming;
    expectEverySentEventReceived(ledger, { sent: EVENTS, complete });
  });

  it("a consumer that crashes between receiving and settling: the job comes back to another consumer after the ack wait", async () => {
    const nc = await natsConnection();
    const { stream, subject, consumer } = await streamWithConsumer(
      await jetstreamManager(nc),
      1000,
    );
    await jetStreamPublisher(jetstream(nc), { subject }).publish(faultEvent("nats", 1, "job"));

    const doomed = await connect({ servers: server.url });
    const first = await jetStreamSubscriber(jetstream(doomed), {
      stream,
      consumer,
      formats: [json],
      maxMessages: 1,
    });
    const got = await nextDelivery(first[Symbol.asyncIterator](), 5000);
    expect(got.event?.id).toBe("job-1");
    expect(got.deliveryCount).toBe(1);
    // The crash: the process holding the job goes away without settling (or closing) anything.
    await doomed.close();

    const other = await jetStreamSubscriber(jetstream(await natsConnection()), {
      stream,
      consumer,
      formats: [json],
      maxMessages: 1,
    });
    const again = await nextDelivery(other[Symbol.asyncIterator](), 10_000);
    expect(again.event?.id).toBe("job-1");
    expect(again.deliveryCount).toBe(2);
    await again.accept();
    await other.close();
    const late = await got.accept().catch((e: unknown) => e);
    // The dead consumer's acknowledgement can no longer reach the server, and says so.
    expect(isPosthornError(late, "SettlementFailed")).toBe(true);
  });

  it("settling on a closed connection fails with SettlementFailed, and the server did get nothing: each job comes back", async () => {
    const nc = await natsConnection();
    const { stream, subject, consumer } = await streamWithConsumer(
      await jetstreamManager(nc),
      1000,
    );
    const jobs = [1, 2, 3, 4].map((i) => faultEvent("nats", i, "job"));
    await jetStreamPublisher(jetstream(nc), { subject }).publish(jobs);

    const gone = await connect({ servers: server.url });
    const first = await jetStreamSubscriber(jetstream(gone), {
      stream,
      consumer,
      formats: [json],
      maxMessages: 4,
    });
    const it = first[Symbol.asyncIterator]();
    const held = [];
    for (let i = 0; i < 4; i++) held.push(await nextDelivery(it, 5000));
    await gone.close();
    // nats.js wrote each into a closed connection and returned: they resolved, settling nothing.
    const [a, b, c, d] = held as [Delivery, Delivery, Delivery, Delivery];
    const outcomes = await Promise.all(
      [a.accept(), b.release(), c.reject("poison"), d.inProgress()].map((p) =>
        p.then(
          () => undefined,
          (e: unknown) => e,
        ),
      ),
    );
    for (const outcome of outcomes) {
      expect(outcome).toMatchObject({
        name: "PosthornError",
        code: "SettlementFailed",
        message: expect.stringMatching(/was not sent: the NATS connection is closed/),
      });
    }
    // inProgress() leaves the delivery unsettled; the others are settled (and cannot be redone).
    expect(held.map((h) => h.settled)).toEqual([true, true, true, false]);

    // What the errors say is true: all four come back, even the accepted and the rejected one.
    const other = await jetStreamSubscriber(jetstream(nc), { stream, consumer, formats: [json] });
    const back = other[Symbol.asyncIterator]();
    const again: string[] = [];
    for (let i = 0; i < 4; i++) {
      const job = await nextDelivery(back, 10_000);
      expect(job.deliveryCount).toBe(2);
      again.push(String(job.event?.id));
      await job.accept();
    }
    expect(again.sort()).toEqual(jobs.map((j) => j.id).sort());
    await other.close();
  });
});

describe("natsPublisher while the server is away", () => {
  /** A server of its own, which the test kills, and a connection that keeps reconnecting. */
  async function awayServer() {
    const own = await startNatsServer();
    const nc = await connect({
      servers: own.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    });
    return { own, nc };
  }

  it("refuses a publish with ConnectionFailed instead of handing nats.js a message it drops", {
    timeout: 20_000,
  }, async () => {
    const { own, nc } = await awayServer();
    try {
      const subject = unique("away");
      let received = 0;
      nc.subscribe(subject, { callback: () => void received++ });
      await nc.flush();
      const publisher = natsPublisher(nc, { subject });
      await own.kill();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const refused = await publisher.publish(faultEvent("nats", 1)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isPosthornError(refused, "ConnectionFailed")).toBe(true);
      expect((refused as { retryable?: boolean }).retryable).toBe(true);
      await own.restart();
      // Back: publishing works again, and what is published arrives.
      await waitUntil(async () => {
        try {
          await publisher.publish(faultEvent("nats", 2));
          return true;
        } catch {
          return false;
        }
      }, 8000);
      await nc.flush();
      expect(received).toBeGreaterThanOrEqual(1);
      await nc.close();
    } finally {
      await own.stop();
    }
  });

  it("JetStream: a publish is refused with ConnectionFailed at once, not a Timeout after timeoutMs", {
    timeout: 20_000,
  }, async () => {
    const { own, nc } = await awayServer();
    try {
      const jsm = await jetstreamManager(nc);
      const stream = unique("AWAY").toUpperCase();
      await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] });
      const publisher = jetStreamPublisher(jetstream(nc), {
        subject: `${stream.toLowerCase()}.events`,
        timeoutMs: 5000,
      });
      await publisher.publish(faultEvent("nats", 1));
      await own.kill();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      const refused = await publisher.publish(faultEvent("nats", 2)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isPosthornError(refused, "ConnectionFailed")).toBe(true);
      expect(Date.now() - started).toBeLessThan(1000);
      await nc.close();
    } finally {
      await own.stop();
    }
  });

  it("JetStream: settling while the connection reconnects fails with SettlementFailed, and the job comes back", {
    timeout: 30_000,
  }, async () => {
    const { own, nc } = await awayServer();
    try {
      const jsm = await jetstreamManager(nc);
      const stream = unique("AWAY").toUpperCase();
      const subject = `${stream.toLowerCase()}.events`;
      await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] });
      await jsm.consumers.add(stream, {
        durable_name: "workers",
        ack_policy: AckPolicy.Explicit,
        ack_wait: 1 * SECOND,
      });
      await jetStreamPublisher(jetstream(nc), { subject }).publish(faultEvent("nats", 1, "job"));
      const subscriber = await jetStreamSubscriber(jetstream(nc), {
        stream,
        consumer: "workers",
        formats: [json],
        maxMessages: 1,
      });
      const it = subscriber[Symbol.asyncIterator]();
      const job = await nextDelivery(it, 5000);
      expect(job.deliveryCount).toBe(1);
      await own.kill();
      await new Promise((resolve) => setTimeout(resolve, 300));
      // nats.js queued the +WPI and the ack, then dropped them at the reconnection.
      const working = await job.inProgress().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(working).toMatchObject({ code: "SettlementFailed", retryable: true });
      expect(job.settled).toBe(false);
      const accepted = await job.accept().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(accepted).toMatchObject({
        code: "SettlementFailed",
        retryable: false,
        message: expect.stringMatching(/the ack was not sent: the NATS connection is reconnecting/),
      });
      await own.restart();
      // True: the server never had the ack, and delivers the job again after its ack wait.
      const again = await nextDelivery(it, 15_000);
      expect(again.event?.id).toBe("job-1");
      expect(again.deliveryCount).toBe(2);
      await again.accept();
      await subscriber.close();
      await nc.close();
    } finally {
      await own.stop();
    }
  });

  it("close() waits for the reconnection and resolves once the server answers", {
    timeout: 20_000,
  }, async () => {
    const { own, nc } = await awayServer();
    try {
      const publisher = natsPublisher(nc, { subject: unique("wait"), closeTimeoutMs: 10_000 });
      await publisher.publish(faultEvent("nats", 1));
      // Confirmed before the drop: nothing may be lost, so close() resolves (an unconfirmed one
      // would make it reject, drop.int.test.ts).
      await publisher.flush();
      await own.kill();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      const closing = publisher.close();
      setTimeout(() => void own.restart(), 1000);
      expect(await settledWithin(closing, 8000)).toEqual({ resolved: undefined });
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      await nc.close();
    } finally {
      await own.stop();
    }
  });

  it("close() rejects with ConnectionFailed after closeTimeoutMs when the server stays away", {
    timeout: 10_000,
  }, async () => {
    const { own, nc } = await awayServer();
    try {
      const publisher = natsPublisher(nc, { subject: unique("gone"), closeTimeoutMs: 600 });
      await publisher.publish(faultEvent("nats", 1));
      await own.kill();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      const err = await publisher.close().then(
        () => undefined,
        (e: unknown) => e,
      );
      const took = Date.now() - started;
      expect(isPosthornError(err, "ConnectionFailed")).toBe(true);
      expect((err as Error).message).toMatch(
        /within 600 ms of close\(\) .*; 1 message published since the last confirmed flush may be lost$/,
      );
      expect(took).toBeGreaterThanOrEqual(550);
      expect(took).toBeLessThan(3000);
      await nc.close();
    } finally {
      await own.stop();
    }
  });
});

describe("subscribers when nats.js gives the connection up", () => {
  /** The members of a v2 or v3 connection these tests use besides the binding's. */
  interface GivenUp extends NatsConnectionLike {
    close(): Promise<void>;
    closed(): Promise<unknown>;
  }
  // Few reconnect attempts, so that nats.js gives the connection up soon after the server dies.
  const clients: Record<string, (url: string) => Promise<GivenUp>> = {
    "@nats-io/transport-node (v3)": (url) =>
      connect({ servers: url, maxReconnectAttempts: 2, reconnectTimeWait: 100 }),
    "nats (v2)": (url) =>
      connectV2({ servers: url, maxReconnectAttempts: 2, reconnectTimeWait: 100 }),
  };

  /** The ids of what iteration hands out, and how it ends: `done`, or the error it throws. */
  async function untilEnd(
    iterator: AsyncIterator<Delivery>,
    withinMs: number,
  ): Promise<{ ids: string[]; end: unknown }> {
    const ids: string[] = [];
    const deadline = Date.now() + withinMs;
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([
        iterator.next().then(
          (value) => ({ value }),
          (error: unknown) => ({ error }),
        ),
        new Promise<"late">((resolve) => {
          timer = setTimeout(() => resolve("late"), Math.max(0, deadline - Date.now()));
        }),
      ]).finally(() => clearTimeout(timer));
      if (r === "late") return { ids, end: `not ended within ${withinMs} ms` };
      if ("error" in r) return { ids, end: r.error };
      if (r.value.done) return { ids, end: "done" };
      ids.push(String(r.value.value.event?.id));
    }
  }

  /** A JetStream stream of `count` jobs and a durable consumer, made over a connection of its own. */
  async function jobsOn(url: string, count: number) {
    const admin = await connect({ servers: url });
    const jsm = await jetstreamManager(admin);
    const stream = unique("GIVENUP").toUpperCase();
    await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] });
    await jsm.consumers.add(stream, { durable_name: "workers", ack_policy: AckPolicy.Explicit });
    const jobs = Array.from({ length: count }, (_, i) => faultEvent("nats", i + 1, "job"));
    await jetStreamPublisher(jetstream(admin), { subject: `${stream.toLowerCase()}.jobs` }).publish(
      jobs,
    );
    await admin.close();
    return { stream, ids: jobs.map((j) => j.id) };
  }

  for (const [client, connectTo] of Object.entries(clients)) {
    it(`${client}: core NATS iteration hands out what had arrived, then fails with ConnectionFailed`, {
      timeout: 20_000,
    }, async () => {
      const own = await startNatsServer();
      try {
        const nc = await connectTo(own.url);
        const subject = unique("givenup");
        const subscriber = natsSubscriber(nc, { subject, formats: [json] });
        await subscriber.ready;
        const events = [1, 2, 3].map((i) => faultEvent("nats", i));
        await natsPublisher(nc, { subject }).publish(events);
        await nc.flush();
        await waitUntil(async () => subscriber.pending === 3, 5000);
        await own.kill();
        // nats.js tries twice, fails, and closes the connection with the error it gave up on.
        const gaveUp = await nc.closed();
        expect(gaveUp).toBeInstanceOf(Error);
        // It used to end with done: true, as if closed normally: a worker just stopped.
        const { ids, end } = await untilEnd(subscriber[Symbol.asyncIterator](), 5000);
        expect(ids).toEqual(events.map((e) => e.id));
        expect(end).toMatchObject({
          name: "PosthornError",
          code: "ConnectionFailed",
          cause: gaveUp,
          message: expect.stringMatching(/the NATS connection was lost for good/),
        });
        await subscriber.close();
      } finally {
        await own.stop();
      }
    });

    it(`${client}: JetStream iteration hands out what had arrived, then fails with ConnectionFailed`, {
      timeout: 20_000,
    }, async () => {
      const own = await startNatsServer();
      try {
        const { stream, ids: jobs } = await jobsOn(own.url, 3);
        const nc = await connectTo(own.url);
        const js =
          (nc as unknown as { jetstream?: () => unknown }).jetstream?.() ??
          jetstream(nc as NatsConnection);
        const subscriber = await jetStreamSubscriber(
          js as Parameters<typeof jetStreamSubscriber>[0],
          {
            stream,
            consumer: "workers",
            formats: [json],
          },
        );
        const it = subscriber[Symbol.asyncIterator]();
        const first = await nextDelivery(it, 5000);
        // The other two arrived with the same pull.
        await new Promise((resolve) => setTimeout(resolve, 300));
        await own.kill();
        const gaveUp = await nc.closed();
        expect(gaveUp).toBeInstanceOf(Error);
        const { ids, end } = await untilEnd(it, 5000);
        expect([String(first.event?.id), ...ids]).toEqual(jobs);
        expect(end).toMatchObject({
          name: "PosthornError",
          code: "ConnectionFailed",
          cause: gaveUp,
          message: expect.stringMatching(/the NATS connection was lost for good/),
        });
        // Thrown once: a later pull ends.
        expect((await it.next()).done).toBe(true);
        await subscriber.close();
      } finally {
        await own.stop();
      }
    });
  }

  for (const [client, connectTo] of Object.entries(clients)) {
    it(`${client}: core NATS ready rejects with ConnectionFailed when the connection is lost before the server confirmed the subscription`, {
      timeout: 20_000,
    }, async () => {
      const own = await startNatsServer();
      try {
        const nc = await connectTo(own.url);
        // A stopped server never answers the PING sent after the SUB.
        await pause(own);
        const subscriber = natsSubscriber(nc, { subject: unique("unconfirmed"), formats: [json] });
        const ready = subscriber.ready.then(
          () => "resolved",
          (err: unknown) => err,
        );
        await own.kill();
        const gaveUp = await nc.closed();
        expect(gaveUp).toBeInstanceOf(Error);
        // It rejected at the first drop, while nats.js was still reconnecting, with the flush's
        // "connection disconnected" as if the drop were the end.
        expect(await ready).toMatchObject({
          name: "PosthornError",
          code: "ConnectionFailed",
          cause: gaveUp,
          message: expect.stringMatching(/the NATS connection was lost for good/),
        });
        expect((await untilEnd(subscriber[Symbol.asyncIterator](), 1000)).end).toMatchObject({
          code: "ConnectionFailed",
        });
        await subscriber.close();
      } finally {
        await own.stop();
      }
    });
  }

  it("core NATS ready waits out a drop before the server confirmed the subscription, and confirms it on the new connection", {
    timeout: 20_000,
  }, async () => {
    const own = await startNatsServer();
    try {
      const nc = await connect({
        servers: own.url,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 100,
      });
      connections.push(nc);
      const subject = unique("redialled");
      await pause(own);
      const subscriber = natsSubscriber(nc, { subject, formats: [json] });
      const ready = subscriber.ready.then(
        () => "resolved",
        (err: unknown) => err,
      );
      await own.kill();
      await own.restart();
      // It rejected with ConnectionFailed at the drop and ended iteration, though nats.js
      // reconnected and re-made the subscription a moment later.
      expect(await ready).toBe("resolved");
      const event = faultEvent("nats", 1);
      await natsPublisher(nc, { subject }).publish(event);
      const delivery = await nextDelivery(subscriber[Symbol.asyncIterator](), 5000);
      expect(delivery.event?.id).toBe(event.id);
      await subscriber.close();
    } finally {
      await own.stop();
    }
  });

  it("the application closing the connection fails iteration with Closed; close() ends it", {
    timeout: 20_000,
  }, async () => {
    const own = await startNatsServer();
    try {
      const { stream } = await jobsOn(own.url, 1);
      const nc = await connect({ servers: own.url });
      const subject = unique("appclosed");
      const core = natsSubscriber(nc, { subject, formats: [json] });
      const closedByUs = natsSubscriber(nc, { subject, formats: [json] });
      await core.ready;
      const js = await jetStreamSubscriber(jetstream(nc), { stream, consumer: "workers" });
      const jsIt = js[Symbol.asyncIterator]();
      await (await nextDelivery(jsIt, 5000)).accept();
      await closedByUs.close();
      expect(await untilEnd(closedByUs[Symbol.asyncIterator](), 1000)).toEqual({
        ids: [],
        end: "done",
      });
      await nc.close();
      for (const { end } of [
        await untilEnd(core[Symbol.asyncIterator](), 5000),
        await untilEnd(jsIt, 5000),
      ]) {
        expect(end).toMatchObject({
          name: "PosthornError",
          code: "Closed",
          message: expect.stringMatching(/the application closed the NATS connection under/),
        });
      }
    } finally {
      await own.stop();
    }
  });
});

/** Stops `broker`'s process (SIGSTOP) and waits until the kernel shows every thread of it stopped. */
async function pause(broker: LaunchedBroker): Promise<void> {
  broker.process.kill("SIGSTOP");
  const tasks = `/proc/${broker.process.pid}/task`;
  // A thread's state is the field after its parenthesised name: T when stopped.
  const stopped = async (task: string) =>
    /\) T /.test(await readFile(`${tasks}/${task}/stat`, "utf8"));
  await waitUntil(
    async () => (await Promise.all((await readdir(tasks)).map(stopped))).every(Boolean),
    5000,
  );
}

async function waitUntil(done: () => Promise<boolean>, withinMs: number): Promise<void> {
  const until = Date.now() + withinMs;
  while (!(await done())) {
    if (Date.now() > until) throw new Error(`not within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
