import {
  handleNodeRequest,
  type NodeRequestLike,
  type NodeResponseLike,
  writeReply,
} from "./node-handler.js";
import { type ReceiverOrOptions, toReceiver } from "./receiver.js";

/**
 * An Express request, structurally: a Node request, possibly with a `body` that a body parser
 * such as `express.raw()` read. Express itself is not a dependency.
 */
export interface ExpressRequestLike extends NodeRequestLike {
  /**
   * What a body parser left: bytes (`express.raw()`) are decoded as the body; an object (the body
   * parsed as JSON or a form) or text (`express.text()`, whose bytes cannot be recovered exactly)
   * is answered 500 saying so.
   */
  readonly body?: unknown;
}

/** An Express handler, structurally. */
export type ExpressHandler = (
  request: ExpressRequestLike,
  response: NodeResponseLike,
  next?: (err?: unknown) => void,
) => void;

/**
 * An Express route handler for CloudEvents: mount it with `app.post(path, ...)` (and
 * `app.options(path, ...)` for the webhook handshake), or `app.use(path, ...)`. It reads the
 * raw body itself; put it before `express.json()`, or give it `express.raw({ type: () => true })`
 * output, since a body already parsed into an object, or decoded to text by `express.text()`,
 * cannot be decoded faithfully (500).
 *
 * @param receiver - an {@link HttpReceiver}, or options to make one
 *
 * @example
 * ```ts
 * import { expressHandler } from "@posthorn/binding-http/express";
 * app.use("/events", expressHandler({ formats: [json], onDelivery: (d) => handle(d.event) }));
 * ```
 */
export function expressHandler(receiver: ReceiverOrOptions): ExpressHandler {
  const target = toReceiver(receiver);
  return (request, response, next) => {
    handleNodeRequest(target, request, response).catch((err: unknown) => {
      if (next) next(err);
      else writeReply(response, { status: 500, headers: {}, body: String(err) });
    });
  };
}
