import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { type ConnectionOptions, connect, type NatsConnection } from "@nats-io/transport-node";
import {
  jetStreamPublisher,
  jetStreamSubscriber,
  natsPublisher,
  natsSubscriber,
} from "@posthorn/binding-nats";
import { PosthornError } from "@posthorn/core";
import type { EndpointDriver, ResolvedEndpoint } from "../driver.js";
import { booleanParam, type ParsedEndpointUrl } from "../endpoint-url.js";
import { formatsHere, headerTraits, ownedPublisher, ownedSubscriber } from "./common.js";

function subjectOf(url: ParsedEndpointUrl): string {
  if (url.path === "" || url.path.includes("/")) {
    throw new PosthornError(
      "MalformedInput",
      `${url.display}: the path must be one NATS subject (tokens separated by dots, e.g. /orders.created)`,
    );
  }
  return url.path;
}

async function connectTo(endpoint: ResolvedEndpoint): Promise<NatsConnection> {
  const url = endpoint.url;
  const secure = url.scheme === "nats+tls" || booleanParam(url, "tls") === true;
  const options: ConnectionOptions = {
    servers: url.hosts.map(
      (h) => `${h.host.includes(":") ? `[${h.host}]` : h.host || "127.0.0.1"}:${h.port ?? 4222}`,
    ),
    timeout: endpoint.timeoutMs,
    reconnect: false,
    name: "posthorn",
  };
  // nats://token@host: a user without a password is a token (as in the nats CLI).
  if (endpoint.username !== undefined && endpoint.password === undefined)
    options.token = endpoint.username;
  else {
    if (endpoint.username !== undefined) options.user = endpoint.username;
    if (endpoint.password !== undefined) options.pass = endpoint.password;
  }
  const tls = endpoint.options.tls;
  if (secure || tls) {
    options.tls = {
      ...(tls?.ca === undefined ? {} : { ca: String(Buffer.from(tls.ca)) }),
      ...(tls?.cert === undefined ? {} : { cert: String(Buffer.from(tls.cert)) }),
      ...(tls?.key === undefined ? {} : { key: String(Buffer.from(tls.key)) }),
    };
  }
  return connect(options);
}

/** Creates the stream when it does not exist, capturing the URL's subject. */
async function ensureStream(jsm: JetStreamManager, stream: string, subject: string): Promise<void> {
  try {
    await jsm.streams.info(stream);
  } catch {
    await jsm.streams.add({ name: stream, subjects: [subject] });
  }
}

/** `nats://`, `nats+tls://`: core NATS, or JetStream with `?stream=`. */
export const driver: EndpointDriver = {
  transport: "nats",
  schemes: ["nats", "nats+tls"],
  params: ["stream", "durable", "queue", "tls", "create", "dedupe"],
  check(url) {
    subjectOf(url);
    if (url.params.has("durable") && !url.params.has("stream")) {
      throw new PosthornError(
        "MalformedInput",
        `${url.display}: durable= needs stream= (JetStream)`,
      );
    }
    if (url.params.has("queue") && url.params.has("stream")) {
      throw new PosthornError(
        "NotSupported",
        `${url.display}: queue= is for core NATS; on JetStream, subscribers sharing a durable compete`,
      );
    }
  },
  support: () => ({
    binary: true,
    structured: formatsHere(),
    batch: "the NATS binding has no batch mode (NATS binding 1.3)",
    defaultMode: "binary",
  }),
  // NATS headers keep case on the wire, but the binding matches ce- names case-insensitively.
  traits: (_url, mode) => headerTraits(mode, false),
  async createPublisher(endpoint) {
    const url = endpoint.url;
    const nc = await connectTo(endpoint);
    try {
      const subject = subjectOf(url);
      const mode = endpoint.mode === "structured" ? "structured" : "binary";
      const stream = url.params.get("stream");
      if (stream === null) {
        const publisher = natsPublisher(nc, { subject, mode, format: endpoint.format });
        return ownedPublisher(publisher, () => nc.close());
      }
      if (booleanParam(url, "create") !== false)
        await ensureStream(await jetstreamManager(nc), stream, subject);
      const publisher = jetStreamPublisher(jetstream(nc), {
        subject,
        mode,
        format: endpoint.format,
        timeoutMs: endpoint.timeoutMs,
        // The stream de-duplicates on the event id by default (what a retrying producer wants);
        // dedupe=false sends events that share a source and id as distinct messages.
        ...(booleanParam(url, "dedupe") === false ? { messageId: () => undefined } : {}),
      });
      return ownedPublisher(publisher, () => nc.close());
    } catch (err) {
      await nc.close();
      throw err;
    }
  },
  async createSubscriber(endpoint) {
    const url = endpoint.url;
    const nc = await connectTo(endpoint);
    try {
      const subject = subjectOf(url);
      const stream = url.params.get("stream");
      if (stream === null) {
        const queue = url.params.get("queue");
        const subscriber = natsSubscriber(nc, {
          subject,
          formats: endpoint.formats,
          ...(queue === null ? {} : { queue }),
        });
        // The SUB must reach the server before "ready" means anything: the subscriber's ready
        // is that round trip.
        await subscriber.ready;
        return ownedSubscriber(subscriber, () => nc.close());
      }
      const jsm = await jetstreamManager(nc);
      const create = booleanParam(url, "create") !== false;
      if (create) await ensureStream(jsm, stream, subject);
      const durable = url.params.get("durable");
      const consumer = durable ?? `posthorn-${Math.random().toString(16).slice(2, 10)}`;
      let exists = true;
      await jsm.consumers.info(stream, consumer).catch(() => {
        exists = false;
      });
      if (!exists) {
        if (!create && durable !== null) {
          throw new PosthornError(
            "NotSupported",
            `${url.display}: consumer ${durable} does not exist`,
          );
        }
        await jsm.consumers.add(stream, {
          ...(durable === null
            ? { name: consumer, inactive_threshold: 60_000_000_000 }
            : { durable_name: consumer }),
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          filter_subject: subject,
          max_deliver: -1,
        });
      }
      const subscriber = await jetStreamSubscriber(jetstream(nc), {
        stream,
        consumer,
        formats: endpoint.formats,
        expiresMs: 5000,
      });
      return ownedSubscriber(subscriber, () => nc.close());
    } catch (err) {
      await nc.close();
      throw err;
    }
  },
};
