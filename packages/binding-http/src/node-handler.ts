import { isBytes, PosthornError, utf8Encode } from "@posthorn/core";
import { concatChunks, tooLarge } from "./body.js";
import {
  type HttpReceiver,
  type HttpReply,
  type ReceiverOrOptions,
  toReceiver,
} from "./receiver.js";

// Node's EventEmitter types its generic listener with `any[]` arguments; only that matches every
// overload of IncomingMessage.on.
// biome-ignore lint/suspicious/noExplicitAny: see above
type Listener = (...args: any[]) => void;

/**
 * The parts of a Node `IncomingMessage` the receiver uses (Express and Fastify requests have
 * them too). Structural, so no `node:http` types leak into the API.
 */
export interface NodeRequestLike {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly readableEnded?: boolean;
  on(event: string, listener: Listener): unknown;
  removeListener(event: string, listener: Listener): unknown;
}

/** The parts of a Node `ServerResponse` the receiver uses. */
export interface NodeResponseLike {
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(body?: string): unknown;
}

/**
 * Reads a Node request body up to `limit` bytes, stopping (and leaving the rest unread) past it.
 *
 * @throws {@link PosthornError} `PayloadTooLarge`, or `ConnectionFailed` when the stream fails
 */
export function readNodeBody(request: NodeRequestLike, limit: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let total = 0;
    const cleanup = (): void => {
      request.removeListener("data", onData);
      request.removeListener("end", onEnd);
      request.removeListener("error", onError);
    };
    const onData = (chunk: Uint8Array | string): void => {
      const bytes = typeof chunk === "string" ? utf8Encode(chunk) : chunk;
      total += bytes.length;
      if (total > limit) {
        cleanup();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(bytes);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(concatChunks(chunks, total));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(
        new PosthornError("ConnectionFailed", `reading the request failed: ${err.message}`, {
          cause: err,
        }),
      );
    };
    request.on("data", onData);
    request.on("end", onEnd);
    request.on("error", onError);
  });
}

/**
 * A body an upstream middleware already read (Express `express.raw()` or `express.text()`), or
 * `undefined` when the stream is still unread.
 *
 * @throws {@link PosthornError} `NotSupported` when a parser turned the body into an object
 */
export function preReadBody(request: NodeRequestLike & { body?: unknown }): Uint8Array | undefined {
  const body = request.body;
  if (isBytes(body)) return body;
  if (typeof body === "string") return utf8Encode(body);
  if (body !== undefined && request.readableEnded === true) {
    throw new PosthornError(
      "NotSupported",
      "the request body was parsed before the CloudEvents receiver saw it; mount the receiver before body parsers, or use express.raw({ type: () => true })",
    );
  }
  return undefined;
}

/** Writes a receiver's reply to a Node response. */
export function writeReply(response: NodeResponseLike, reply: HttpReply): void {
  response.writeHead(reply.status, reply.headers);
  response.end(reply.body);
}

/** Drives a receiver with one Node request and writes the reply. */
export async function handleNodeRequest(
  receiver: HttpReceiver,
  request: NodeRequestLike & { body?: unknown },
  response: NodeResponseLike,
): Promise<void> {
  let early: Uint8Array | undefined;
  try {
    early = preReadBody(request);
  } catch (err) {
    writeReply(response, { status: 500, headers: {}, body: (err as Error).message });
    return;
  }
  const reply = await receiver.handle({
    method: request.method ?? "GET",
    ...(request.url === undefined ? {} : { url: request.url }),
    headers: request.headers,
    readBody: (limit) => {
      if (early === undefined) return readNodeBody(request, limit);
      return early.length > limit ? Promise.reject(tooLarge(limit)) : Promise.resolve(early);
    },
  });
  writeReply(response, reply);
}

/**
 * A receiver as a `node:http` request listener, for `http.createServer`, `https.createServer`
 * or `http2.createServer({ allowHTTP1: true })`.
 *
 * @param receiver - an {@link HttpReceiver}, or options to make one
 * @returns `(request, response) => void`
 *
 * @example
 * ```ts
 * const receiver = httpReceiver({ formats: [json], onDelivery: (d) => handle(d.event) });
 * http.createServer(createNodeHandler(receiver)).listen(8080);
 * ```
 */
export function createNodeHandler(
  receiver: ReceiverOrOptions,
): (request: NodeRequestLike, response: NodeResponseLike) => void {
  const target = toReceiver(receiver);
  return (request, response) => {
    handleNodeRequest(target, request, response).catch((err: unknown) => {
      writeReply(response, {
        status: 500,
        headers: {},
        body: String((err as Error)?.message ?? err),
      });
    });
  };
}
