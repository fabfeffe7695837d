import { clientSignal, type NodeRequestLike, readNodeBody } from "./node-handler.js";
import { HttpReceiver, type HttpReceiverOptions, toReceiver } from "./receiver.js";

/** The parts of a Fastify request the plugin uses. */
export interface FastifyRequestLike {
  /** The underlying Node request, whose body stream the receiver reads. */
  readonly raw: NodeRequestLike;
  /** The request method. */
  readonly method: string;
  /** The request target (path and query). */
  readonly url: string;
  /** The headers, names lower case. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** The parts of a Fastify reply the plugin uses. */
export interface FastifyReplyLike {
  /** Sets the status code. */
  code(status: number): FastifyReplyLike;
  /** Sets response headers. */
  headers(values: Record<string, string>): FastifyReplyLike;
  /** Sends the reply, with an optional text body. */
  send(body?: string): unknown;
}

/** The parts of a Fastify instance the plugin uses. Fastify itself is not a dependency. */
export interface FastifyInstanceLike {
  /** Drops the body parsers of the plugin's context, so no parser reads the body first. */
  removeAllContentTypeParsers(): void;
  /** Adds a body parser; the plugin adds one for every type that parses nothing. */
  addContentTypeParser(
    contentType: string,
    parser: (
      request: unknown,
      payload: unknown,
      done: (err: Error | null, body?: unknown) => void,
    ) => void,
  ): void;
  /** Adds a route. */
  route(options: {
    /** The methods it answers. */
    method: string[];
    /** The path. */
    url: string;
    /** Whether Fastify adds a `HEAD` route for a `GET` one; the plugin adds its own. */
    exposeHeadRoute?: boolean;
    /** Handles one request. */
    handler: (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<unknown>;
  }): unknown;
  /** The methods Fastify routes (Fastify 5); without it, `GET`, `HEAD`, `DELETE` and `PATCH`. */
  readonly supportedMethods?: readonly string[];
  /** Whether a route for this method and full path exists already. */
  hasRoute?(options: {
    /** The method. */
    method: string;
    /** The full path, the plugin's prefix included. */
    url: string;
  }): boolean;
  /** The prefix the plugin was registered with, if any. */
  readonly prefix?: string;
}

/** Options of {@link fastifyCloudEvents}. */
export interface FastifyCloudEventsOptions extends HttpReceiverOptions {
  /** The route path. Default `/`. */
  path?: string;
  /** A receiver to drive (e.g. one you iterate as a subscriber); its own options apply. */
  receiver?: HttpReceiver;
  /**
   * Whether the plugin also routes the other methods Fastify knows (`GET`, `HEAD`, `DELETE`,
   * `PATCH`...) at `path`, to answer them 405 with `Allow: POST, PUT, OPTIONS` as the other
   * receivers do, where Fastify answers 404. Default `false`: Fastify refuses a second route for
   * one method and path (`FST_ERR_DUPLICATED_ROUTE`), so with this on, a route of the
   * application's at that path added after `await app.register(...)` (a `GET /` page, with the
   * default `path`) would fail the application's start. A method the application routed there
   * before the plugin loaded is left to it.
   */
  methodNotAllowed?: boolean;
}

/** Routed when Fastify does not say which methods it routes (before Fastify 5). */
const OTHER_METHODS = ["GET", "HEAD", "DELETE", "PATCH"];

/**
 * A Fastify plugin that receives CloudEvents on `POST`, `PUT` and `OPTIONS` (the webhook
 * handshake) at `path`, and with {@link FastifyCloudEventsOptions.methodNotAllowed} answers the
 * other methods there 405 with `Allow`. Inside its own encapsulated context it
 * replaces Fastify's body parsers with one that leaves the body unread, so the receiver sees the
 * exact bytes and enforces its own `maxPayloadBytes`.
 *
 * @param options - the route path and the receiver's options, or a `receiver` to drive (then
 *   the other receiver options here are ignored)
 * @example
 * ```ts
 * import { fastifyCloudEvents } from "@posthorn/binding-http/fastify";
 * await app.register(fastifyCloudEvents({ path: "/events", formats: [json], onDelivery }));
 * ```
 */
export function fastifyCloudEvents(
  options: FastifyCloudEventsOptions = {},
): (instance: FastifyInstanceLike, opts: unknown, done: (err?: Error) => void) => void {
  const { path = "/", receiver, methodNotAllowed = false, ...rest } = options;
  const target = receiver instanceof HttpReceiver ? receiver : toReceiver(rest);
  const handler = async (request: FastifyRequestLike, reply: FastifyReplyLike) => {
    // The receiver reads the body itself here, so the request stream tells when the client left.
    const answer = await target.handle({
      method: request.method,
      url: request.url,
      headers: request.headers,
      readBody: (limit) => readNodeBody(request.raw, limit),
      signal: clientSignal(request.raw),
    });
    return reply.code(answer.status).headers(answer.headers).send(answer.body);
  };
  return (instance, _opts, done) => {
    instance.removeAllContentTypeParsers();
    instance.addContentTypeParser("*", (_request, _payload, parsed) => parsed(null, undefined));
    instance.route({ method: ["POST", "PUT", "OPTIONS"], url: path, handler });
    if (methodNotAllowed) {
      // One route per method, so that one the application already has is skipped alone.
      const full = `${instance.prefix ?? ""}${path}`;
      for (const method of instance.supportedMethods ?? OTHER_METHODS) {
        if (method === "POST" || method === "PUT" || method === "OPTIONS") continue;
        if (instance.hasRoute?.({ method, url: full })) continue;
        try {
          instance.route({ method: [method], url: path, exposeHeadRoute: false, handler });
        } catch (err) {
          // Taken in a way hasRoute did not see (or before Fastify had it): the route is theirs.
          if ((err as { code?: unknown }).code !== "FST_ERR_DUPLICATED_ROUTE") throw err;
        }
      }
    }
    done();
  };
}
