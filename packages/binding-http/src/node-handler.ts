import { isBytes, PosthornError, utf8Encode } from "@posthorn/core";
import { alreadyRead, clientGone, concatChunks, tooLarge } from "./body.js";
import {
  type ClientSignal,
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
  /** The request method; taken as `GET` when absent. */
  readonly method?: string | undefined;
  /** The request target as sent (path and query). */
  readonly url?: string | undefined;
  /** The headers, names lower case, as Node parses them. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Whether the body stream has ended: a `body` on an ended request was read by a parser. */
  readonly readableEnded?: boolean;
  /** Whether the stream was destroyed: before its end, the client went away. */
  readonly destroyed?: boolean;
  /** 2 for a request of `node:http2`'s compatibility API, which has no `Connection` header. */
  readonly httpVersionMajor?: number;
  /** Adds a stream listener; the receiver listens for `data`, `end`, `error`, `close`, `aborted`. */
  on(event: string, listener: Listener): unknown;
  /** Removes a listener added with `on`. */
  removeListener(event: string, listener: Listener): unknown;
}

/** The parts of a Node `ServerResponse` the receiver uses. */
export interface NodeResponseLike {
  /** Sends the status line and headers. */
  writeHead(status: number, headers: Record<string, string>): unknown;
  /** Finishes the response. */
  end(): unknown;
  /**
   * Sends the body and finishes the response. (Two overloads, not one optional parameter: a
   * `node:http2` response, whose `end` takes a callback first, then matches this type too.)
   */
  end(body: string): unknown;
  /** Adds a listener; the receiver listens for `close`, which before the answer means the client left. */
  on?(event: string, listener: Listener): unknown;
  /** Removes a listener added with `on`. */
  removeListener?(event: string, listener: Listener): unknown;
}

/**
 * Reads a Node request body up to `limit` bytes, stopping (and leaving the rest unread) past it.
 *
 * @param request - the request, its body not yet read
 * @param limit - the most bytes accepted
 * @returns the whole body
 * @throws {@link PosthornError} `PayloadTooLarge` (protocol code 413) past `limit`,
 *   `ConnectionFailed` when the stream fails, `Aborted` when it closes before its end (the client
 *   went away, perhaps before this was called), `NotSupported` when something else read it
 */
export function readNodeBody(request: NodeRequestLike, limit: number): Promise<Uint8Array> {
  // A stream that already ended or closed emits nothing more: listening would wait forever.
  if (request.readableEnded === true) {
    return Promise.reject(alreadyRead("; mount the receiver before body parsers"));
  }
  if (request.destroyed === true) return Promise.reject(clientGone());
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let total = 0;
    const cleanup = (): void => {
      request.removeListener("data", onData);
      request.removeListener("end", onEnd);
      request.removeListener("error", onError);
      request.removeListener("close", onClose);
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
    // After an error, or with no error at all when the stream was destroyed without one.
    const onClose = (): void => {
      cleanup();
      reject(clientGone());
    };
    request.on("data", onData);
    request.on("end", onEnd);
    request.on("error", onError);
    request.on("close", onClose);
  });
}

/**
 * A signal that aborts when the client goes away before it is answered: the request stream closes
 * before its end, or the response closes before it is written. Node emits neither again for a
 * request already destroyed, so that one is aborted at once. It listens to the streams only while
 * the receiver listens to it: lighter than an `AbortController` and its `EventTarget` per request.
 *
 * @param request - the request
 * @param response - the response, when it can be listened to
 * @returns the signal
 */
export function clientSignal(request: NodeRequestLike, response?: NodeResponseLike): ClientSignal {
  return new NodeClientSignal(request, response);
}

class NodeClientSignal implements ClientSignal {
  #aborted: boolean;
  #listener: (() => void) | undefined;
  readonly #request: NodeRequestLike;
  readonly #response: NodeResponseLike | undefined;
  readonly #onRequestClose = (): void => {
    if (this.#request.readableEnded !== true) this.#abort();
  };
  readonly #onResponseClose = (): void => this.#abort();

  constructor(request: NodeRequestLike, response: NodeResponseLike | undefined) {
    this.#request = request;
    this.#response = response;
    this.#aborted = request.destroyed === true && request.readableEnded !== true;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  addEventListener(_type: "abort", listener: () => void): void {
    if (this.#listener !== undefined) throw new Error("clientSignal takes one listener");
    this.#listener = listener;
    this.#request.on("close", this.#onRequestClose);
    this.#response?.on?.("close", this.#onResponseClose);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    if (this.#listener !== listener) return;
    this.#listener = undefined;
    this.#request.removeListener("close", this.#onRequestClose);
    this.#response?.removeListener?.("close", this.#onResponseClose);
  }

  #abort(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#listener?.();
  }
}

/**
 * A body an upstream middleware already read as bytes (Express `express.raw()`), or `undefined`
 * when the stream is still unread.
 *
 * @throws {@link PosthornError} `NotSupported` when a parser turned the body into an object, or
 *   decoded it to text (`express.text()`): the bytes the sender sent cannot be recovered from a
 *   string (a charset other than UTF-8, bytes that are not UTF-8, a byte order mark)
 */
export function preReadBody(request: NodeRequestLike & { body?: unknown }): Uint8Array | undefined {
  const body = request.body;
  if (isBytes(body)) return body;
  if (body !== undefined && request.readableEnded === true) {
    // A string was encoded back as UTF-8: Latin-1 text arrived as other bytes under its
    // charset, and bytes that are not UTF-8 as U+FFFD, where the receiver keeps them as sent.
    throw new PosthornError(
      "NotSupported",
      `the request body was ${typeof body === "string" ? "decoded to text" : "parsed"} before the CloudEvents receiver saw it, so its bytes are lost; mount the receiver before body parsers, or use express.raw({ type: () => true })`,
    );
  }
  return undefined;
}

/** Writes a receiver's reply to a Node response. */
export function writeReply(response: NodeResponseLike, reply: HttpReply): void {
  response.writeHead(reply.status, reply.headers);
  if (reply.body === undefined) response.end();
  else response.end(reply.body);
}

/**
 * Drives a receiver with one Node request and writes the reply. A body that a parser turned into
 * an object is answered 500 with the reason, without calling the receiver. Never rejects for a
 * bad request: the receiver answers it.
 *
 * @param receiver - the receiver that handles the request
 * @param request - the request, with `body` when a middleware already read it
 * @param response - where the reply is written
 */
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
    signal: clientSignal(request, response),
  });
  // HTTP/2 has no Connection header (RFC 9113 8.2.2): node:http2 drops it with a warning.
  if (request.httpVersionMajor === 2 && reply.headers.connection !== undefined) {
    const { connection: _, ...headers } = reply.headers;
    writeReply(response, { ...reply, headers });
    return;
  }
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
      // Writing the answer failed, most likely because the application answered first (its own
      // deadline): another try would throw again, out of this handler, and end the process.
      try {
        writeReply(response, {
          status: 500,
          headers: {},
          body: String((err as Error)?.message ?? err),
        });
      } catch {
        response.end();
      }
    });
  };
}
