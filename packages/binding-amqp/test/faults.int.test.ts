// Broker faults against a RabbitMQ node of this file's own (private-rabbitmq.ts): the shared
// broker on 5672 serves other tests at the same time and must not be restarted under them.
import { amqpPublisher, amqpSubscriber } from "@posthorn/binding-amqp";
import type { Delivery } from "@posthorn/core";
import {
  DeliveryLedger,
  expectEverySentEventReceived,
  faultEvent,
  inCi,
  publishEachWithRetry,
  receiveIntoLedger,
} from "@posthorn/testkit";
import amqplib from "amqplib";
import rhea, { type Connection, type EventContext } from "rhea";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeConnection, nextDelivery, openConnection, uniqueName } from "./helpers.js";
import {
  type PrivateRabbitMq,
  rabbitMqBinaries,
  startPrivateRabbitMq,
} from "./private-rabbitmq.js";

const EVENTS = Number(process.env.POSTHORN_FAULT_EVENTS ?? 10_000);

const installed = rabbitMqBinaries() !== undefined;
if (!installed && inCi()) {
  throw new Error("rabbitmq-server is not installed; under CI=true the AMQP fault tests must run");
}

describe.skipIf(!installed)("AMQP 1.0 under broker faults (a private RabbitMQ node)", () => {
  let broker: PrivateRabbitMq;
  const connections: Connection[] = [];

  beforeAll(async () => {
    broker = await startPrivateRabbitMq();
  }, 60_000);

  afterAll(async () => {
    for (const c of connections.splice(0)) await closeConnection(c);
    await broker?.dispose();
  }, 30_000);

  /** A connection that rhea re-opens (sessions and links included) after the broker comes back. */
  async function reconnecting(label: string): Promise<{ connection: Connection; drops: number[] }> {
    const container = rhea.create_container({ id: `posthorn-faults-${label}-${process.pid}` });
    const drops: number[] = [];
    // Without a listener rhea writes every disconnect to the console.
    container.on("disconnected", (ctx: EventContext) => {
      if (ctx.reconnecting) drops.push(Date.now());
    });
    container.on("connection_error", () => {});
    container.on("error", () => {});
    const connection = container.connect({
      host: broker.host,
      port: broker.port,
      username: "guest",
      password: "guest",
      reconnect: true,
      initial_reconnect_delay: 100,
      max_reconnect_delay: 500,
    });
    await new Promise<void>((resolve, reject) => {
      connection.once("connection_open", () => resolve());
      setTimeout(() => reject(new Error("no connection to the private RabbitMQ")), 10_000);
    });
    connections.push(connection);
    return { connection, drops };
  }

  /** Declares a durable queue over AMQP 0-9-1 (the AMQP 1.0 plugin cannot) and returns its address. */
  async function durableQueue(label: string): Promise<string> {
    const admin = await amqplib.connect(`amqp://guest:guest@${broker.host}:${broker.port}`);
    const channel = await admin.createChannel();
    const name = uniqueName(label);
    await channel.assertQueue(name, { durable: true });
    await admin.close();
    return `/amq/queue/${name}`;
  }

  /**
   * `err` with what the node knew when it happened: its queues and the end of its log (a failure
   * here is the broker's as often as the client's, and the CI log is all there is to go on).
   */
  async function withBrokerState(err: unknown): Promise<Error> {
    const queues = await broker.ctl("list_queues", "name", "durable", "messages");
    return new Error(
      `${String(err)}\nqueues on the node:\n${queues}\nits log ends:\n${broker.logTail(60)}`,
      { cause: err },
    );
  }

  async function plain(): Promise<Connection> {
    const c = await openConnection({
      host: broker.host,
      port: broker.port,
      username: "guest",
      password: "guest",
    });
    connections.push(c);
    return c;
  }

  for (const fault of ["restart", "crash"] as const) {
    const what =
      fault === "restart"
        ? "a broker restart (rabbitmqctl stop, start)"
        : "a broker crash (SIGKILL, start)";
    it(`${what} mid-stream of ${EVENTS} persistent events loses nothing that was accepted`, {
      timeout: 90_000,
    }, async () => {
      const ledger = new DeliveryLedger(fault === "restart" ? "amqp" : "amqp (broker killed)");
      // A durable queue and persistent messages (`durable: true`), so what the broker accepted
      // survives it. (RabbitMQ 3.x's AMQP 1.0 plugin declares `/queue/<name>` queues non-durable
      // unless the link's terminus asks for durability, and those vanish with a restart.)
      const address = await durableQueue(`faults-${fault}`);
      if (fault === "crash") {
        // RabbitMQ 3.x keeps queue declarations in mnesia. Twice a clean-clone CI run killed the
        // node a few seconds after the declare and it came back with one of its two durable
        // queues ("Recovering 1 queues"), answering the re-attaching links with amqp:not-found:
        // the declaration had not reached its disk. A graceful restart writes it out, so the crash
        // tests what it is meant to: the messages the broker confirmed.
        await broker.restart();
      }
      const sub = await reconnecting("sub");
      const pub = await reconnecting("pub");
      const publisher = amqpPublisher(pub.connection, { address, timeoutMs: 20_000 });
      await publisher.ready;
      const subscriber = amqpSubscriber(sub.connection, { address, credit: 200 });
      await subscriber.ready;
      let settlementFailures = 0;
      const consuming = receiveIntoLedger(subscriber, ledger, {
        // The connection dropped with this delivery unsettled: the broker redelivers it.
        onSettlementFailed: () => {
          settlementFailures++;
        },
      }).catch(async (err) => {
        throw await withBrokerState(err);
      });
      // Awaited after the subscriber closes; until then a failure must not go unhandled.
      consuming.catch(() => {});

      const events = Array.from({ length: EVENTS }, (_, i) => faultEvent("amqp", i));
      const publishing = publishEachWithRetry(
        events,
        200,
        (e) => publisher.publish(e, { fields: { durable: true } }),
        ledger,
      ).catch(async (err) => {
        throw await withBrokerState(err);
      });
      publishing.catch(() => {});

      await ledger.waitForSent(Math.floor(EVENTS / 3), 60_000);
      const receivedBefore = ledger.deliveryCount;
      const restartStarted = Date.now();
      if (fault === "restart") await broker.restart();
      else {
        await broker.kill();
        await broker.start();
      }
      const restartMs = Date.now() - restartStarted;
      await publishing;
      const complete = await ledger.waitForAll(30_000);
      console.log(
        `${ledger.summary()} [${fault} and start took ${restartMs} ms, after ${receivedBefore} deliveries; ` +
          `connection drops: publisher ${pub.drops.length}, subscriber ${sub.drops.length}; ` +
          `settlements refused after the drop ${settlementFailures}]`,
      );

      await publisher.close();
      await subscriber.close();
      await consuming;
      expect(pub.drops.length).toBeGreaterThan(0);
      expect(sub.drops.length).toBeGreaterThan(0);
      expectEverySentEventReceived(ledger, { sent: EVENTS, complete });
    });
  }

  it("RabbitMQ dropping the connection (rabbitmqctl stop_app) fails publishes and iteration with ConnectionFailed (retryable), not Closed", {
    timeout: 60_000,
  }, async () => {
    const address = await durableQueue("faults-broker-close");
    const connection = await plain();
    const publisher = amqpPublisher(connection, { address });
    const subscriber = amqpSubscriber(connection, { address });
    await Promise.all([publisher.ready, subscriber.ready]);
    const outcome = (p: Promise<unknown>): Promise<unknown> =>
      p.then(
        () => "resolved",
        (err: unknown) => err,
      );
    const waiting = outcome(subscriber[Symbol.asyncIterator]().next());
    // The broker drops every client connection and keeps running: RabbitMQ 3.10 resets the
    // socket. (rabbitmqctl cannot close one AMQP 1.0 connection there: list_amqp10_connections
    // lists none, and closing the direct connection behind a session leaves the client's alone.)
    try {
      await broker.ctl("stop_app");
      const lost = await waiting;
      console.log(`amqp, broker dropped the connection: iteration failed with ${String(lost)}`);
      expect(lost).toMatchObject({
        name: "PosthornError",
        code: "ConnectionFailed",
        retryable: true,
      });
      expect(await outcome(publisher.publish(faultEvent("amqp", 1)))).toMatchObject({
        code: "ConnectionFailed",
        retryable: true,
      });
    } finally {
      await broker.ctl("start_app");
    }
    await Promise.all([publisher.close(), subscriber.close()]);
  });

  it("a /queue/ address is declared durable only when the link asks for a durable terminus", async () => {
    const connection = await plain();
    const plainName = uniqueName("terminus-plain");
    const durableName = uniqueName("terminus-durable");
    const transient = amqpPublisher(connection, { address: `/queue/${plainName}` });
    const durable = amqpPublisher(connection, {
      address: `/queue/${durableName}`,
      senderOptions: { target: { durable: 2 } },
    });
    await Promise.all([transient.ready, durable.ready]);
    const listing = await broker.ctl("list_queues", "name", "durable");
    expect(listing).toMatch(new RegExp(`${plainName}\\s+false`));
    expect(listing).toMatch(new RegExp(`${durableName}\\s+true`));
    await Promise.all([transient.close(), durable.close()]);
  });

  it("a consumer that crashes between receiving and settling: the job goes to another consumer", {
    timeout: 30_000,
  }, async () => {
    const address = await durableQueue("faults-consumer-crash");
    const producer = await plain();
    const publisher = amqpPublisher(producer, { address });
    await publisher.publish(faultEvent("amqp", 1, "job"), { fields: { durable: true } });

    const first = await plain();
    const crashing = amqpSubscriber(first, { address, credit: 1 });
    const got = await nextDelivery(crashing[Symbol.asyncIterator]());
    expect(got.event?.id).toBe("job-1");
    expect(got.deliveryCount).toBe(1);
    // The crash: the process's socket goes away with the job unsettled. (rhea learns of a socket
    // destroyed on its own side only through an error: it does not listen for 'close'.)
    const gone = new Promise<void>((resolve) => first.once("disconnected", () => resolve()));
    (first as unknown as { socket: { destroy(err: Error): void } }).socket.destroy(
      new Error("the consumer process crashed"),
    );
    await gone;
    await expect(got.accept()).rejects.toMatchObject({
      code: "SettlementFailed",
      message: expect.stringContaining("the link that carried this delivery is gone"),
    });

    const second = await plain();
    const survivor = amqpSubscriber(second, { address, credit: 1 });
    const again: Delivery = await nextDelivery(survivor[Symbol.asyncIterator](), 10_000);
    expect(again.event?.id).toBe("job-1");
    // RabbitMQ 3.x marks the redelivery first-acquirer=false (it keeps no delivery-count).
    expect(again.deliveryCount).toBeGreaterThanOrEqual(2);
    await again.accept();
    await Promise.all([survivor.close(), crashing.close(), publisher.close()]);
  });
});
