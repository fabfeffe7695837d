import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import {
  createFetchHandler,
  createNodeHandler,
  type HttpReceiverOptions,
  httpPublisher,
  httpReceiver,
} from "@posthorn/binding-http";
import { expressHandler } from "@posthorn/binding-http/express";
import { fastifyCloudEvents } from "@posthorn/binding-http/fastify";
import { CloudEvent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import express from "express";
import Fastify from "fastify";
import { afterAll, describe, expect, it } from "vitest";
import { startServer } from "./servers.js";

/** What closes the servers a test started. */
const closers: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const close of closers) await close();
});

function batch(count: number, source: string): Uint8Array {
  const events: CloudEvent[] = [];
  for (let i = 0; i < count; i++) {
    events.push(new CloudEvent({ specversion: "1.0", id: String(i), source, type: "t" }));
  }
  return json.encodeBatch(events);
}

async function post(url: string, body: Uint8Array): Promise<{ status: number; text: string }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/cloudevents-batch+json" },
    body: body as BodyInit,
  });
  return { status: response.status, text: await response.text() };
}

async function nodeServer(options: Parameters<typeof createNodeHandler>[0]): Promise<string> {
  const server = await startServer(createNodeHandler(options));
  closers.push(() => server.close());
  return server.url;
}

/** A node:http server that hands each request to a fetch handler as a Web `Request`. */
async function fetchServer(options: HttpReceiverOptions): Promise<string> {
  const handle = createFetchHandler(options);
  const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
    const request = new Request(`http://127.0.0.1${req.url ?? "/"}`, {
      method: req.method ?? "GET",
      headers: req.headers as Record<string, string>,
      body: Readable.toWeb(req) as ReadableStream<Uint8Array>,
      duplex: "half",
    } as RequestInit);
    void handle(request).then(async (response) => {
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(Buffer.from(await response.arrayBuffer()));
    });
  });
  closers.push(() => server.close());
  return server.url;
}

