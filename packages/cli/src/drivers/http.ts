import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createNodeHandler, httpPublisher, httpReceiver } from "@posthorn/binding-http";
import { PosthornError } from "@posthorn/core";
import type { EndpointDriver, ResolvedEndpoint } from "../driver.js";
import { integerParam, type ParsedEndpointUrl } from "../endpoint-url.js";
import {
  batchFormatsHere,
  boundPort,
  firstHost,
  formatsHere,
  headerTraits,
  ownedPublisher,
  ownedSubscriber,
  refuseFragment,
  refusePortZero,
} from "./common.js";

// Parameters the driver reads; every other query parameter belongs to the target URL.
const OWN_PARAMS = ["retries", "token"];

function targetUrl(url: ParsedEndpointUrl): string {
  const secure = url.scheme === "https";
  const { host, port } = firstHost(url.hosts, secure ? 443 : 80);
  const params = new URLSearchParams(url.params);
  for (const name of ["mode", "format", ...OWN_PARAMS]) params.delete(name);
  const query = params.toString();
  const h = host.includes(":") ? `[${host}]` : host;
  return `${secure ? "https" : "http"}://${h}:${port}${url.rawPath || "/"}${query ? `?${query}` : ""}`;
}

function authorization(endpoint: ResolvedEndpoint): string | undefined {
  const token = endpoint.url.params.get("token");
  if (token !== null) return `Bearer ${token}`;
  if (endpoint.username === undefined && endpoint.password === undefined) return undefined;
  const pair = `${endpoint.username ?? ""}:${endpoint.password ?? ""}`;
  return `Basic ${Buffer.from(pair).toString("base64")}`;
}

/** `http://`, `https://`: POST to a URL; receive by listening on its host, port and path. */
export const driver: EndpointDriver = {
  transport: "http",
  schemes: ["http", "https"],
  params: ["*"],
  check: refuseFragment,
  support: () => ({
    binary: true,
    structured: formatsHere(),
    batch: batchFormatsHere(),
    defaultMode: "binary",
  }),
  traits: (_url, mode) => headerTraits(mode, false),
  async createPublisher(endpoint) {
    refusePortZero(endpoint.url);
    const retries = integerParam(endpoint.url, "retries");
    const auth = authorization(endpoint);
    const publisher = httpPublisher({
      url: targetUrl(endpoint.url),
      mode: endpoint.mode,
      format: endpoint.format,
      timeoutMs: endpoint.timeoutMs,
      retry: retries === undefined ? { maxAttempts: 3 } : { maxAttempts: retries + 1 },
      ...(auth === undefined ? {} : { authorization: auth }),
    });
    return ownedPublisher(publisher, () => undefined);
  },
  async createSubscriber(endpoint) {
    const url = endpoint.url;
    const secure = url.scheme === "https";
    const { host, port } = firstHost(url.hosts, secure ? 443 : 80);
    const path = url.rawPath || "/";
    const expected = authorization(endpoint);
    const receiver = httpReceiver({
      formats: endpoint.formats,
      // The binding's 1 MiB default is for servers facing the internet; the command receives
      // what its user sends it, batches of large events included.
      maxPayloadBytes: 64 * 1024 * 1024,
      ...(expected === undefined
        ? {}
        : { authorize: (header: string | undefined) => header === expected }),
    });
    const handler = createNodeHandler(receiver);
    const listener = (req: IncomingMessage, res: ServerResponse) => {
      const requestPath = (req.url ?? "/").split("?")[0];
      if (requestPath !== path) {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end(`posthorn receives on ${path}\n`);
        return;
      }
      // NodeRequestLike's `on` signature does not accept IncomingMessage under strict function
      // types (reported to the binding's owner); the object is the one it is written for.
      handler(req as unknown as Parameters<typeof handler>[0], res);
    };
    let server: ReturnType<typeof createHttpServer>;
    if (secure) {
      const tls = endpoint.options.tls;
      if (!tls?.cert || !tls.key) {
        throw new PosthornError(
          "NotSupported",
          `${url.display}: receiving over https needs a certificate and key: give createSubscriber options.tls.cert and .key (the posthorn command has no option for them: receive on http:// behind a TLS proxy)`,
        );
      }
      server = createHttpsServer(
        { cert: Buffer.from(tls.cert), key: Buffer.from(tls.key) },
        listener,
      );
    } else {
      server = createHttpServer(listener);
    }
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const subscriber = ownedSubscriber(receiver, async () => {
      server.closeIdleConnections();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        setTimeout(() => server.closeAllConnections(), 1000).unref();
      });
    });
    // Port 0 in the URL: the port the system picked.
    return { ...subscriber, listeningPort: boundPort(server.address()) };
  },
};
