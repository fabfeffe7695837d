import * as http from "node:http";
import * as https from "node:https";
import { limitTimer, PosthornError } from "@posthorn/core";
import {
  BODY_MS,
  checkHttpUrl,
  connectionFailure,
  KEEP_TEXT_BYTES,
  type RequestSender,
  type SenderAnswer,
} from "./sender.js";

// Idle keep-alive connections of the publisher's own agent are closed after this long: before
// a Node server's default `keepAliveTimeout` (5 s) closes them under a request being sent.
const IDLE_SOCKET_MS = 4000;

/**
 * The target of a publisher as `node:http` takes it, checked once.
 *
 * @throws {@link PosthornError} `MalformedInput` for a URL that is not absolute http(s), or that
 *   holds credentials (they belong in the `authorization` option, not in logged URLs)
 */
function targetOf(url: string): { secure: boolean; hostname: string; port: string; path: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new PosthornError("MalformedInput", `${JSON.stringify(url)} is not an absolute URL`);
  }
  checkHttpUrl(parsed, url);
  // URL keeps the brackets of an IPv6 host; node:http wants the bare address.
  const host = parsed.hostname;
  return {
    secure: parsed.protocol === "https:",
    hostname: host.startsWith("[") ? host.slice(1, -1) : host,
    port: parsed.port,
    path: `${parsed.pathname}${parsed.search}`,
  };
}

/**
 * A sender over `node:http` / `node:https`: a keep-alive agent of the publisher's own (or the
 * one given as the `agent` option), one timer per request for its timeout, the caller's signal
 * listened to only when there is one. About a third of the CPU per request that `fetch` (undici)
 * takes in Node 20, which is why it is the default there.
 *
 * @param url - where every request goes
 * @param options - `agent`: a `node:http`/`node:https` Agent to use instead of the publisher's
 *   own (which `close()` then leaves open)
 */
