import { mqttPublisher, mqttSubscriber } from "@posthorn/binding-mqtt";
import { PosthornError } from "@posthorn/core";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import type { EndpointDriver, ResolvedEndpoint } from "../driver.js";
import { booleanParam, integerParam, type ParsedEndpointUrl } from "../endpoint-url.js";
import {
  firstHost,
  formatsHere,
  headerTraits,
  ownedPublisher,
  ownedSubscriber,
  withTimeout,
} from "./common.js";

function version(url: ParsedEndpointUrl): 4 | 5 {
  const v = url.params.get("version") ?? "5";
  if (v === "5") return 5;
  // 4 is 3.1.1's protocol level. "3" was taken as 3.1.1 too, but MQTT 3.1 (level 3) is another
  // protocol that mqtt.js speaks and this binding does not.
  if (v === "3.1.1" || v === "4") return 4;
  throw new PosthornError(
    "MalformedInput",
    `${url.display}: version="${v}" is not an MQTT version this binding speaks (5, or 3.1.1 also written 4)`,
  );
}

function qos(url: ParsedEndpointUrl): 0 | 1 | 2 {
  const q = integerParam(url, "qos") ?? 1;
  if (q > 2) throw new PosthornError("MalformedInput", `${url.display}: qos must be 0, 1 or 2`);
  return q as 0 | 1 | 2;
}

function brokerAddress(url: ParsedEndpointUrl): string {
  const secure = url.scheme === "mqtts" || url.scheme === "mqtt+wss";
  const ws = url.scheme.startsWith("mqtt+ws");
  const { host, port } = firstHost(url.hosts, ws ? (secure ? 443 : 80) : secure ? 8883 : 1883);
  const h = host.includes(":") ? `[${host}]` : host;
  if (ws) {
    const path = url.params.get("wspath") ?? "/mqtt";
    return `${secure ? "wss" : "ws"}://${h}:${port}${path.startsWith("/") ? path : `/${path}`}`;
  }
  return `${secure ? "mqtts" : "mqtt"}://${h}:${port}`;
}

function clientOptions(endpoint: ResolvedEndpoint, role: string): IClientOptions {
  const url = endpoint.url;
  const v = version(url);
  const clientId = url.params.get("clientid") ?? endpoint.options.clientId;
  // A named client keeps its session (so release() can make the broker redeliver), unless
  // ?clean=true says otherwise.
  const clean = booleanParam(url, "clean") ?? clientId === undefined;
  const options: IClientOptions = {
    protocolVersion: v,
    clean,
    connectTimeout: endpoint.timeoutMs,
    reconnectPeriod: 1000,
    clientId: clientId ?? `posthorn-${role}-${Math.random().toString(16).slice(2, 10)}`,
  };
  if (!clean && v === 5) options.properties = { sessionExpiryInterval: 3600 };
  if (endpoint.username !== undefined) options.username = endpoint.username;
  if (endpoint.password !== undefined) options.password = endpoint.password;
  const tls = endpoint.options.tls;
  if (tls) {
    if (tls.ca !== undefined) options.ca = Buffer.from(tls.ca);
    if (tls.cert !== undefined) options.cert = Buffer.from(tls.cert);
    if (tls.key !== undefined) options.key = Buffer.from(tls.key);
    if (tls.rejectUnauthorized !== undefined) options.rejectUnauthorized = tls.rejectUnauthorized;
  }
  return options;
}

/**
 * Settles once the client's first connection attempt does: resolves on CONNACK, rejects with
 * the error, or when the connection closes first (as mqtt.js's `connectAsync` without retries).
 */
function firstConnect(client: MqttClient): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      client.off("connect", onConnect);
      client.off("error", onError);
      client.off("close", onClose);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onConnect = () => done();
    const onError = (err: Error) => done(err);
    const onClose = () => done(new Error("Couldn't connect to server"));
    client.on("connect", onConnect);
    client.on("error", onError);
    client.on("close", onClose);
  });
}

async function connect(endpoint: ResolvedEndpoint, role: string): Promise<MqttClient> {
  const client = mqtt.connect(brokerAddress(endpoint.url), clientOptions(endpoint, role));
  try {
    await withTimeout(firstConnect(client), endpoint.timeoutMs, "MQTT connect");
    return client;
  } catch (err) {
    client.end(true);
    throw err;
  }
}

function topicOf(url: ParsedEndpointUrl): string {
  if (url.path === "") {
    throw new PosthornError("MalformedInput", `${url.display}: the path must name a topic`);
  }
  return url.path;
}

/** `mqtt://`, `mqtts://`, `mqtt+ws://`, `mqtt+wss://`: MQTT 5 or 3.1.1 over mqtt.js. */
export const driver: EndpointDriver = {
  transport: "mqtt",
  schemes: ["mqtt", "mqtts", "mqtt+ws", "mqtt+wss"],
  params: ["version", "qos", "group", "retain", "dlq", "clientid", "clean", "wspath"],
  check(url) {
    topicOf(url);
    version(url);
    qos(url);
  },
  support(url) {
    if (version(url) === 5) {
      return {
        binary: true,
        structured: formatsHere(),
        batch: "MQTT has no batch mode (one event per PUBLISH)",
        defaultMode: "binary",
      };
    }
    return {
      binary: "MQTT 3.1.1 has no user properties to carry attributes; use version=5",
      structured: ["json"],
      batch: "MQTT has no batch mode (one event per PUBLISH)",
      defaultMode: "structured",
    };
  },
  traits: (_url, mode) => headerTraits(mode, true),
  async createPublisher(endpoint) {
    const client = await connect(endpoint, "pub");
    const url = endpoint.url;
    const publisher = mqttPublisher(client, {
      topic: topicOf(url),
      qos: qos(url),
      mode: endpoint.mode === "binary" ? "binary" : "structured",
      format: endpoint.format,
      retain: booleanParam(url, "retain") ?? false,
      timeoutMs: endpoint.timeoutMs,
    });
    return ownedPublisher(publisher, () => client.endAsync());
  },
  async createSubscriber(endpoint) {
    const url = endpoint.url;
    // The subscriber is made before the client connects: a resumed session's unacknowledged
    // messages come right after CONNACK, and mqtt.js acknowledged those that arrived before the
    // subscriber's hook was in, so a message released before a restart was lost for good.
    const client = mqtt.connect(brokerAddress(url), clientOptions(endpoint, "sub"));
    const group = url.params.get("group") ?? undefined;
    const dlq = url.params.get("dlq") ?? undefined;
    const subscribing = mqttSubscriber(client, {
      topic: topicOf(url),
      qos: qos(url),
      formats: endpoint.formats,
      ...(group === undefined ? {} : { group }),
      ...(dlq === undefined ? {} : { deadLetterTopic: dlq }),
    });
    // Awaited below, after the connection: a refusal meanwhile is not an unhandled rejection.
    subscribing.catch(() => undefined);
    try {
      await withTimeout(firstConnect(client), endpoint.timeoutMs, "MQTT connect");
      const subscriber = await withTimeout(subscribing, endpoint.timeoutMs, "MQTT subscribe");
      return ownedSubscriber(subscriber, () => client.endAsync());
    } catch (err) {
      await client.endAsync(true);
      throw err;
    }
  },
};
