import type { PosthornError } from "@posthorn/core";
import { alreadyRead, clientGone, concatChunks, tooLarge } from "./body.js";
import { type HttpReply, type ReceiverOrOptions, toReceiver } from "./receiver.js";

/**
 * Reads a Web `Request` body up to `limit` bytes, cancelling the stream past it, or when the
 * request's `signal` aborts (the client went away: a body the stream ended early is never
 * returned as whole).
 *
 * @param request - the request; one without a body reads as zero bytes
 * @param limit - the most bytes accepted
 * @returns the whole body
 * @throws {@link PosthornError} `PayloadTooLarge` (protocol code 413) past `limit`, `Aborted`
 *   when the request's signal aborts, `NotSupported` when the body was already read; the
 *   stream's own error when it fails
 */
export async function readRequestBody(request: Request, limit: number): Promise<Uint8Array> {
  if (request.bodyUsed) throw alreadyRead();
  const stream = request.body;
  if (stream === null) return new Uint8Array(0);
  // Some runtimes' requests have no signal.
  const signal: AbortSignal | undefined = request.signal ?? undefined;
  if (signal?.aborted === true) throw clientGone();
  const reader = stream.getReader();
  let onAbort = (): void => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(clientGone());
  });
  aborted.catch(() => undefined);
  signal?.addEventListener("abort", onAbort, { once: true });
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), aborted]);
      if (done) break;
      total += value.length;
      if (total > limit) throw tooLarge(limit);
      chunks.push(value);
    }
  } catch (err) {
    await reader.cancel().catch(() => undefined);
    throw err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  return concatChunks(chunks, total);
}

/**
 * Turns a receiver's reply into a Web `Response`.
 *
 * @param reply - the status, headers and body the receiver chose
 */
export function toResponse(reply: HttpReply): Response {
  return new Response(reply.body ?? null, { status: reply.status, headers: reply.headers });
}

/**
 * A receiver over the Web-standard `Request` and `Response`: for any fetch-style server (Deno,
 * Bun, Cloudflare Workers, Hono, Next.js route handlers, a service worker).
 *
 * @param receiver - an {@link HttpReceiver}, or options to make one
 * @returns `(request) => Promise<Response>`
 *
 * @example
 * ```ts
 * const handle = createFetchHandler({ formats: [json], onDelivery: (d) => console.log(d.event) });
 * Bun.serve({ fetch: handle });
 * ```
 */
export function createFetchHandler(
  receiver: ReceiverOrOptions,
): (request: Request) => Promise<Response> {
  const target = toReceiver(receiver);
  return async (request: Request) => {
    const reply = await target.handle({
      method: request.method,
      url: request.url,
      headers: request.headers,
      readBody: (limit) => readRequestBody(request, limit),
      ...(request.signal ? { signal: request.signal } : {}),
    });
    return toResponse(reply);
  };
}