export function nodeSender(url: string, options: { readonly agent?: unknown }): RequestSender {
  const target = targetOf(url);
  const module = target.secure ? https : http;
  const ownAgent =
    options.agent === undefined
      ? new module.Agent({ keepAlive: true, timeout: IDLE_SOCKET_MS })
      : undefined;
  const agent = (options.agent ?? ownAgent) as http.Agent;
  if (options.agent !== undefined) checkAgent(options.agent, target.secure);
  const hostname = target.hostname;
  const port = target.port === "" ? undefined : target.port;
  const path = target.path;
  return {
    send: (request) =>
      new Promise<SenderAnswer>((resolve, reject) => {
        const { signal, what } = request;
        const aborted = (): PosthornError => new PosthornError("Aborted", `${what} was aborted`);
        if (signal?.aborted) {
          reject(aborted());
          return;
        }
        // node:http writes the content-length itself when the body is handed to end() whole.
        const headers = request.headers;
        const body = request.body;
        let settled = false;
        let timer: ReturnType<typeof setTimeout> | undefined;
        let req: http.ClientRequest | undefined;
        // The first of answer, error, timeout and abort settles the request; the others find it so.
        const settle = (): boolean => {
          if (settled) return false;
          settled = true;
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          return true;
        };
        const fail = (err: PosthornError): void => {
          if (!settle()) return;
          req?.destroy();
          reject(err);
        };
        // Once a non-2xx status is in, what settles the request with it and what of its body came:
        // the status is the answer (as over fetch), so neither the attempt's timeout nor an abort
        // turns it into a retryable Timeout (a final 400 was sent again) or hides a Retry-After.
        let answered: (() => void) | undefined;
        const onAbort = (): void => (answered ? answered() : fail(aborted()));
        const onAnswer = (res: http.IncomingMessage): void => {
          const status = res.statusCode ?? 0;
          const answerHeaders = res.headers;
          const answer = (text: string): SenderAnswer => ({
            status,
            headers: {
              get: (name) => {
                const value = answerHeaders[name.toLowerCase()];
                if (value === undefined) return null;
                return Array.isArray(value) ? value.join(", ") : value;
              },
            },
            text,
          });
          // An answer cut off mid-body ends in an error here ("aborted"), not in "end". Once the
          // status is known it settles nothing: the answer is the status and headers.
          res.on("error", () => undefined);
          // The rest of the body is read and dropped so that keep-alive can reuse the connection;
          // one that does not end within BODY_MS is destroyed instead, never handed back to the
          // agent with a body still coming down it. An answer that has no body (204, 304, or a
          // Content-Length of 0: most answers to a publish) cannot hang, and needs no timer.
          // Once the publish has settled that reading is background work, which must not keep a
          // process up that has nothing else to do (it did, for up to BODY_MS after the last
          // publish): the timer is unref'd, and so is the socket while the rest of the body comes,
          // on the publisher's own agent only. That agent has no socket limit, so no request ever
          // waits in its queue for this socket; one waiting in the queue of an agent given as an
          // option (maxSockets) has no handle of its own, and the process would exit under it.
          // At the body's end the socket is ref'd again; the agent unrefs it when it goes idle.
          let background: (() => void) | undefined;
          if (status !== 204 && status !== 304 && answerHeaders["content-length"] !== "0") {
            const cutoff = setTimeout(() => req?.destroy(), BODY_MS);
            cutoff.unref();
            const socket = res.socket;
            let unrefd = false;
            background = () => {
              if (ownAgent === undefined || res.complete || socket === null || socket.destroyed)
                return;
              socket.unref();
              unrefd = true;
            };
            const stopCutoff = (): void => {
              clearTimeout(cutoff);
              if (unrefd) socket?.ref();
              unrefd = false;
            };
            res.on("end", stopCutoff);
            res.on("close", stopCutoff);
          }
          if (status >= 200 && status < 300) {
            // 2xx: the receiver took the event (http-webhook.md 2.2). Waiting for a body that never
            // ends would time the attempt out and send the event again, a second delivery of one
            // already accepted.
            if (!settle()) {
              req?.destroy();
              return;
            }
            res.resume();
            background?.();
            resolve(answer(""));
            return;
          }
          // Most answers have no body: the bytes are kept, and made text only when there are any.
          let kept: Buffer[] | undefined;
          let keptBytes = 0;
          const done = (): void => {
            if (!settle()) return;
            clearTimeout(textTimer);
            background?.();
            resolve(answer(kept === undefined ? "" : Buffer.concat(kept).toString("utf8")));
          };
          // A failure's text is for the error message only: what came within BODY_MS is enough.
          const textTimer = setTimeout(done, BODY_MS);
          answered = done;
          res.on("data", (chunk: Buffer) => {
            if (keptBytes < KEEP_TEXT_BYTES) {
              if (kept === undefined) kept = [chunk];
              else kept.push(chunk);
              keptBytes += chunk.length;
            }
          });
          res.on("end", done);
          res.on("close", done);
        };
        try {
          // An object literal, not a spread of shared options: V8's slow path, per request.
          req = module.request(
            { hostname, port, path, agent, method: request.method, headers },
            onAnswer,
          );
        } catch (err) {
          // node:http refuses a header name or value it cannot send (say, a character past
          // U+00FF in a configured header) before anything goes out.
          reject(
            new PosthornError("InvalidEvent", `${what}: ${(err as Error).message}`, {
              cause: err,
            }),
          );
          return;
        }
        timer = limitTimer(() => {
          if (answered) answered();
          else
            fail(
              new PosthornError(
                "Timeout",
                `${what} did not complete within ${request.timeoutMs} ms`,
              ),
            );
        }, request.timeoutMs);
        req.on("error", (err: Error) => fail(connectionFailed(what, err)));
        signal?.addEventListener("abort", onAbort, { once: true });
        req.end(body);
      }),
    close() {
      ownAgent?.destroy();
    },
  };
}

/**
 * Refuses, when the publisher is made, an `agent` node:http cannot send with to this URL: it
 * failed every publish instead, as `InvalidEvent` (a fault of no event).
 *
 * @throws {@link PosthornError} `NotSupported` (attribute `agent`) for an object that is no
 *   `Agent`, or an `http.Agent` for an https: URL (or the other way round)
 */
function checkAgent(agent: unknown, secure: boolean): void {
  const candidate = agent as { addRequest?: unknown; protocol?: unknown } | null;
  if (candidate === null || typeof candidate?.addRequest !== "function") {
    throw new PosthornError(
      "NotSupported",
      "options.agent must be a node:http or node:https Agent (or one made like it, such as a proxy agent)",
      { attribute: "agent" },
    );
  }
  const wanted = secure ? "https:" : "http:";
  if (typeof candidate.protocol === "string" && candidate.protocol !== wanted) {
    throw new PosthornError(
      "NotSupported",
      `options.agent sends ${candidate.protocol.slice(0, -1)} requests, but the url is ${wanted.slice(0, -1)}: pass a node:${wanted.slice(0, -1)} Agent`,
      { attribute: "agent" },
    );
  }
}

function connectionFailed(what: string, err: Error): PosthornError {
  return connectionFailure(what, err.message, err, (err as { code?: unknown }).code);
}
