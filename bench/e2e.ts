// End-to-end benchmark plumbing: one adapter per transport runs Posthorn's publisher and
// subscriber on one side, and the raw client library sending and receiving the very same bytes
// (encoded by Posthorn's mapping before the clock starts) on the other. Each side has its own
// topic/subject and its own receiving client, started once per session, so a run is: publish
// `count` events in batches, and wait until the receiver has seen them all.
//
// Adding a transport: write a function returning an `E2eTransport` (AMQP and WebSocket are in
// bench/e2e-more.ts) and add it to the list in bench/suites/e2e.bench.ts; everything else
// (throughput, payload and batch sweeps, latency) is shared.
import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { connect, headers as natsHeaders } from "@nats-io/transport-node";
import { kafkaPublisher, kafkaSubscriber, toKafkaRecord } from "@posthorn/binding-kafka";
import { mqttPublisher, mqttSubscriber, toMqttMessage } from "@posthorn/binding-mqtt";
import {
  jetStreamPublisher,
  jetStreamSubscriber,
  natsPublisher,
  natsSubscriber,
  toNatsMessage,
} from "@posthorn/binding-nats";
import { CloudEvent, type Subscriber } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { startKafkaBroker, startMosquitto, startNatsServer, vector } from "@posthorn/testkit";
import { Kafka, logLevel } from "kafkajs";
import mqtt from "mqtt";

/** Counts arrivals and lets a run wait for a number of them. */
export class Arrivals {
  count = 0;
  /** When set, called with the arrival time (ms, performance.now) of every arrival. */
  onArrive: ((atMs: number) => void) | undefined;
  #target = Number.POSITIVE_INFINITY;
  #resolve: (() => void) | undefined;

  hit(n = 1): void {
    this.count += n;
    if (this.onArrive) {
      const now = performance.now();
      for (let i = 0; i < n; i++) this.onArrive(now);
    }
    if (this.count >= this.#target) {
      this.#target = Number.POSITIVE_INFINITY;
      this.#resolve?.();
    }
  }

  /** Resolves once `n` more events than now have arrived (or rejects after `timeoutMs`). */
  more(n: number, timeoutMs = 120_000): Promise<void> {
    const target = this.count + n;
    return this.until(target, timeoutMs);
  }

  until(target: number, timeoutMs = 120_000): Promise<void> {
    if (this.count >= target) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`only ${this.count} of ${target} events arrived`)),
        timeoutMs,
      );
      this.#target = target;
      this.#resolve = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/** One side of a session: sends prepared events and counts what its receiver got. */
export interface Endpoint {
  /** Sends events `from` .. `from + n - 1` of the prepared list (wrapping around) as one batch. */
  send(from: number, n: number): Promise<void>;
  /** Called once after the last batch of a run (core NATS flushes here). */
  finish?(): Promise<void>;
  readonly arrivals: Arrivals;
}

/** The two sides of a session, for one list of prepared events. */
export interface Prepared {
  readonly ours: Endpoint;
  readonly raw: Endpoint;
}

/** A connected transport: both receivers running. */
export interface E2eSession {
  /** Prepares both sides for these events (the raw side encodes them now, off the clock). */
  prepare(events: readonly CloudEvent[]): Prepared;
  /** Posthorn's subscriber, for the memory suite's unsettled-deliveries test (when it has one). */
  close(): Promise<void>;
}

/** A transport the end-to-end suites run. */
export interface E2eTransport {
  /** Table label, e.g. `MQTT 5 (Mosquitto, QoS 1)`. */
  readonly name: string;
  /** What the raw side is, e.g. `mqtt.js, pre-encoded`. */
  readonly rawLabel: string;
  /** Largest data size this transport is run with (bytes). */
  readonly maxPayloadBytes: number;
  open(): Promise<E2eSession>;
}

/** An event carrying `size` bytes of binary data; ids are unique per index. */
export function payloadEvents(size: number, count: number, prefix = "e"): CloudEvent[] {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 131 + 7) & 0xff;
  const base = vector("typical").event;
  return Array.from(
    { length: count },
    (_, i) =>
      new CloudEvent({
        ...base.withoutData(),
        id: `${prefix}-${i}`,
        datacontenttype: "application/octet-stream",
        data,
      }),
  );
}