async function expressServer(options: HttpReceiverOptions): Promise<string> {
  const app = express();
  app.post("/batch", expressHandler(options));
  const server = await new Promise<ReturnType<typeof app.listen>>((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/batch`;
}

async function fastifyServer(options: HttpReceiverOptions): Promise<string> {
  const app = Fastify();
  await app.register(fastifyCloudEvents({ path: "/batch", ...options }));
  await app.listen({ port: 0, host: "127.0.0.1" });
  closers.push(() => app.close());
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/batch`;
}

const SERVERS = [
  { name: "node:http (createNodeHandler)", slug: "node", serve: nodeServer },
  { name: "a Web Request (createFetchHandler)", slug: "fetch", serve: fetchServer },
  { name: "Express (expressHandler)", slug: "express", serve: expressServer },
  { name: "Fastify (fastifyCloudEvents)", slug: "fastify", serve: fastifyServer },
];

describe.each(SERVERS)("maxBatchEvents over $name", ({ slug, serve }) => {
  it("answers a batch past maxBatchEvents 413 saying so, delivering none of it; one at the limit is delivered", async () => {
    const delivered: string[] = [];
    const url = await serve({
      formats: [json],
      maxBatchEvents: 3,
      onDelivery: (d) => void delivered.push(d.event.id),
    });
    const over = await post(url, batch(4, `/batch-limit/${slug}/over`));
    expect(over.status).toBe(413);
    expect(over.text).toContain("batch of 4 events exceeds maxBatchEvents 3");
    expect(delivered).toEqual([]);
    const at = await post(url, batch(3, `/batch-limit/${slug}/at`));
    expect(at.status).toBe(204);
    expect(delivered).toEqual(["0", "1", "2"]);
  });
});

describe("maxBatchEvents default and Infinity", () => {
  it("defaults to 1,000 events per batch", async () => {
    let delivered = 0;
    const url = await nodeServer({ formats: [json], onDelivery: () => void delivered++ });
    const over = await post(url, batch(1001, "/batch-limit/default/over"));
    expect(over.status).toBe(413);
    expect(over.text).toContain("batch of 1001 events exceeds maxBatchEvents 1000");
    expect(delivered).toBe(0);
    expect((await post(url, batch(1000, "/batch-limit/default/at"))).status).toBe(204);
    expect(delivered).toBe(1000);
  });
  it("sets no limit with Infinity", async () => {
    let delivered = 0;
    const url = await nodeServer({
      formats: [json],
      maxBatchEvents: Infinity,
      onDelivery: () => void delivered++,
    });
    expect((await post(url, batch(1500, "/batch-limit/infinity"))).status).toBe(204);
    expect(delivered).toBe(1500);
  });
  it("withdraws nothing from an iterating subscriber: a batch past the limit never reaches the queue", async () => {
    const receiver = httpReceiver({ formats: [json], maxBatchEvents: 2, settleTimeoutMs: 5000 });
    closers.push(() => receiver.close());
    const url = await nodeServer(receiver);
    const over = await post(url, batch(3, "/batch-limit/iterated/over"));
    expect(over.status).toBe(413);
    // The next delivery handed out is the first of the batch sent after, not one of the refused.
    const sent = post(url, batch(1, "/batch-limit/iterated/after"));
    const iterator = receiver[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.done).toBe(false);
    expect(first.value?.event.source).toBe("/batch-limit/iterated/after");
    await first.value?.accept();
    expect((await sent).status).toBe(204);
  });
});

describe("the publisher's maxBatchEvents", () => {
  function events(count: number, source: string): CloudEvent[] {
    return Array.from(
      { length: count },
      (_, i) => new CloudEvent({ specversion: "1.0", id: String(i), source, type: "t" }),
    );
  }

  /** A default receiver (an iterating subscriber) recording the ids it is handed, in order. */
  async function recordingReceiver() {
    const ids: string[] = [];
    const receiver = httpReceiver({ formats: [json] });
    const url = await nodeServer(receiver);
    void (async () => {
      for await (const d of receiver) {
        ids.push(d.event?.id ?? "");
        await d.accept();
      }
    })();
    return { url, ids };
  }

  it("sends a batch past a default receiver's limit as batches of 1,000, in order, all delivered", async () => {
    // One request of 2,500 events: the receiver's default maxBatchEvents answered it 413.
    const { url, ids } = await recordingReceiver();
    const publisher = httpPublisher({ url, mode: "batch", format: json });
    const sent = events(2500, "/batch-limit/publisher/default");
    await publisher.publish(sent);
    expect(ids).toEqual(sent.map((e) => e.id));
    await publisher.close();
  });

  it("splits at its own maxBatchEvents, and sends one request with Infinity", async () => {
    const requests: number[] = [];
    const counting: typeof fetch = async (input, init) => {
      const body = JSON.parse(new TextDecoder().decode(init?.body as Uint8Array)) as unknown[];
      requests.push(body.length);
      return fetch(input, init);
    };
    const url = await nodeServer({
      formats: [json],
      maxBatchEvents: Infinity,
      onDelivery: () => {},
    });
    const split = httpPublisher({
      url,
      mode: "batch",
      format: json,
      maxBatchEvents: 2,
      fetch: counting,
    });
    await split.publish(events(5, "/batch-limit/publisher/two"));
    expect(requests).toEqual([2, 2, 1]);
    requests.length = 0;
    const whole = httpPublisher({
      url,
      mode: "batch",
      format: json,
      maxBatchEvents: Infinity,
      fetch: counting,
    });
    await whole.publish(events(1500, "/batch-limit/publisher/whole"));
    expect(requests).toEqual([1500]);
    await Promise.all([split.close(), whole.close()]);
  });

  it("refuses a maxBatchEvents that is not a whole number of 1 or more", () => {
    for (const bad of [0, -1, 2.5, Number.NaN]) {
      expect(() => httpPublisher({ url: "http://127.0.0.1:1/", maxBatchEvents: bad })).toThrow(
        expect.objectContaining({ code: "NotSupported", attribute: "maxBatchEvents" }),
      );
    }
  });
});
