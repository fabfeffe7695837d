import {
  type ContentMode,
  closeOnReturn,
  PosthornError,
  type Publisher,
  type PublishOptions,
  type Subscriber,
} from "@posthorn/core";
import type { TransportTraits } from "../driver.js";
import type { FormatName, ParsedEndpointUrl } from "../endpoint-url.js";
import { availableFormatNames, BATCH_FORMAT_NAMES } from "../formats.js";

/**
 * A publisher that also closes what the driver created for it (the client, the connection) when
 * it is closed.
 */
export function ownedPublisher(inner: Publisher, cleanup: () => Promise<void> | void): Publisher {
  return {
    publish: (events, options?: PublishOptions) => inner.publish(events, options),
    close: closeOnce(inner, cleanup),
  };
}

/** A subscriber that also closes what the driver created for it when it is closed. */
export function ownedSubscriber(
  inner: Subscriber,
  cleanup: () => Promise<void> | void,
): Subscriber {
  const close = closeOnce(inner, cleanup);
  return {
    capabilities: inner.capabilities,
    ready: inner.ready,
    // Leaving a loop closes the subscriber (core's contract), and with it what the CLI opened.
    [Symbol.asyncIterator]: () => closeOnReturn(inner[Symbol.asyncIterator](), close),
    close,
  };
}

/**
 * The `close` of an owned publisher or subscriber: closes `inner` (bounded), then runs
 * `cleanup`, once however often it is called.
 */
function closeOnce(
  inner: { close(): Promise<void> },
  cleanup: () => Promise<void> | void,
): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= (async () => {
      try {
        await boundedClose(inner.close());
      } finally {
        await cleanup();
      }
    })();
    return closing;
  };
}

/**
 * Waits for a binding's close, at most `ms`: the driver then closes the client anyway, so a
 * command never hangs on a close that waits for the network.
 */
function boundedClose(closing: Promise<void>, ms = 5000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    timer.unref?.();
    closing.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** Rejects with a `Timeout` error naming `what` when `work` takes longer than `ms`. */
export function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new PosthornError("Timeout", `${what}: no answer within ${ms} ms`)),
      ms,
    );
    work.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** The formats of this build, optionally only some of them. */
export function formatsHere(only?: readonly FormatName[]): FormatName[] {
  const here = availableFormatNames();
  return only ? here.filter((f) => only.includes(f)) : here;
}

/** The formats of this build that have a batch encoding. */
export function batchFormatsHere(): FormatName[] {
  return formatsHere(BATCH_FORMAT_NAMES);
}

/** Traits of a path whose attributes travel as strings in headers (binary mode). */
export function headerTraits(mode: ContentMode, caseSensitive: boolean): TransportTraits {
  return mode === "binary" ? { typed: false, caseSensitive } : { typed: true, caseSensitive: true };
}

/**
 * Refuses a `#` in an HTTP or WebSocket URL: there it would start a fragment, which a client
 * never sends, so the request would go to a path other than the one written.
 *
 * @throws {@link PosthornError} `MalformedInput` naming the fix
 */
export function refuseFragment(url: ParsedEndpointUrl): void {
  if (!url.display.includes("#")) return;
  throw new PosthornError(
    "MalformedInput",
    `${url.display}: a "#" in an ${url.scheme}:// URL starts a fragment, which is never sent to the server; write %23 for a "#" in the path or query`,
  );
}

/**
 * Refuses to send to port 0, which only a receiver can be given (the system then picks its port).
 *
 * @throws {@link PosthornError} `MalformedInput` naming the fix
 */
export function refusePortZero(url: ParsedEndpointUrl): void {
  if (!url.hosts.some((h) => h.port === 0)) return;
  throw new PosthornError(
    "MalformedInput",
    `${url.display}: port 0 is for receiving (the system picks a free port to listen on); send to the port the receiver listens on, which posthorn receive prints on its "ready:" line`,
  );
}

/** The port a server listens on, once it listens. */
export function boundPort(address: string | { port: number } | null): number {
  if (address === null || typeof address === "string") {
    throw new PosthornError(
      "ConnectionFailed",
      `the server listens on ${String(address)}, not a TCP port`,
    );
  }
  return address.port;
}

/** The `host:port` of the first host of a URL, with a default port. */
export function firstHost(
  hosts: readonly { host: string; port: number | undefined }[],
  defaultPort: number,
): { host: string; port: number } {
  const h = hosts[0];
  return { host: h?.host || "127.0.0.1", port: h?.port ?? defaultPort };
}
