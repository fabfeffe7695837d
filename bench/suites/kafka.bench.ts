import { fromKafkaRecord, kafkaPublisher, toKafkaRecord } from "@posthorn/binding-kafka";
import { toCloudEventV1 } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { startKafkaBroker, vector } from "@posthorn/testkit";
import { CloudEvent as SdkCloudEvent, Kafka as SdkKafka } from "cloudevents";
import { Kafka, logLevel, type Message } from "kafkajs";
import { type BenchSuite, compare, compareThroughput, type Row } from "../lib.ts";

// The Kafka binding against the `cloudevents` package's Kafka binding on the same typical event,
// and Posthorn's publisher against kafkajs sending the same records pre-encoded, through the
// testkit's Kafka-protocol broker. Decoding: Posthorn reads records as kafkajs delivers them
// (header values as Buffers); the cloudevents package cannot read Buffer headers, so it gets the
// same record with string headers, which favours it.
function asReceived(record: ReturnType<typeof toKafkaRecord>) {
  const headers: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(record.headers)) headers[k] = Buffer.from(v);
  return { key: null, value: record.value === null ? null : Buffer.from(record.value), headers };
}

// The shortest conversion a user would write: every header value's toString().
function withTextHeaders(record: ReturnType<typeof asReceived>) {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(record.headers)) headers[k] = v.toString();
  return { key: record.key ?? undefined, value: record.value, headers };
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const textOf = (bytes: Uint8Array): string => utf8.decode(bytes);

export const suite: BenchSuite = {
  name: "Kafka binding vs the cloudevents package, publisher vs raw kafkajs",
  async run(ctx) {
    const event = vector("typical").event;
    const sdkEvent = new SdkCloudEvent(toCloudEventV1(event) as never);
    const rows: Row[] = [];
    for (const mode of ["binary", "structured"] as const) {
      const record = toKafkaRecord(event, { mode, format: json });
      const received = asReceived(record);
      const sdkMessage = {
        key: undefined,
        value: received.value,
        headers: { ...record.headers },
      } as never;
      rows.push(
        await compare({
          group: "codec: Kafka binding",
          name: `encode ${mode}`,
          ours: { fn: () => toKafkaRecord(event, { mode, format: json }) },
          baseline: {
            label: `cloudevents Kafka.${mode}`,
            fn: () =>
              mode === "binary" ? SdkKafka.binary(sdkEvent) : SdkKafka.structured(sdkEvent),
          },
          ctx,
        }),
      );
      rows.push(
        await compare({
          group: "codec: Kafka binding",
          name: `decode ${mode}`,
          ours: { fn: () => fromKafkaRecord(received, { formats: [json] }) },
          baseline: { label: "cloudevents Kafka.toEvent", fn: () => SdkKafka.toEvent(sdkMessage) },
          goal: 5,
          note: "the baseline builds its event with strict=false: no validation",
          ctx,
        }),
      );
      // The ceiling: what a decoder that did nothing but read the value's JSON would reach
      // against the same baseline. The decode goal cannot be above this ratio.
      const value = received.value as Buffer;
      rows.push(
        await compare({
          group: "codec: Kafka binding",
          name: `decode ${mode}, ceiling: UTF-8 and JSON.parse of the value alone`,
          ours: { label: "TextDecoder + JSON.parse only", fn: () => JSON.parse(textOf(value)) },
          baseline: { label: "cloudevents Kafka.toEvent", fn: () => SdkKafka.toEvent(sdkMessage) },
          note: "no event is built and no header is read: no decoder can be faster",
          ctx,
        }),
      );
      // The same work on both sides: the cloudevents event validated as Posthorn's always is.
      rows.push(
        await compare({
          group: "codec: Kafka binding",
          name: `decode ${mode}, baseline also validating`,
          ours: { fn: () => fromKafkaRecord(received, { formats: [json] }) },
          baseline: {
            label: "cloudevents Kafka.toEvent + validate()",
            fn: () => (SdkKafka.toEvent(sdkMessage) as SdkCloudEvent).validate(),
          },
          ctx,
        }),
      );
      // What a kafkajs consumer of the cloudevents package has to do: kafkajs hands header values
      // over as Buffers, which Kafka.toEvent cannot read (a structured record fails on
      // `startsWith`, a binary one keeps Buffers as attribute values), so they become strings
      // first. Both sides then start from the record kafkajs delivered.
      rows.push(
        await compare({
          group: "codec: Kafka binding",
          name: `decode ${mode}, baseline given kafkajs's Buffer headers`,
          ours: { fn: () => fromKafkaRecord(received, { formats: [json] }) },
          baseline: {
            label: "header Buffers to strings + cloudevents Kafka.toEvent",
            fn: () => SdkKafka.toEvent(withTextHeaders(received) as never),
          },
          ctx,
        }),
      );
    }

    const broker = await startKafkaBroker();
    const kafka = new Kafka({ brokers: broker.brokers, logLevel: logLevel.NOTHING });
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    try {
      const topic = `bench-kafka-${Date.now()}`;
      broker.createTopic(topic, 3);
      const batch = 100;
      const count = ctx.quick ? 5_000 : 30_000;
      const events = Array.from({ length: batch }, (_, i) => event.cloneWith({ id: `bench-${i}` }));
      const encoded: Message[] = events.map((e) => {
        const r = toKafkaRecord(e);
        return { key: null, value: Buffer.from(r.value as Uint8Array), headers: r.headers };
      });
      const publisher = kafkaPublisher(producer, { topic });
      await producer.send({ topic, messages: encoded }); // warm up the connection and metadata
      rows.push(
        await compareThroughput({
          group: "throughput: Kafka (test broker, idempotent producer)",
          name: `publish binary, batches of ${batch}`,
          count,
          rounds: ctx.quick ? 3 : 5,
          warmup: 2000,
          ours: {
            run: async (n) => {
              for (let i = 0; i < n; i += batch) await publisher.publish(events);
            },
          },
          baseline: {
            label: "kafkajs send, pre-encoded",
            run: async (n) => {
              for (let i = 0; i < n; i += batch) await producer.send({ topic, messages: encoded });
            },
          },
          goal: 0.9,
        }),
      );
    } finally {
      await producer.disconnect();
      await broker.stop();
    }
    return rows;
  },
};
