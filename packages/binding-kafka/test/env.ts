import { randomUUID } from "node:crypto";
import { type KafkaTestBroker, requireBroker, startKafkaBroker } from "@posthorn/testkit";
import {
  type Consumer,
  type ConsumerConfig,
  type ISocketFactory,
  Kafka,
  type KafkaConfig,
  logLevel,
  type Producer,
  type ProducerConfig,
} from "kafkajs";

/**
 * The Kafka the integration tests talk to: the cluster `KAFKA_BROKERS` names, or else the
 * testkit's in-memory Kafka-protocol broker on a free port. Short timeouts keep the tests fast.
 */
export interface KafkaEnv {
  readonly brokers: string[];
  readonly kafka: Kafka;
  /** The testkit broker, when the tests run against it. */
  readonly broker: KafkaTestBroker | undefined;
  /** A topic name no other test uses. */
  topicName(label: string): string;
  createTopic(name: string, partitions: number): Promise<void>;
  producer(config?: ProducerConfig): Promise<Producer>;
  /**
   * A connected consumer in `groupId` with short session and retry timeouts; with a
   * `socketFactory`, on a client of its own that makes its connections with it.
   */
  consumer(
    groupId: string,
    config?: Partial<ConsumerConfig>,
    socketFactory?: ISocketFactory,
  ): Promise<Consumer>;
  /** Disconnects every client made here, then stops the broker when it started one. */
  stop(): Promise<void>;
}

/** Whether an external cluster is named, and reachable (under CI a missing one throws). */
export async function externalKafkaOk(): Promise<boolean> {
  return process.env.KAFKA_BROKERS ? requireBroker("kafka") : true;
}

export async function kafkaEnv(): Promise<KafkaEnv> {
  const external = process.env.KAFKA_BROKERS;
  const broker = external ? undefined : await startKafkaBroker();
  const brokers = external
    ? external.split(",").map((b) => b.trim())
    : (broker as KafkaTestBroker).brokers;
  const kafkaConfig: KafkaConfig = {
    clientId: "posthorn-binding-kafka-tests",
    brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 2000,
    requestTimeout: 10_000,
    retry: { retries: 5, initialRetryTime: 50, maxRetryTime: 500 },
  };
  const kafka = new Kafka(kafkaConfig);
  const clients: Array<{ disconnect(): Promise<void> }> = [];
  const run = randomUUID().slice(0, 8);
  return {
    brokers,
    kafka,
    broker,
    topicName: (label) => `posthorn-kafka-${label}-${run}-${randomUUID().slice(0, 6)}`,
    async createTopic(name, partitions) {
      const admin = kafka.admin();
      await admin.connect();
      try {
        await admin.createTopics({
          topics: [{ topic: name, numPartitions: partitions }],
          waitForLeaders: true,
        });
      } finally {
        await admin.disconnect();
      }
    },
    async producer(config = {}) {
      const producer = kafka.producer({ allowAutoTopicCreation: true, ...config });
      await producer.connect();
      clients.push(producer);
      return producer;
    },
    async consumer(groupId, config = {}, socketFactory) {
      const client = socketFactory ? new Kafka({ ...kafkaConfig, socketFactory }) : kafka;
      const consumer = client.consumer({
        groupId,
        sessionTimeout: 6000,
        rebalanceTimeout: 3000,
        heartbeatInterval: 300,
        maxWaitTimeInMs: 50,
        retry: { retries: 5, initialRetryTime: 50, maxRetryTime: 500 },
        ...config,
      });
      await consumer.connect();
      clients.push(consumer);
      return consumer;
    },
    async stop() {
      for (const c of clients.splice(0).reverse()) await c.disconnect().catch(() => {});
      await broker?.stop();
    },
  };
}
