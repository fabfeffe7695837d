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
    /** Handles one request. */
    handler: (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<unknown>;
  }): unknown;
}

/** Options of {@link fastifyCloudEvents}. */
export interface FastifyCloudEventsOptions extends HttpReceiverOptions {
  /** The route path. Default `/`. */
  path?: string;
  /** A receiver to drive (e.g. one you iterate as a subscriber); its own options apply. */
  receiver?: HttpReceiver;
}

/**
 * A Fastify plugin that receives CloudEvents on `POST`, `PUT` and `OPTIONS` (the webhook
 * handshake) at `path`. Inside its own encapsulated context it replaces Fastify's body parsers
 * with one that leaves the body unread, so the receiver sees the exact bytes and enforces its own
 * `maxPayloadBytes`.
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
  const { path = "/", receiver, ...rest } = options;
  const target = receiver instanceof HttpReceiver ? receiver : toReceiver(rest);
  return (instance, _opts, done) => {
    instance.removeAllContentTypeParsers();
    instance.addContentTypeParser("*", (_request, _payload, parsed) => parsed(null, undefined));
    instance.route({
      method: ["POST", "PUT", "OPTIONS"],
      url: path,
      handler: async (request, reply) => {
        // The receiver reads the body itself here, so the request stream tells when the client left.
        const answer = await target.handle({
          method: request.method,
          url: request.url,
          headers: request.headers,
          readBody: (limit) => readNodeBody(request.raw, limit),
          signal: clientSignal(request.raw),
        });
        return reply.code(answer.status).headers(answer.headers).send(answer.body);
      },
    });
    done();
  };
}
