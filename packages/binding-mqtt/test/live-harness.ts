import { CloudEvent, type Delivery, type EventFormat, PosthornError } from "@posthorn/core";
import type { BindingHarness, BindingPath, EventVector } from "@posthorn/testkit";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { afterEach } from "vitest";
import { type MqttSubscriber, mqttPublisher, mqttSubscriber } from "../src/index.js";

let counter = 0;
/** A topic no other test uses. */
export function uniqueTopic(label: string): string {
  counter++;
  return `posthorn-test/${label}/${process.pid}-${Date.now().toString(36)}-${counter}`;
}

/**
 * A list for what a test opens (mqtt.js clients, subscribers, publishers), closed after each test
 * of the file, newest first, clients ended at once. Call it at the top level of a test file.
 */
export function closedAfterEach(): Array<{ close(): Promise<void> } | MqttClient> {
  const opened: Array<{ close(): Promise<void> } | MqttClient> = [];
  afterEach(async () => {
    for (const x of opened.splice(0).reverse()) {
      if ("endAsync" in x) await x.endAsync(true);
      else await x.close();
    }
  });
  return opened;
}

/**
 * The `client(options)` of a test file: an mqtt.js client of the broker at `url` (a function for
 * a broker the file starts in `beforeAll`), connected, and closed after each test with the rest
 * of `opened` (from {@link closedAfterEach}).
 */
export function clientsOf(
  url: string | (() => string),
  opened: ReturnType<typeof closedAfterEach>,
): (options: IClientOptions) => Promise<MqttClient> {
  return async (options) => {
    const c = await connect(typeof url === "string" ? url : url(), options);
    opened.push(c);
    return c;
  };
}

/** The `client()` of a test file whose clients all speak MQTT 5: {@link clientsOf}, at MQTT 5. */
export function v5Clients(
  url: string,
  opened: ReturnType<typeof closedAfterEach>,
): () => Promise<MqttClient> {
  const client = clientsOf(url, opened);
  return () => client({ protocolVersion: 5 });
}

/**
 * Options for a client whose session survives reconnects, as `release()` needs: `clean: false`,
 * a client id of its own, and at MQTT 5 a session expiry of 30 s.
 */
export function persistentSession(protocolVersion: 4 | 5, label: string): IClientOptions {
  return {
    protocolVersion,
    clean: false,
    clientId: `posthorn-${label}-${Math.random().toString(36).slice(2, 10)}`,
    ...(protocolVersion === 5 ? { properties: { sessionExpiryInterval: 30 } } : {}),
  };
}

/** The `i`th event of a test's jobs: id `job-<i>`, data `{ i }`. */
export function job(i: number): CloudEvent {
  return new CloudEvent({
    specversion: "1.0",
    id: `job-${i}`,
    source: "/tests",
    type: "com.example.job",
    data: { i },
  });
}

/** Connects an mqtt.js client and waits for CONNACK. */
export function connect(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { reconnectPeriod: 200, connectTimeout: 5000, ...options });
}

export interface LiveHarnessOptions {
  name: string;
  /** The broker URL, or a function that starts a broker and returns its URL. */
  url: () => string | Promise<string>;
  protocolVersion: 4 | 5;
  paths: readonly BindingPath[];
  formats: readonly EventFormat[];
  typed: boolean;
  stop?: () => Promise<void>;
  /** Why this broker cannot carry a vector. */
  skip?: (vector: EventVector) => string | undefined;
}

/**
 * A conformance harness that publishes each event through a real broker and returns what the
 * subscriber decoded: one publishing client and one subscribing client, one topic per event.
 */
export function liveHarness(options: LiveHarnessOptions): BindingHarness {
  let pub: MqttClient | undefined;
  let sub: MqttClient | undefined;
  let subscriber: MqttSubscriber | undefined;
  let loop: Promise<void> | undefined;
  const base = uniqueTopic(options.name.replace(/[^a-z0-9]+/gi, "-"));
  const waiting = new Map<string, (d: Delivery) => void>();
  let n = 0;
  return {
    name: options.name,
    paths: options.paths,
    typed: options.typed,
    caseSensitive: true,
    timeoutMs: 15_000,
    async setup() {
      const url = await options.url();
      pub = await connect(url, { protocolVersion: options.protocolVersion });
      sub = await connect(url, { protocolVersion: options.protocolVersion });
      subscriber = await mqttSubscriber(sub, {
        topic: `${base}/#`,
        qos: 1,
        formats: options.formats,
      });
      const s = subscriber;
      loop = (async () => {
        for await (const d of s) {
          await d.accept();
          const topic = d.message.metadata?.topic as string;
          waiting.get(topic)?.(d);
          waiting.delete(topic);
        }
      })();
    },
    async teardown() {
      await subscriber?.close();
      await loop;
      await pub?.endAsync();
      await sub?.endAsync();
      await options.stop?.();
    },
    async roundTrip(event: CloudEvent, path: BindingPath) {
      const topic = `${base}/${++n}`;
      const received = new Promise<Delivery>((resolve) => waiting.set(topic, resolve));
      const publisher = mqttPublisher(pub as MqttClient, {
        topic,
        qos: 1,
        mode: path.mode === "binary" ? "binary" : "structured",
        ...(path.format ? { format: path.format } : {}),
      });
      try {
        await publisher.publish(event);
      } catch (err) {
        waiting.delete(topic);
        throw err;
      }
      const d = await received;
      if (d.error) throw d.error;
      // No specversion at all: the receiver sees a plain MQTT message, not a CloudEvent.
      if (!d.event) throw new PosthornError("MalformedInput", "the message is not a CloudEvent");
      return d.event;
    },
    skip(vector: EventVector) {
      return options.skip?.(vector);
    },
  };
}
