// AMQP 1.0 publish throughput to RabbitMQ: events per second through amqpPublisher (mapping every
// event, waiting for every disposition) next to a bare rhea sender transmitting the same messages
// pre-encoded to bytes, with the same number of unsettled transfers allowed and the same wait for
// `accepted`, in the same run. Skipped (no rows) when RabbitMQ is not reachable.
import { amqpPublisher, toAmqpMessage } from "@posthorn/binding-amqp";
import { brokerUrl, portOpen, vector } from "@posthorn/testkit";
import amqplib from "amqplib";
import rhea, { type Sender } from "rhea";
import { openRhea } from "../e2e-more.ts";
import { type BenchSuite, compareThroughput, type Row } from "../lib.ts";

const WINDOW = 500;

/** Sends `count` pre-encoded payloads, at most WINDOW unsettled, resolving when all are accepted. */
function rawRun(sender: Sender, payload: Buffer, count: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let settled = 0;
    const pump = (): void => {
      while (sent < count && sent - settled < WINDOW && sender.sendable()) {
        sender.send(payload as never, undefined, 0);
        sent++;
      }
    };
    const onAccepted = (): void => {
      settled++;
      if (settled === count) {
        cleanup();
        resolve();
      } else pump();
    };
    const onRefused = (): void => {
      cleanup();
      reject(new Error("the broker refused a message"));
    };
    const cleanup = (): void => {
      sender.removeListener("accepted", onAccepted);
      sender.removeListener("rejected", onRefused);
      sender.removeListener("released", onRefused);
      sender.removeListener("sendable", pump);
    };
    sender.on("accepted", onAccepted);
    sender.on("rejected", onRefused);
    sender.on("released", onRefused);
    sender.on("sendable", pump);
    pump();
  });
}

/** Calls `publishOne` `count` times with at most WINDOW calls outstanding. */
async function windowed(count: number, publishOne: () => Promise<void>): Promise<void> {
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < count) {
      started++;
      await publishOne();
    }
  };
  await Promise.all(Array.from({ length: Math.min(WINDOW, count) }, worker));
}

export const suite: BenchSuite = {
  name: "AMQP 1.0 publish to RabbitMQ vs bare rhea",
  async run(ctx) {
    const url = new URL(brokerUrl("amqp") as string);
    if (!(await portOpen(url.hostname, url.port ? Number(url.port) : 5672))) {
      console.warn(`amqp bench skipped: no RabbitMQ at ${url.host}`);
      return [];
    }
    const queue = `bench-amqp-${process.pid}-${Date.now().toString(36)}`;
    const admin = await amqplib.connect(url.href);
    const channel = await admin.createChannel();
    // A length limit (dropping the oldest) keeps the broker's work flat across rounds, so no
    // purge has to run inside the timed part.
    await channel.assertQueue(queue, { durable: false, arguments: { "x-max-length": 1000 } });
    const connection = await openRhea(url);
    const address = `/amq/queue/${queue}`;
    const rows: Row[] = [];
    try {
      const event = vector("typical").event;
      const publisher = amqpPublisher(connection, { address, maxInFlight: WINDOW });
      const sender = connection.open_sender({ target: { address } });
      await publisher.ready;
      await new Promise<void>((resolve) => {
        if (sender.sendable()) resolve();
        else sender.once("sendable", () => resolve());
      });
      const payload = rhea.message.encode(toAmqpMessage(event, { codec: rhea }));
      const count = ctx.quick ? 2000 : 20_000;
      rows.push(
        await compareThroughput({
          group: "throughput: AMQP 1.0 (RabbitMQ)",
          name: `publish typical event, binary mode, ${WINDOW} unsettled, wait for accepted`,
          count,
          rounds: ctx.quick ? 3 : 5,
          warmup: 2000,
          ours: {
            run: (n) => windowed(n, () => publisher.publish(event)),
          },
          baseline: {
            label: "rhea sender, pre-encoded bytes",
            run: (n) => rawRun(sender, payload, n),
          },
          goal: 0.9,
        }),
      );
      await publisher.close();
      sender.close();
    } finally {
      connection.close();
      await channel.deleteQueue(queue);
      await channel.close();
      await admin.close();
    }
    return rows;
  },
};