export function slice<T>(list: readonly T[], from: number, n: number): T[] {
  const out: T[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = list[(from + i) % list.length] as T;
  return out;
}

/**
 * Posthorn's side of `Endpoint.send`: events `from` .. `from + n - 1` of the list (wrapping
 * around), one event as itself and several as one `publish` of an array.
 */
export function publishFrom(
  publisher: { publish(events: CloudEvent | readonly CloudEvent[]): Promise<void> },
  events: readonly CloudEvent[],
): (from: number, n: number) => Promise<void> {
  return (from, n) =>
    n === 1
      ? publisher.publish(events[from % events.length] as CloudEvent)
      : publisher.publish(slice(events, from, n));
}

/** Iterates a subscriber in the background, accepting each delivery and counting it. */
export function consume(subscriber: Subscriber, arrivals: Arrivals): void {
  void (async () => {
    for await (const delivery of subscriber) {
      await delivery.accept();
      arrivals.hit();
    }
  })().catch((err) => console.error("bench subscriber failed:", err));
}

let unique = 0;
export const runId = () => `${process.pid}-${Date.now().toString(36)}-${unique++}`;

/** MQTT 5 on a Mosquitto the suite starts (isolated from the shared one), QoS 1 both ways. */
export function mqttTransport(): E2eTransport {
  return {
    name: "MQTT 5 (Mosquitto, QoS 1)",
    rawLabel: "mqtt.js, pre-encoded",
    maxPayloadBytes: 1 << 20,
    async open() {
      // testkit's Mosquitto sets TCP_NODELAY: with Nagle on, a QoS 1 PUBACK waits for the
      // client's delayed ACK (~40 ms) and the run measures TCP timers, not the code.
      const broker = await startMosquitto();
      const url = broker.url;
      const id = runId();
      const clients = await Promise.all(
        Array.from({ length: 4 }, () => mqtt.connectAsync(url, { protocolVersion: 5 })),
      );
      const [ourPub, ourSub, rawPub, rawSub] = clients as [
        mqtt.MqttClient,
        mqtt.MqttClient,
        mqtt.MqttClient,
        mqtt.MqttClient,
      ];
      const ourTopic = `bench/${id}/ours`;
      const rawTopic = `bench/${id}/raw`;
      const oursArrivals = new Arrivals();
      const rawArrivals = new Arrivals();
      const subscriber = await mqttSubscriber(ourSub, { topic: ourTopic, qos: 1, formats: [json] });
      consume(subscriber, oursArrivals);
      await rawSub.subscribeAsync(rawTopic, { qos: 1 });
      rawSub.on("message", () => rawArrivals.hit());
      const publisher = mqttPublisher(ourPub, { topic: ourTopic, qos: 1 });
      return {
        prepare(events) {
          const pre = events.map((e) => {
            const m = toMqttMessage(e, { mode: "binary" });
            return {
              payload: Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength),
              properties: {
                ...(m.contentType === undefined ? {} : { contentType: m.contentType }),
                userProperties: m.userProperties as Record<string, string>,
              },
            };
          });
          return {
            ours: {
              arrivals: oursArrivals,
              send: publishFrom(publisher, events),
            },
            raw: {
              arrivals: rawArrivals,
              send: async (from, n) => {
                const sends: Promise<unknown>[] = [];
                for (const p of slice(pre, from, n)) {
                  sends.push(
                    rawPub.publishAsync(rawTopic, p.payload, { qos: 1, properties: p.properties }),
                  );
                }
                await Promise.all(sends);
              },
            },
          };
        },
        async close() {
          await publisher.close();
          await subscriber.close();
          await Promise.all(clients.map((c) => c.endAsync()));
          await broker.stop();
        },
      };
    },
  };
}

