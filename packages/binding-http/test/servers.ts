import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { HttpPublisherOptions } from "@posthorn/binding-http";
import { CloudEvent, isPosthornError, type PosthornError } from "@posthorn/core";

/** A node:http server on a free loopback port. */
export interface TestServer {
  readonly url: string;
  readonly server: Server;
  close(): Promise<void>;
}

/** Starts a node:http server on 127.0.0.1 and a free port. */
export async function startServer(
  listener: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<TestServer> {
  const server = createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A small text event with the given id and source. */
export function textEvent(id: string, source: string): CloudEvent {
  return new CloudEvent({
    specversion: "1.0",
    id,
    source,
    type: "t",
    data: "x",
    datacontenttype: "text/plain",
  });
}

/** The typed error a promise rejects with; anything else (or no rejection) fails the test. */
export async function failure(p: Promise<unknown>): Promise<PosthornError> {
  try {
    await p;
  } catch (err) {
    if (isPosthornError(err)) return err;
    throw err;
  }
  throw new Error("expected a failure");
}

/**
 * The two ways an `HttpPublisher` sends in Node, for tests that run against both: its default
 * (`node:http` with a keep-alive agent) and a given `fetch` (undici).
 */
export const SENDERS: ReadonlyArray<{
  name: string;
  options: Pick<HttpPublisherOptions, "fetch">;
}> = [
  { name: "node:http", options: {} },
  { name: "fetch", options: { fetch: (input, init) => globalThis.fetch(input, init) } },
];
