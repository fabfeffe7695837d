import type { IncomingMessage } from "node:http";
import {
  connectWebSocket,
  WEBSOCKET_CAPABILITIES,
  type WebSocketLike,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "@posthorn/binding-websocket";
import { AsyncQueue, type Delivery, PosthornError, type Subscriber } from "@posthorn/core";
import { WebSocket, WebSocketServer } from "ws";
import type { EndpointDriver } from "../driver.js";
import type { FormatName, ParsedEndpointUrl } from "../endpoint-url.js";
import {
  boundPort,
  firstHost,
  formatsHere,
  ownedPublisher,
  refuseFragment,
  refusePortZero,
  withTimeout,
} from "./common.js";

// The subprotocols of the WebSockets binding, by the format they carry.
const BY_SUBPROTOCOL: Readonly<Record<string, FormatName>> = {
  "cloudevents.json": "json",
  "cloudevents.avro": "avro",
  "cloudevents.proto": "protobuf",
};

/** The format `?subprotocol=` names, when it names one. */
function subprotocolFormat(url: ParsedEndpointUrl): FormatName | undefined {
  const sub = url.params.get("subprotocol");
  if (sub === null) return undefined;
  const format = Object.hasOwn(BY_SUBPROTOCOL, sub) ? BY_SUBPROTOCOL[sub] : undefined;
  if (format === undefined) {
    throw new PosthornError(
      "NotSupported",
      `${url.display}: subprotocol "${sub}" is not one of ${Object.keys(BY_SUBPROTOCOL).join(", ")}`,
    );
  }
  if (url.format !== undefined && url.format !== format) {
    throw new PosthornError(
      "MalformedInput",
      `${url.display}: subprotocol=${sub} carries ${format}, but format=${url.format}`,
    );
  }
  return format;
}

function address(url: ParsedEndpointUrl): string {
  const secure = url.scheme === "wss";
  const { host, port } = firstHost(url.hosts, secure ? 443 : 80);
  const h = host.includes(":") ? `[${host}]` : host;
  return `${secure ? "wss" : "ws"}://${h}:${port}${url.rawPath || "/"}`;
}

/**
 * `ws://`, `wss://`: the CloudEvents WebSockets binding, one structured event per frame in the
 * negotiated subprotocol. Send connects; receive listens on the URL's host, port and path and
 * takes events from every client that connects.
 */
export const driver: EndpointDriver = {
  transport: "ws",
  schemes: ["ws", "wss"],
  params: ["subprotocol"],
  check(url) {
    refuseFragment(url);
    subprotocolFormat(url);
  },
  support(url) {
    const only = subprotocolFormat(url);
    return {
      binary: "the WebSockets binding carries structured events only (one per frame)",
      structured: only === undefined ? formatsHere() : formatsHere([only]),
      batch: "the WebSockets binding has no batch mode (one event per frame)",
      defaultMode: "structured",
    };
  },
  traits: () => ({ typed: true, caseSensitive: true }),
  async createPublisher(endpoint) {
    refusePortZero(endpoint.url);
    const formats = [endpoint.format];
    const socket = await connectWebSocket(address(endpoint.url), {
      formats,
      WebSocket,
      timeoutMs: endpoint.timeoutMs,
    });
    const publisher = webSocketPublisher(socket, { formats });
    return ownedPublisher(publisher, () => closeSocket(socket));
  },
  async createSubscriber(endpoint) {
    const url = endpoint.url;
    if (url.scheme === "wss") {
      throw new PosthornError(
        "NotSupported",
        `${url.display}: receiving over wss needs a TLS server; put one in front of ws:// (the command listens in plain ws)`,
      );
    }
    const { host, port } = firstHost(url.hosts, 80);
    const path = url.rawPath || "/";
    const server = new WebSocketServer({
      host,
      port,
      path,
      ...webSocketServerOptions(endpoint.formats, { maxPayloadBytes: 64 * 1024 * 1024 }),
    });
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        server.once("listening", () => resolve());
        server.once("error", reject);
      }),
      endpoint.timeoutMs,
      "WebSocket listen",
    );
    // Port 0 in the URL: the port the system picked.
    const listeningPort = boundPort(server.address());
    return { ...mergedSubscriber(server, endpoint.formats), listeningPort };
  },
};

/** Every client's events in one subscriber; closing it closes the server and every client. */
function mergedSubscriber(
  server: WebSocketServer,
  formats: Parameters<typeof webSocketSubscriber>[1]["formats"],
): Subscriber {
  const queue = new AsyncQueue<Delivery>();
  const subscribers = new Set<Subscriber>();
  server.on("connection", (socket: WebSocket, _request: IncomingMessage) => {
    const subscriber = webSocketSubscriber(socket, { formats });
    subscribers.add(subscriber);
    void (async () => {
      try {
        for await (const delivery of subscriber) queue.push(delivery);
      } catch {
        // A client that went away ends its own stream; the others carry on.
      } finally {
        subscribers.delete(subscriber);
      }
    })();
  });
  let closing: Promise<void> | undefined;
  return {
    capabilities: WEBSOCKET_CAPABILITIES,
    // Returned once the server listens: a client that connects from now on is heard.
    ready: Promise.resolve(),
    [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator](),
    close() {
      closing ??= (async () => {
        queue.end();
        await Promise.allSettled([...subscribers].map((s) => s.close()));
        for (const client of server.clients) client.terminate();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })();
      return closing;
    },
  };
}

function closeSocket(socket: WebSocketLike): Promise<void> {
  return new Promise<void>((resolve) => {
    const s = socket as unknown as WebSocket;
    if (s.readyState === WebSocket.CLOSED) {
      resolve();
      return;
    }
    const timer = setTimeout(() => {
      s.terminate();
      resolve();
    }, 2000);
    s.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
    s.close(1000);
  });
}
