import { kafkaPublisher, kafkaSubscriber, partitionKeyMapper } from "@posthorn/binding-kafka";
import { PosthornError } from "@posthorn/core";
import { type Admin, Kafka, type KafkaConfig, logLevel, type SASLOptions } from "kafkajs";
import type { EndpointDriver, ResolvedEndpoint } from "../driver.js";
import { booleanParam, integerParam, type ParsedEndpointUrl } from "../endpoint-url.js";
import {
  formatsHere,
  headerTraits,
  ownedPublisher,
  ownedSubscriber,
  withTimeout,
} from "./common.js";

const SASL_MECHANISMS = ["plain", "scram-sha-256", "scram-sha-512"] as const;

function topicOf(url: ParsedEndpointUrl): string {
  if (url.path === "" || url.path.includes("/")) {
    throw new PosthornError("MalformedInput", `${url.display}: the path must name one topic`);
  }
  return url.path;
}

function client(endpoint: ResolvedEndpoint): Kafka {
  const url = endpoint.url;
  const config: KafkaConfig = {
    clientId: url.params.get("clientid") ?? endpoint.options.clientId ?? "posthorn",
    brokers: url.hosts.map(
      (h) => `${h.host.includes(":") ? `[${h.host}]` : h.host || "127.0.0.1"}:${h.port ?? 9092}`,
    ),
    connectionTimeout: Math.min(endpoint.timeoutMs, 10_000),
    requestTimeout: Math.max(endpoint.timeoutMs, 5000),
    retry: { retries: 2, initialRetryTime: 100 },
    logLevel: logLevel.NOTHING,
  };
  const tls = endpoint.options.tls;
  if (url.scheme === "kafka+ssl" || booleanParam(url, "tls") === true || tls) {
    config.ssl = {
      ...(tls?.ca === undefined ? {} : { ca: [Buffer.from(tls.ca)] }),
      ...(tls?.cert === undefined ? {} : { cert: Buffer.from(tls.cert) }),
      ...(tls?.key === undefined ? {} : { key: Buffer.from(tls.key) }),
      ...(tls?.rejectUnauthorized === undefined
        ? {}
        : { rejectUnauthorized: tls.rejectUnauthorized }),
    };
  }
  if (endpoint.username !== undefined) {
    const mechanism = (url.params.get("sasl") ?? "plain") as (typeof SASL_MECHANISMS)[number];
    config.sasl = {
      mechanism,
      username: endpoint.username,
      password: endpoint.password ?? "",
    } as SASLOptions;
  }
  return new Kafka(config);
}

/** Creates the topic unless it exists (or `?create=false`). */
async function ensureTopic(kafka: Kafka, endpoint: ResolvedEndpoint, topic: string): Promise<void> {
  if (booleanParam(endpoint.url, "create") === false) return;
  const admin: Admin = kafka.admin();
  await admin.connect();
  try {
    const partitions = integerParam(endpoint.url, "partitions", 1);
    await admin.createTopics({
      topics: [{ topic, ...(partitions === undefined ? {} : { numPartitions: partitions }) }],
      waitForLeaders: true,
    });
  } catch (err) {
    // TOPIC_ALREADY_EXISTS is the common case; anything else shows up on first use.
    if (!/exist/i.test(String((err as Error)?.message))) throw err;
  } finally {
    await admin.disconnect();
  }
}

/** `kafka://`, `kafka+ssl://`: Kafka over kafkajs; the URL may list several bootstrap brokers. */
export const driver: EndpointDriver = {
  transport: "kafka",
  schemes: ["kafka", "kafka+ssl"],
  params: ["group", "from", "dlq", "key", "clientid", "tls", "sasl", "create", "partitions"],
  check(url) {
    topicOf(url);
    integerParam(url, "partitions", 1);
    const from = url.params.get("from");
    if (from !== null && from !== "earliest" && from !== "latest") {
      throw new PosthornError("MalformedInput", `${url.display}: from must be earliest or latest`);
    }
    const key = url.params.get("key");
    if (key !== null && key !== "partitionkey") {
      throw new PosthornError(
        "MalformedInput",
        `${url.display}: key=partitionkey is the one key mapping a URL can name`,
      );
    }
    const sasl = url.params.get("sasl");
    if (sasl !== null && !(SASL_MECHANISMS as readonly string[]).includes(sasl)) {
      throw new PosthornError(
        "MalformedInput",
        `${url.display}: sasl must be one of ${SASL_MECHANISMS.join(", ")}`,
      );
    }
  },
  support: () => ({
    binary: true,
    structured: formatsHere(),
    batch: "the Kafka binding has no batch mode (one event per record)",
    defaultMode: "binary",
  }),
  // Kafka headers keep their case; their values are bytes, read back as Strings.
  traits: (_url, mode) => headerTraits(mode, true),
  async createPublisher(endpoint) {
    const kafka = client(endpoint);
    const topic = topicOf(endpoint.url);
    await ensureTopic(kafka, endpoint, topic);
    const producer = kafka.producer({ allowAutoTopicCreation: true });
    await withTimeout(producer.connect(), endpoint.timeoutMs, "Kafka producer connect");
    const publisher = kafkaPublisher(producer, {
      topic,
      mode: endpoint.mode === "structured" ? "structured" : "binary",
      format: endpoint.format,
      timeoutMs: endpoint.timeoutMs,
      ...(endpoint.url.params.get("key") === "partitionkey"
        ? { keyMapper: partitionKeyMapper }
        : {}),
    });
    return ownedPublisher(publisher, () => producer.disconnect());
  },
  async createSubscriber(endpoint) {
    const url = endpoint.url;
    const kafka = client(endpoint);
    const topic = topicOf(url);
    await ensureTopic(kafka, endpoint, topic);
    const group = url.params.get("group") ?? `posthorn-${Math.random().toString(16).slice(2, 10)}`;
    // A named group resumes from its checkpoint; a new one starts at the end unless from=earliest.
    const fromBeginning = url.params.get("from") === "earliest";
    const consumer = kafka.consumer({
      groupId: group,
      sessionTimeout: 10_000,
      heartbeatInterval: 1000,
      maxWaitTimeInMs: 100,
      retry: { retries: 2 },
    });
    const dlq = url.params.get("dlq");
    const producer = dlq === null ? undefined : kafka.producer({ allowAutoTopicCreation: true });
    try {
      await withTimeout(consumer.connect(), endpoint.timeoutMs, "Kafka consumer connect");
      if (producer) await producer.connect();
      const subscriber = kafkaSubscriber(consumer, {
        topics: [topic],
        fromBeginning,
        formats: endpoint.formats,
        ...(dlq === null || !producer ? {} : { deadLetterTopic: dlq, producer }),
      });
      await withTimeout(subscriber.ready, Math.max(endpoint.timeoutMs, 15_000), "Kafka group join");
      return ownedSubscriber(subscriber, async () => {
        await consumer.disconnect();
        await producer?.disconnect();
      });
    } catch (err) {
      await consumer.disconnect().catch(() => undefined);
      await producer?.disconnect().catch(() => undefined);
      throw err;
    }
  },
};