/** Core NATS (at most once) on a nats-server the suite starts. */
export function natsCoreTransport(): E2eTransport {
  return {
    name: "NATS core (nats-server)",
    rawLabel: "nats.js, pre-encoded",
    maxPayloadBytes: 1 << 20,
    async open() {
      const server = await startNatsServer({ maxPayloadBytes: 8 << 20 });
      const id = runId();
      const [pubNc, subNc] = await Promise.all([
        connect({ servers: server.url }),
        connect({ servers: server.url }),
      ]);
      const ourSubject = `bench.${id}.ours`;
      const rawSubject = `bench.${id}.raw`;
      const oursArrivals = new Arrivals();
      const rawArrivals = new Arrivals();
      const subscriber = natsSubscriber(subNc, { subject: ourSubject, formats: [json] });
      consume(subscriber, oursArrivals);
      subNc.subscribe(rawSubject, { callback: () => rawArrivals.hit() });
      await subNc.flush();
      const publisher = natsPublisher(pubNc, { subject: ourSubject });
      // Flush every 1 MiB or so on both sides, so neither buffers a whole run in memory.
      let unflushed = 0;
      const maybeFlush = async (bytes: number) => {
        unflushed += bytes;
        if (unflushed >= 1 << 20) {
          unflushed = 0;
          await pubNc.flush();
        }
      };
      return {
        prepare(events) {
          const size = events[0]?.data instanceof Uint8Array ? events[0].data.length + 300 : 600;
          const pre = events.map((e) => {
            const m = toNatsMessage(e);
            const h = natsHeaders();
            for (const [name, values] of m.headers) for (const v of values) h.append(name, v);
            return { data: m.data, headers: h };
          });
          const send = publishFrom(publisher, events);
          return {
            ours: {
              arrivals: oursArrivals,
              send: async (from, n) => {
                await send(from, n);
                await maybeFlush(size * n);
              },
              finish: () => pubNc.flush(),
            },
            raw: {
              arrivals: rawArrivals,
              send: async (from, n) => {
                for (const p of slice(pre, from, n)) {
                  pubNc.publish(rawSubject, p.data, { headers: p.headers });
                }
                await maybeFlush(size * n);
              },
              finish: () => pubNc.flush(),
            },
          };
        },
        async close() {
          await publisher.close();
          await subscriber.close();
          await pubNc.close();
          await subNc.close();
          await server.stop();
        },
      };
    },
  };
}

/** NATS JetStream: publishes wait for the stream's PubAck, consumers ack every message. */
export function jetStreamTransport(): E2eTransport {
  return {
    name: "NATS JetStream (acks both ways)",
    rawLabel: "nats.js JetStream, pre-encoded",
    maxPayloadBytes: 1 << 20,
    async open() {
      const server = await startNatsServer({ maxPayloadBytes: 8 << 20 });
      const id = runId().replace(/[^a-zA-Z0-9]/g, "_");
      const [pubNc, subNc] = await Promise.all([
        connect({ servers: server.url }),
        connect({ servers: server.url }),
      ]);
      const jsm = await jetstreamManager(pubNc);
      const sides = ["ours", "raw"] as const;
      for (const side of sides) {
        await jsm.streams.add({
          name: `BENCH_${id}_${side}`,
          subjects: [`bench.js.${id}.${side}`],
          storage: StorageType.Memory,
          retention: RetentionPolicy.Limits,
          max_bytes: 512 << 20,
        });
        await jsm.consumers.add(`BENCH_${id}_${side}`, {
          durable_name: "bench",
          ack_policy: "explicit" as never,
          max_ack_pending: 20_000,
        });
      }
      const jsPub = jetstream(pubNc);
      const jsSub = jetstream(subNc);
      const oursArrivals = new Arrivals();
      const rawArrivals = new Arrivals();
      const subscriber = await jetStreamSubscriber(jsSub, {
        stream: `BENCH_${id}_ours`,
        consumer: "bench",
        formats: [json],
      });
      consume(subscriber, oursArrivals);
      const rawConsumer = await jsSub.consumers.get(`BENCH_${id}_raw`, "bench");
      const rawMessages = await rawConsumer.consume({ max_messages: 256 });
      void (async () => {
        for await (const m of rawMessages) {
          m.ack();
          rawArrivals.hit();
        }
      })();
      const ourSubject = `bench.js.${id}.ours`;
      const rawSubject = `bench.js.${id}.raw`;
      // No de-duplication on either side: the same event is sent many times in a run.
      const publisher = jetStreamPublisher(jsPub, {
        subject: ourSubject,
        messageId: () => undefined,
      });
      return {
        prepare(events) {
          const pre = events.map((e) => {
            const m = toNatsMessage(e);
            return { data: m.data, pairs: [...m.headers] };
          });
          return {
            ours: {
              arrivals: oursArrivals,
              send: publishFrom(publisher, events),
            },
            raw: {
              arrivals: rawArrivals,
              send: async (from, n) => {
                const acks: Promise<unknown>[] = [];
                for (const p of slice(pre, from, n)) {
                  // A MsgHdrs per publish, as a caller must: JetStream adds to it.
                  const h = natsHeaders();
                  for (const [name, values] of p.pairs) for (const v of values) h.append(name, v);
                  acks.push(jsPub.publish(rawSubject, p.data, { headers: h }));
                }
                await Promise.all(acks);
              },
            },
          };
        },
        async close() {
          rawMessages.stop();
          await subscriber.close();
          await publisher.close();
          await pubNc.close();
          await subNc.close();
          await server.stop();
        },
      };
    },
  };
}

