import {
  isCertificateErrorCode,
  isPosthornError,
  MAX_TIMER_MS,
  PosthornError,
} from "@posthorn/core";
import { concatChunks } from "./body.js";

/** One request of a publisher, as its sender sends it. */
export interface SenderRequest {
  readonly method: string;
  /** Lower-case names. */
  readonly headers: Record<string, string>;
  readonly body: Uint8Array | undefined;
  /** How long the request and the reading of its answer may take; then `Timeout`. */
  readonly timeoutMs: number;
  /** The caller's signal: when it fires the request is abandoned with `Aborted`. */
  readonly signal: AbortSignal | undefined;
  /** The request in words (`POST http://...`), for error messages. */
  readonly what: string;
}

/** The answer to a {@link SenderRequest}, its body read. */
export interface SenderAnswer {
  readonly status: number;
  /** The response headers: a value by name (any case), or `null` when absent. */
  readonly headers: { get(name: string): string | null };
  /** The body as text; empty when it could not be read. */
  readonly text: string;
}

/**
 * How an `HttpPublisher` sends its requests: with `fetch` anywhere, or with `node:http` in Node.
 * `send` rejects only with a `PosthornError`: `Timeout`, `Aborted` or `ConnectionFailed`.
 */
export interface RequestSender {
  send(request: SenderRequest): Promise<SenderAnswer>;
  /** Releases what the sender holds (idle connections); called once nothing is in flight. */
  close(): void;
}

/**
 * Makes the sender of a publisher without a `fetch` option, from its target URL and its
 * options. The Node entry point of the package passes one that uses `node:http`.
 */
export type SenderFactory = (url: string, options: { readonly agent?: unknown }) => RequestSender;

/**
 * Where the Node entry point's publisher hands its {@link SenderFactory} to the shared
 * constructor: a member of the options under a symbol the package does not export, so it is no
 * part of the public API.
 */
export const PLATFORM_SENDER: unique symbol = Symbol("posthorn.platformSender");

/** Options carrying a {@link PLATFORM_SENDER}. */
export interface WithPlatformSender {
  readonly [PLATFORM_SENDER]?: SenderFactory;
}

const NO_HEADERS = { get: (): null => null };

/**
 * How long the rest of an answer's body may take once its status and headers are in; past it the
 * body is cancelled (and its connection closed) rather than waited for. Both senders use it.
 */
export const BODY_MS = 1000;

/**
 * How much of an answer's body is kept for an error message (the rest is read and dropped, so
 * the connection can be reused). Both senders use it.
 */
export const KEEP_TEXT_BYTES = 4096;

/**
 * Reads an answer's body to its end, or for BODY_MS at most, then cancels it. Never rejects: a
 * body cut off mid-way gives what arrived.
 *
 * @param keep - keep the first KEEP_TEXT_BYTES and return them as text (else `""`)
 */
async function readBody(response: Response, keep: boolean): Promise<string> {
  const body = response.body;
  if (body === null) return "";
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), BODY_MS);
    // Reading a 2xx's body to drop it is background work: it must not keep a process up that has
    // nothing else to do. A failure's text is awaited by its publish, so that timer stays.
    if (!keep) (timer as { unref?: () => void }).unref?.();
  });
  try {
    for (;;) {
      const next = await Promise.race([reader.read(), late]);
      if (next === undefined) {
        reader.cancel().catch(() => undefined);
        break;
      }
      if (next.done) break;
      if (keep && size < KEEP_TEXT_BYTES) {
        chunks.push(next.value);
        size += next.value.length;
      }
    }
  } catch {
    // Cut off mid-body (or the request's signal fired): what arrived is the text.
  } finally {
    clearTimeout(timer);
  }
  if (size === 0) return "";
  return new TextDecoder().decode(concatChunks(chunks, size));
}

/**
 * A sender over a `fetch`: one `AbortSignal` per request (its timeout, joined with the caller's
 * signal when there is one). Redirects are not followed: a 3xx is the answer (in a browser, which
 * hides it, status 0).
 *
 * @param url - where every request goes
 * @param f - the fetch to call
 */
export function fetchSender(url: string, f: typeof fetch): RequestSender {
  return {
    async send(request) {
      // No limit past what a timer holds (Infinity): AbortSignal.timeout throws on Infinity.
      const timeout =
        request.timeoutMs > MAX_TIMER_MS ? undefined : AbortSignal.timeout(request.timeoutMs);
      const signal =
        request.signal && timeout
          ? anySignal([request.signal, timeout])
          : (timeout ?? request.signal ?? null);
      let response: Response;
      try {
        response = await f(url, {
          method: request.method,
          headers: request.headers,
          body: (request.body ?? null) as BodyInit | null,
          signal,
          // Followed, a 301, 302 or 303 would resend the event as a body-less GET (whose 2xx then
          // looks like a delivery), and any redirect would take it where the answer points.
          redirect: "manual",
        });
      } catch (err) {
        throw (
          requestFault(url, request, err) ??
          fetchFailure(err, request.signal, request.what, request.timeoutMs)
        );
      }
      if (response.type === "opaqueredirect") {
        // A browser hides a redirect not followed: status 0, no headers, no body.
        return { status: 0, headers: NO_HEADERS, text: "a redirect, not followed" };
      }
      const status = response.status;
      if (status >= 200 && status < 300) {
        // 2xx: the receiver took the event (http-webhook.md 2.2), whatever its body does next.
        // Waiting for a body that never ends would time the attempt out and send the event
        // again. The body is read and dropped (so keep-alive can reuse the connection), and
        // cancelled, which closes the connection, if it has not ended within BODY_MS.
        void readBody(response, false);
        return { status, headers: response.headers, text: "" };
      }
      // A failure's text is for the error message only: what arrives within BODY_MS is enough.
      return { status, headers: response.headers, text: await readBody(response, true) };
    },
    close() {},
  };
}

