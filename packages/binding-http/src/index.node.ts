// The package in Node (the `node` export condition): the same API as index.ts, except that
// httpPublisher sends over node:http / node:https unless it is given a `fetch`. Browsers and
// other runtimes get index.ts, which never loads a Node module.
import { nodeSender } from "./node-sender.js";
import { HttpPublisher as FetchPublisher, type HttpPublisherOptions } from "./publisher.js";
import { PLATFORM_SENDER } from "./sender.js";

export * from "./index.js";

/**
 * Publishes events over HTTP: with `node:http` / `node:https` and a keep-alive agent, or with
 * the `fetch` given as an option (see {@link httpPublisher}).
 */
export class HttpPublisher extends FetchPublisher {
  /** @param options - destination, mode, format, timeouts, retries, headers, webhook, agent */
  constructor(options: HttpPublisherOptions) {
    // A copy of the options once per publisher, carrying the sender under an unexported symbol.
    super({ ...options, [PLATFORM_SENDER]: nodeSender } as HttpPublisherOptions);
  }
}

/**
 * A publisher that POSTs events over HTTP: binary, structured or batch mode, a timeout for the
 * whole call and one per attempt, retries with backoff, webhook validation and pacing, as
 * documented on the package's other entry point. In Node it sends with `node:http` /
 * `node:https` and a keep-alive agent of its own (or `options.agent`), unless `options.fetch` is
 * given.
 *
 * @example
 * ```ts
 * const publisher = httpPublisher({ url: "http://localhost:8080/events", mode: "structured", format: json });
 * await publisher.publish(event);
 * ```
 *
 * @param options - destination, mode, format, timeouts, retries, headers, webhook, agent
 * @throws {@link PosthornError} `MalformedInput` when `url` is not an absolute http(s) URL or
 *   holds credentials, or `webhook.callbackUrl` is not an absolute http(s) URL; `InvalidEvent`
 *   when a configured header holds CR, LF or NUL
 */
export function httpPublisher(options: HttpPublisherOptions): HttpPublisher {
  return new HttpPublisher(options);
}
