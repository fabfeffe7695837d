import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { connect as natsConnect } from "@nats-io/transport-node";
import { context, SpanKind, trace } from "@opentelemetry/api";
import { AsyncHooksContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { createNodeHandler, httpPublisher, httpReceiver } from "@posthorn/binding-http";
import { kafkaPublisher, kafkaSubscriber } from "@posthorn/binding-kafka";
import { mqttPublisher, mqttSubscriber } from "@posthorn/binding-mqtt";
import { natsPublisher, natsSubscriber } from "@posthorn/binding-nats";
import { CloudEvent, type Publisher, type Subscriber } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { instrumentPublisher, instrumentSubscriber, type TracedDelivery } from "@posthorn/otel";
import {
  brokerUrl,
  type LaunchedBroker,
  requireBroker,
  startKafkaBroker,
  startNatsServer,
} from "@posthorn/testkit";
import { Kafka, logLevel } from "kafkajs";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Issue 12: one trace follows an event HTTP -> Kafka -> MQTT -> NATS over real connections: each
// hop's handler republishes the event inside its delivery's context, and every span, producer
// and consumer, ends up in the trace the first request started.
const mqttOk = await requireBroker("mqtt");

describe.skipIf(!mqttOk)(
  "one trace across four transports (skipped outside CI when Mosquitto is down)",
  () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    const tracer = provider.getTracer("trace-test");
    const manager = new AsyncHooksContextManager();
    const cleanups: Array<() => Promise<unknown> | unknown> = [];
    const run = `${process.pid}-${Date.now().toString(36)}`;
    const hops: Array<{ name: string; publisher: Publisher; subscriber: Subscriber }> = [];

    beforeAll(async () => {
      manager.enable();
      context.setGlobalContextManager(manager);
      cleanups.push(() => context.disable());

      // HTTP: an in-process server with Posthorn's node:http receiver.
      const receiver = httpReceiver({ formats: [json], settleTimeoutMs: 10_000 });
      const server: Server = createServer(createNodeHandler(receiver));
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      cleanups.push(
        () => new Promise((r) => server.close(r)),
        () => receiver.close(),
      );
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
      hops.push({
        name: "http",
        publisher: httpPublisher({ url, retry: false }),
        subscriber: receiver,
      });

      // Kafka: KAFKA_BROKERS, or the testkit's Kafka-protocol broker.
      const kafkaBroker = process.env.KAFKA_BROKERS ? undefined : await startKafkaBroker();
      if (kafkaBroker) cleanups.push(() => kafkaBroker.stop());
      const brokers = process.env.KAFKA_BROKERS?.split(",") ?? (kafkaBroker?.brokers as string[]);
      const kafka = new Kafka({
        brokers,
        logLevel: logLevel.NOTHING,
        retry: { retries: 5, initialRetryTime: 50 },
      });
      const producer = kafka.producer({ allowAutoTopicCreation: true });
      await producer.connect();
      const consumer = kafka.consumer({
        groupId: `trace-${run}`,
        sessionTimeout: 6000,
        rebalanceTimeout: 3000,
        heartbeatInterval: 300,
      });
      await consumer.connect();
      const topic = `trace-${run}`;
      const kafkaSub = kafkaSubscriber(consumer, {
        topics: [topic],
        fromBeginning: true,
        formats: [json],
      });
      await kafkaSub.ready;
      cleanups.push(
        () => kafkaSub.close(),
        () => producer.disconnect(),
      );
      hops.push({
        name: "kafka",
        publisher: kafkaPublisher(producer, { topic }),
        subscriber: kafkaSub,
      });

      // MQTT 5: Mosquitto at MQTT_URL (default 127.0.0.1:1883).
      const mqttUrl = brokerUrl("mqtt") as string;
      const mqttPub = await mqtt.connectAsync(mqttUrl, { protocolVersion: 5 });
      const mqttSubClient = await mqtt.connectAsync(mqttUrl, { protocolVersion: 5 });
      const mqttTopic = `posthorn-trace/${run}`;
      const mqttSub = await mqttSubscriber(mqttSubClient, {
        topic: mqttTopic,
        qos: 1,
        formats: [json],
      });
      cleanups.push(
        () => mqttSub.close(),
        () => mqttPub.endAsync(),
        () => mqttSubClient.endAsync(),
      );
      hops.push({
        name: "mqtt",
        publisher: mqttPublisher(mqttPub, { topic: mqttTopic, qos: 1 }),
        subscriber: mqttSub,
      });

      // NATS: NATS_URL, or a nats-server of the test's own.
      let nats: LaunchedBroker | undefined;
      if (!process.env.NATS_URL) {
        nats = await startNatsServer();
        cleanups.push(() => nats?.stop());
      }
      const nc = await natsConnect({
        servers: process.env.NATS_URL ?? (nats as LaunchedBroker).url,
      });
      const subject = `trace.${run}`;
      const natsSub = natsSubscriber(nc, { subject, formats: [json] });
      await nc.flush();
      cleanups.push(
        () => natsSub.close(),
        () => nc.close(),
      );
      hops.push({ name: "nats", publisher: natsPublisher(nc, { subject }), subscriber: natsSub });
    }, 60_000);

    afterAll(async () => {
      for (const cleanup of cleanups.reverse()) await cleanup();
    }, 30_000);

    it("keeps one trace id from the first request to the last consumer", async () => {
      const traced = hops.map((h) => ({
        name: h.name,
        publisher: instrumentPublisher(h.publisher, {
          tracer,
          system: h.name,
          destination: h.name,
        }),
        subscriber: instrumentSubscriber(h.subscriber, {
          tracer,
          system: h.name,
          destination: h.name,
        }),
      }));
      const iterators = traced.map(
        (h) => h.subscriber[Symbol.asyncIterator]() as AsyncIterator<TracedDelivery>,
      );
      const event = CloudEvent.create({
        type: "com.example.traced",
        source: "/trace",
        datacontenttype: "application/json",
        data: { hop: 0 },
      });

      const root = tracer.startSpan("incoming request");
      const rootCtx = trace.setSpan(context.active(), root);
      // The HTTP publish resolves only when the receiver settles, so receive concurrently.
      const first = iterators[0]?.next() as Promise<IteratorResult<TracedDelivery>>;
      const sent = context.with(rootCtx, () => traced[0]?.publisher.publish(event));
      let delivery = (await first).value as TracedDelivery;
      const seen: string[] = [];
      for (let i = 0; i < traced.length; i++) {
        seen.push(`${traced[i]?.name}:${delivery.event?.id}`);
        const next = traced[i + 1];
        const nextIterator = iterators[i + 1];
        let upcoming: Promise<IteratorResult<TracedDelivery>> | undefined;
        if (next && nextIterator) {
          upcoming = nextIterator.next();
          const current = delivery;
          await context.with(current.context, () =>
            next.publisher.publish(current.event as CloudEvent),
          );
        }
        await delivery.accept();
        if (upcoming) delivery = (await upcoming).value as TracedDelivery;
      }
      await sent;
      root.end();

      expect(seen).toEqual(traced.map((h) => `${h.name}:${event.id}`));
      const spans = exporter.getFinishedSpans();
      const ids = new Set(spans.map((s) => s.spanContext().traceId));
      expect(ids).toEqual(new Set([root.spanContext().traceId]));
      // Spans finish out of hop order (the HTTP publish resolves only when its delivery is settled).
      const names = (kind: SpanKind) =>
        spans
          .filter((s) => s.kind === kind)
          .map((s) => s.name)
          .sort();
      expect(names(SpanKind.PRODUCER)).toEqual([
        "send http",
        "send kafka",
        "send mqtt",
        "send nats",
      ]);
      expect(names(SpanKind.CONSUMER)).toEqual([
        "process http",
        "process kafka",
        "process mqtt",
        "process nats",
      ]);
      expect(spans.filter((s) => s.kind === SpanKind.PRODUCER)).toHaveLength(4);
      expect(spans.filter((s) => s.kind === SpanKind.CONSUMER)).toHaveLength(4);
      // Each consumer span is the child of the producer span of its hop, and links to it.
      for (const consumerSpan of spans.filter((s) => s.kind === SpanKind.CONSUMER)) {
        const parentId = consumerSpan.parentSpanContext?.spanId;
        const producerSpan = spans.find((s) => s.spanContext().spanId === parentId);
        expect(producerSpan?.kind).toBe(SpanKind.PRODUCER);
        expect(consumerSpan.links[0]?.context.spanId).toBe(parentId);
      }
    }, 60_000);
  },
);