/**
 * Kafka through the testkit's Kafka-protocol broker, which runs in this same process: its work
 * is in both sides' figures (and in the CPU time).
 */
export function kafkaTransport(): E2eTransport {
  return {
    name: "Kafka (testkit broker, in process)",
    rawLabel: "kafkajs, pre-encoded",
    maxPayloadBytes: 1 << 20,
    async open() {
      const broker = await startKafkaBroker({ log: () => {} });
      const id = runId();
      const kafka = new Kafka({ brokers: broker.brokers, logLevel: logLevel.NOTHING });
      const producer = kafka.producer({ idempotent: true });
      await producer.connect();
      const ourTopic = `bench-${id}-ours`;
      const rawTopic = `bench-${id}-raw`;
      broker.createTopic(ourTopic, 1);
      broker.createTopic(rawTopic, 1);
      const ourConsumer = kafka.consumer({ groupId: `bench-${id}-ours`, maxWaitTimeInMs: 50 });
      const rawConsumer = kafka.consumer({ groupId: `bench-${id}-raw`, maxWaitTimeInMs: 50 });
      await Promise.all([ourConsumer.connect(), rawConsumer.connect()]);
      const oursArrivals = new Arrivals();
      const rawArrivals = new Arrivals();
      const subscriber = kafkaSubscriber(ourConsumer, {
        topics: [ourTopic],
        formats: [json],
        fromBeginning: true,
      });
      await subscriber.ready;
      consume(subscriber, oursArrivals);
      await rawConsumer.subscribe({ topics: [rawTopic], fromBeginning: true });
      await rawConsumer.run({
        eachBatch: async ({ batch }) => rawArrivals.hit(batch.messages.length),
      });
      const publisher = kafkaPublisher(producer, { topic: ourTopic });
      return {
        prepare(events) {
          const pre = events.map((e) => {
            const r = toKafkaRecord(e);
            const v = r.value as Uint8Array;
            return {
              key: null,
              value: Buffer.from(v.buffer, v.byteOffset, v.byteLength),
              headers: r.headers,
            };
          });
          return {
            ours: {
              arrivals: oursArrivals,
              send: publishFrom(publisher, events),
            },
            raw: {
              arrivals: rawArrivals,
              send: async (from, n) => {
                await producer.send({ topic: rawTopic, messages: slice(pre, from, n) });
              },
            },
          };
        },
        async close() {
          await subscriber.close();
          await publisher.close();
          await Promise.all([ourConsumer.disconnect(), rawConsumer.disconnect()]);
          await producer.disconnect();
          await broker.stop();
        },
      };
    },
  };
}

/** Sends `count` events in batches of `batch` through one side and waits for all to arrive. */
export async function runSide(endpoint: Endpoint, count: number, batch: number): Promise<void> {
  const done = endpoint.arrivals.more(count);
  for (let i = 0; i < count; i += batch) await endpoint.send(i, Math.min(batch, count - i));
  await endpoint.finish?.();
  await done;
}

/**
 * Sends one event every `1000 / rate` ms for `durationMs` through one side, without waiting for
 * acknowledgements between sends, and returns the end-to-end latency of every event in ms
 * (transports here keep order on one connection and one partition, so the i-th arrival is the
 * i-th event sent).
 */
export async function latencyRun(
  endpoint: Endpoint,
  rate: number,
  durationMs: number,
): Promise<number[]> {
  const total = Math.max(1, Math.round((rate * durationMs) / 1000));
  const sentAt: number[] = [];
  const latencies: number[] = [];
  const arrivals = endpoint.arrivals;
  const done = arrivals.more(total);
  arrivals.onArrive = (at) => {
    const sent = sentAt[latencies.length];
    if (sent !== undefined) latencies.push(at - sent);
  };
  const start = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    sentAt.push(performance.now());
    pending.push(endpoint.send(i, 1));
  }
  await Promise.all(pending);
  await endpoint.finish?.();
  await done;
  arrivals.onArrive = undefined;
  return latencies;
}