/**
 * What `fetch` refused before sending anything, for a fault of the request itself, which no retry
 * mends: a header name or value it cannot send (as `node:http` refuses them, `InvalidEvent`), or
 * a URL it cannot request (relative outside a page, or holding credentials: `MalformedInput`).
 * `undefined` when the request is sendable, or the runtime has no `Headers` and `Request` to tell.
 * Called only once a fetch failed, so a request that goes through costs nothing more.
 */
function requestFault(
  url: string,
  request: SenderRequest,
  err: unknown,
): PosthornError | undefined {
  if (isPosthornError(err)) return undefined;
  const web = globalThis as { Headers?: typeof Headers; Request?: typeof Request };
  if (web.Headers !== undefined) {
    try {
      new web.Headers(request.headers);
    } catch (refusal) {
      return new PosthornError(
        "InvalidEvent",
        `${request.what}: a header cannot be sent: ${(refusal as Error)?.message ?? refusal}`,
        { cause: err },
      );
    }
  }
  if (web.Request !== undefined) {
    try {
      new web.Request(url);
    } catch (refusal) {
      return new PosthornError(
        "MalformedInput",
        `${request.what}: the URL cannot be requested (it must be absolute http(s), without credentials): ${(refusal as Error)?.message ?? refusal}`,
        { cause: err },
      );
    }
  }
  return undefined;
}

/**
 * Translates what a `fetch` threw into a typed error: the caller's abort, a timeout, or a failed
 * connection (with the system error code, e.g. `ECONNREFUSED`, as `protocolCode`).
 */
function fetchFailure(
  err: unknown,
  user: AbortSignal | undefined,
  what: string,
  timeoutMs: number,
): PosthornError {
  if (isPosthornError(err)) return err;
  if (user?.aborted) return new PosthornError("Aborted", `${what} was aborted`, { cause: err });
  const name = (err as { name?: string })?.name;
  if (name === "TimeoutError" || name === "AbortError") {
    return new PosthornError("Timeout", `${what} did not complete within ${timeoutMs} ms`, {
      cause: err,
    });
  }
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  return connectionFailure(
    what,
    cause?.message ?? (err as Error)?.message ?? String(err),
    err,
    cause?.code || undefined,
  );
}

/**
 * A failed connection as a `ConnectionFailed`, retryable unless the server's certificate was not
 * accepted (core's `isCertificateErrorCode`), which the message then says how to mend.
 *
 * @internal
 */
export function connectionFailure(
  what: string,
  message: string,
  cause: unknown,
  code: unknown,
): PosthornError {
  const certificate = isCertificateErrorCode(code);
  const hint = certificate
    ? " (the server's certificate was not accepted: trust its CA with options.agent, an https.Agent with ca, or with undici's dispatcher when options.fetch is given; or fix the certificate. Retrying does not help)"
    : "";
  return new PosthornError("ConnectionFailed", `${what} failed: ${message}${hint}`, {
    cause,
    ...(typeof code === "string" ? { protocolCode: code } : {}),
    ...(certificate ? { retryable: false } : {}),
  });
}

/** One signal that aborts when any of `signals` does (`AbortSignal.any` where it exists). */
export function anySignal(signals: AbortSignal[]): AbortSignal {
  const any = (AbortSignal as { any?: (s: AbortSignal[]) => AbortSignal }).any;
  if (any) return any(signals);
  const controller = new AbortController();
  for (const s of signals) {
    if (s.aborted) controller.abort(s.reason);
    else s.addEventListener("abort", () => controller.abort(s.reason), { once: true });
  }
  return controller.signal;
}

/**
 * Refuses an absolute URL the publisher cannot send to: one that is not http(s) (a `data:` URL
 * "answers" 200 to any POST over `fetch`) or that holds credentials (they belong in the
 * `authorization` option, not in logs and error messages).
 *
 * @internal
 */
export function checkHttpUrl(parsed: URL, url: string): void {
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new PosthornError(
      "MalformedInput",
      `${JSON.stringify(url)} is not an http: or https: URL`,
    );
  }
  if (parsed.username !== "" || parsed.password !== "") {
    throw new PosthornError(
      "MalformedInput",
      "the publisher's url holds credentials; pass them as the authorization option instead",
    );
  }
}
