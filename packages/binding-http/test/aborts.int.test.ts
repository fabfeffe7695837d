import type { IncomingMessage, ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";
import { Readable } from "node:stream";
import {
  createFetchHandler,
  createNodeHandler,
  type HttpReceiver,
  type HttpReceiverOptions,
  httpReceiver,
  toHttpMessage,
} from "@posthorn/binding-http";
import { expressHandler } from "@posthorn/binding-http/express";
import { fastifyCloudEvents } from "@posthorn/binding-http/fastify";
import { CloudEvent } from "@posthorn/core";
import express from "express";
import Fastify from "fastify";
import { afterAll, describe, expect, it } from "vitest";
import { startServer, type TestServer } from "./servers.js";

// A request's handling (HttpReceiver.handle) must always settle: when the client goes away, when
// authorize fails or takes long, when the receiver closes, when the body trickles. Each test
// counts the handlings still running, over a real server and a real socket.

const event = new CloudEvent({
  specversion: "1.0",
  id: "a-1",
  source: "/aborts",
  type: "com.example.abort",
  datacontenttype: "application/json",
  data: { n: 1 },
});
const message = toHttpMessage(event);
const body = Buffer.from(message.body as Uint8Array);
const servers: TestServer[] = [];
const closers: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const close of closers) await close();
  for (const s of servers) await s.close();
});

/** A receiver whose running handlings are counted, and the events it delivered. */
function counted(options: HttpReceiverOptions) {
  const delivered: string[] = [];
  const receiver = httpReceiver({
    ...options,
    onDelivery: (d) => void delivered.push(d.event.id),
  });
  let started = 0;
  let pending = 0;
  const handle = receiver.handle.bind(receiver);
  receiver.handle = async (request) => {
    started++;
    pending++;
    try {
      return await handle(request);
    } finally {
      pending--;
    }
  };
  return {
    receiver,
    delivered,
    /** Handlings begun. */
    get started() {
      return started;
    },
    /** Handlings still running. */
    get pending() {
      return pending;
    },
  };
}

/** Resolves once `done()` holds, or fails after `withinMs`. */
async function settles(done: () => boolean, withinMs: number, what: string): Promise<number> {
  const started = Date.now();
  while (!done()) {
    if (Date.now() - started > withinMs) throw new Error(`${what}: not within ${withinMs} ms`);
    await sleep(10);
  }
  return Date.now() - started;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Opens a socket to the server and writes a POST's head, and `part` of the body if given. */
async function openRequest(url: string, part: Buffer = Buffer.alloc(0)): Promise<Socket> {
  const { port } = new URL(url);
  const socket = connect(Number(port), "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.on("error", () => undefined);
  const head = [
    "POST /events HTTP/1.1",
    "host: 127.0.0.1",
    ...Object.entries(message.headers).map(([name, value]) => `${name}: ${value}`),
    "authorization: Bearer t",
    `content-length: ${body.length}`,
    "",
    "",
  ].join("\r\n");
  socket.write(Buffer.concat([Buffer.from(head), part]));
  return socket;
}

/** The status line and headers the server wrote back, once it wrote them. */
function answer(socket: Socket): Promise<{ status: number; head: string; at: number }> {
  return new Promise((resolve, reject) => {
    let text = "";
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      if (end !== -1) {
        resolve({ status: Number(text.slice(9, 12)), head: text.slice(0, end), at: Date.now() });
      }
    });
    socket.once("close", () => reject(new Error(`socket closed without an answer: ${text}`)));
  });
}

async function nodeServer(receiver: HttpReceiver): Promise<string> {
  const server = await startServer(createNodeHandler(receiver));
  servers.push(server);
  return server.url;
}

/**
 * A node:http server that hands each request to a fetch handler as a Web `Request`, as fetch-style
 * adapters for Node do: the body is the request stream, and the signal aborts when the client
 * goes away before the answer.
 */
async function fetchServer(receiver: HttpReceiver): Promise<string> {
  const handle = createFetchHandler(receiver);
  const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
    const gone = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) gone.abort();
    });
    const request = new Request(`http://127.0.0.1${req.url ?? "/"}`, {
      method: req.method ?? "GET",
      headers: req.headers as Record<string, string>,
      body: Readable.toWeb(req) as ReadableStream<Uint8Array>,
      duplex: "half",
      signal: gone.signal,
    } as RequestInit);
    void handle(request).then(async (response) => {
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(Buffer.from(await response.arrayBuffer()));
    });
  });
  servers.push(server);
  return server.url;
}

const SERVERS = [
  { name: "node:http (createNodeHandler)", serve: nodeServer },
  { name: "a Web Request (createFetchHandler)", serve: fetchServer },
];

describe.each(SERVERS)("client aborts, over $name", ({ serve }) => {
  it("a client that closes its socket while an async authorize runs: the handling ends at once, nothing is delivered", async () => {
    let authorizing = 0;
    const r = counted({
      authorize: async () => {
        authorizing++;
        await sleep(1500);
        return true;
      },
    });
    const url = await serve(r.receiver);
    const socket = await openRequest(url, body);
    await settles(() => authorizing === 1, 2000, "authorize called");
    socket.destroy();
    // Before authorize answers (1.5 s): the receiver stops waiting for it.
    await settles(() => r.pending === 0, 1000, "handling after the abort");
    await sleep(1700);
    expect(r.pending).toBe(0);
    expect(r.delivered).toEqual([]);
  });

  it("a client that closes its socket halfway through the body: the handling ends, nothing is delivered", async () => {
    const r = counted({});
    const url = await serve(r.receiver);
    const socket = await openRequest(url, body.subarray(0, body.length >> 1));
    await settles(() => r.pending === 1, 2000, "request handled");
    await sleep(50);
    socket.destroy();
    await settles(() => r.pending === 0, 1000, "handling after the abort");
    expect(r.delivered).toEqual([]);
  });

  it("a client that closes its socket once the whole body was sent, while authorize runs: nothing is delivered", async () => {
    const r = counted({ authorize: () => sleep(300).then(() => true) });
    const url = await serve(r.receiver);
    const socket = await openRequest(url, body);
    await settles(() => r.pending === 1, 2000, "request handled");
    socket.destroy();
    await settles(() => r.pending === 0, 1000, "handling after the abort");
    await sleep(400);
    expect(r.delivered).toEqual([]);
  });
});

describe.each(SERVERS)("authorize's abortSignal, over $name", ({ serve }) => {
  /**
   * An authorize that waits, as one calling a token service with fetch would, on a promise that
   * ends only when its signal aborts, and reports the signal's reason.
   */
  function watching() {
    let signal: AbortSignal | undefined;
    let seen: (reason: unknown) => void = () => {};
    const aborted = new Promise<unknown>((resolve) => {
      seen = resolve;
    });
    const authorize = (_credential: string | undefined, context: { abortSignal: AbortSignal }) => {
      signal = context.abortSignal;
      return new Promise<boolean>((_, reject) => {
        const onAbort = () => {
          seen(context.abortSignal.reason);
          reject(context.abortSignal.reason);
        };
        if (context.abortSignal.aborted) onAbort();
        else context.abortSignal.addEventListener("abort", onAbort, { once: true });
      });
    };
    return {
      authorize,
      aborted,
      get signal() {
        return signal;
      },
    };
  }

  it("aborts, with an Aborted reason, when the client closes its socket while authorize runs", async () => {
    const w = watching();
    const r = counted({ authorize: w.authorize });
    const url = await serve(r.receiver);
    const socket = await openRequest(url, body);
    await settles(() => w.signal !== undefined, 2000, "authorize called");
    expect(w.signal?.aborted).toBe(false);
    socket.destroy();
    const reason = await Promise.race([w.aborted, sleep(2000).then(() => "not aborted")]);
    expect(reason).toMatchObject({ name: "PosthornError", code: "Aborted" });
    expect(w.signal?.aborted).toBe(true);
    await settles(() => r.pending === 0, 1000, "handling after the abort");
    expect(r.delivered).toEqual([]);
  });

  it("aborts with Closed on close(), and with Timeout after requestTimeoutMs", async () => {
    for (const [options, end, code] of [
      [{}, (receiver: HttpReceiver) => void receiver.close(), "Closed"],
      [{ requestTimeoutMs: 200 }, () => {}, "Timeout"],
    ] as const) {
      const w = watching();
      const r = counted({ ...options, authorize: w.authorize });
      const url = await serve(r.receiver);
      const socket = await openRequest(url, body);
      const answered = answer(socket);
      await settles(() => w.signal !== undefined, 2000, "authorize called");
      end(r.receiver);
      const reason = await Promise.race([w.aborted, sleep(2000).then(() => "not aborted")]);
      expect(reason).toMatchObject({ name: "PosthornError", code });
      expect((await answered).status).toBe(code === "Closed" ? 503 : 500);
      socket.destroy();
    }
  });
});

describe("client aborts before the receiver sees the request", () => {
  it("Express: a client gone while an earlier async middleware ran is not waited for", async () => {
    const r = counted({});
    const app = express();
    let reached = 0;
    app.use("/events", async (_req, _res, next) => {
      reached++;
      await sleep(300);
      next();
    });
    app.use("/events", expressHandler(r.receiver));
    const server = await new Promise<ReturnType<typeof app.listen>>((resolve) => {
      const s = app.listen(0, "127.0.0.1", () => resolve(s));
    });
    closers.push(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });
    const { port } = server.address() as { port: number };
    const socket = await openRequest(`http://127.0.0.1:${port}/`, body);
    await settles(() => reached === 1, 2000, "middleware reached");
    socket.destroy();
    await settles(() => r.started === 1, 2000, "receiver reached");
    await settles(() => r.pending === 0, 1000, "handling after the abort");
    expect(r.delivered).toEqual([]);
  });

  it("Fastify: a client gone while authorize runs is not waited for", async () => {
    const r = counted({ authorize: () => sleep(300).then(() => true) });
    const app = Fastify();
    await app.register(fastifyCloudEvents({ path: "/events", receiver: r.receiver }));
    await app.listen({ port: 0, host: "127.0.0.1" });
    closers.push(() => app.close());
    const { port } = app.server.address() as { port: number };
    const socket = await openRequest(`http://127.0.0.1:${port}/`, body);
    await settles(() => r.pending === 1, 2000, "receiver reached");
    socket.destroy();
    await settles(() => r.pending === 0, 1000, "handling after the abort");
    expect(r.delivered).toEqual([]);
  });
});

describe("authorize that fails", () => {
  const cases = [
    {
      name: "throws",
      authorize: (): boolean => {
        throw new Error("token service down");
      },
    },
    { name: "rejects", authorize: () => Promise.reject(new Error("token service down")) },
  ];
  it.each(cases)(
    "authorize that $name is answered 500 'authorize failed', the error's text withheld",
    async ({ authorize }) => {
      const r = counted({ authorize });
      const url = await nodeServer(r.receiver);
      const response = await fetch(url, { method: "POST", headers: message.headers, body });
      expect(response.status).toBe(500);
      const text = await response.text();
      expect(text).toBe("authorize failed");
      expect(r.pending).toBe(0);
      expect(r.delivered).toEqual([]);
    },
  );
});

describe("limits on the time before the delivery", () => {
  it("close() while authorize runs answers 503 at once, not once authorize answers", async () => {
    const r = counted({ authorize: () => sleep(3000).then(() => true) });
    const url = await nodeServer(r.receiver);
    const socket = await openRequest(url, body);
    const answered = answer(socket);
    await settles(() => r.pending === 1, 2000, "request handled");
    const closedAt = Date.now();
    await r.receiver.close();
    const { status, head, at } = await answered;
    socket.destroy();
    expect(status).toBe(503);
    expect(head).toMatch(/\r\nconnection: close\r\n/i);
    expect(at - closedAt).toBeLessThan(1000);
    expect(r.pending).toBe(0);
  });

  it("a body trickling in slower than requestTimeoutMs is answered 408 with Connection: close", {
    timeout: 5000,
  }, async () => {
    const r = counted({ requestTimeoutMs: 300 });
    const url = await nodeServer(r.receiver);
    const socket = await openRequest(url, body.subarray(0, 1));
    const answered = answer(socket);
    const started = Date.now();
    // A byte every 50 ms: never idle, never done within the limit.
    let sent = 1;
    const trickle = setInterval(() => {
      if (sent < body.length - 1 && !socket.destroyed) socket.write(body.subarray(sent, ++sent));
    }, 50);
    try {
      const { status, head, at } = await answered;
      expect(status).toBe(408);
      expect(head).toMatch(/\r\nconnection: close\r\n/i);
      expect(at - started).toBeLessThan(1500);
    } finally {
      clearInterval(trickle);
      socket.destroy();
    }
    await settles(() => r.pending === 0, 1000, "handling after the answer");
    expect(r.delivered).toEqual([]);
  });

  it("each request gets its own deadline: later ones are not cut short, quick ones pass", {
    timeout: 8000,
  }, async () => {
    // One timer serves every request's deadline; it must re-arm for the next one.
    const r = counted({ requestTimeoutMs: 600 });
    const url = await nodeServer(r.receiver);
    const first = await openRequest(url, body.subarray(0, 1));
    const firstAnswer = answer(first);
    const firstAt = Date.now();
    await sleep(300);
    // A request that completes in between removes itself; it must not disturb the deadlines.
    const quick = await fetch(url, { method: "POST", headers: message.headers, body });
    expect(quick.status).toBe(204);
    const second = await openRequest(url, body.subarray(0, 1));
    const secondAnswer = answer(second);
    const secondAt = Date.now();
    try {
      const a = await firstAnswer;
      expect(a.status).toBe(408);
      expect(a.at - firstAt).toBeGreaterThanOrEqual(550);
      // The second one is still waiting when the first one's deadline passes.
      expect(r.pending).toBe(1);
      const b = await secondAnswer;
      expect(b.status).toBe(408);
      expect(b.at - secondAt).toBeGreaterThanOrEqual(550);
      expect(b.at - secondAt).toBeLessThan(2000);
    } finally {
      first.destroy();
      second.destroy();
    }
    await settles(() => r.pending === 0, 1000, "handling after the answers");
    expect(r.delivered).toEqual([event.id]);
  });

  it("an authorize that never answers is answered 500 after requestTimeoutMs", {
    timeout: 5000,
  }, async () => {
    const r = counted({ requestTimeoutMs: 300, authorize: () => new Promise<boolean>(() => {}) });
    const url = await nodeServer(r.receiver);
    const started = Date.now();
    const response = await fetch(url, { method: "POST", headers: message.headers, body });
    expect(response.status).toBe(500);
    expect(await response.text()).toMatch(/authorize did not answer within 300 ms/);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(r.pending).toBe(0);
  });

  it("a webhook onCallback that never returns is answered 500 after requestTimeoutMs", {
    timeout: 5000,
  }, async () => {
    const r = counted({
      requestTimeoutMs: 300,
      webhook: { allowedOrigins: [], onCallback: () => new Promise(() => {}) },
    });
    const url = await nodeServer(r.receiver);
    const started = Date.now();
    const response = await fetch(url, {
      method: "OPTIONS",
      headers: {
        "webhook-request-origin": "sender.example",
        "webhook-request-callback": "http://127.0.0.1:1/callback",
      },
    });
    expect(response.status).toBe(500);
    await response.text();
    expect(Date.now() - started).toBeLessThan(1500);
    expect(r.pending).toBe(0);
  });
});

describe("deliveries waiting in the queue", () => {
  /** A receiver read by iterating, and a server for it. */
  async function iterated(options: HttpReceiverOptions = {}) {
    const receiver = httpReceiver(options);
    closers.push(() => receiver.close());
    const url = await nodeServer(receiver);
    return { receiver, url, deliveries: receiver[Symbol.asyncIterator]() };
  }

  const second = toHttpMessage(event.cloneWith({ id: "a-2" }));
  const sendSecond = (url: string) =>
    fetch(url, { method: "POST", headers: second.headers, body: second.body as BodyInit });

  it("one whose client went away before it was handed out is withdrawn, not handed out", async () => {
    const { url, deliveries } = await iterated();
    const socket = await openRequest(url, body);
    // The whole request arrived and waits in the queue; then its client goes away.
    await sleep(200);
    socket.destroy();
    await sleep(200);
    const answered = sendSecond(url);
    const next = await deliveries.next();
    expect(next.done).toBe(false);
    expect(next.value?.event.id).toBe("a-2");
    await next.value?.accept();
    expect((await answered).status).toBe(204);
  });

  it("one whose client went away after requestTimeoutMs (settleTimeoutMs longer) is withdrawn too", async () => {
    const { url, deliveries } = await iterated({ requestTimeoutMs: 200, settleTimeoutMs: 10_000 });
    const socket = await openRequest(url, body);
    // It waits in the queue past requestTimeoutMs, which bounds only what comes before the
    // delivery; then its client goes away. It was handed out, for an answer nobody hears.
    await sleep(500);
    socket.destroy();
    await sleep(200);
    const answered = sendSecond(url);
    const next = await deliveries.next();
    expect(next.value?.event.id).toBe("a-2");
    await next.value?.accept();
    expect((await answered).status).toBe(204);
  });

  it("one already answered 503 after settleTimeoutMs is not handed out afterwards", async () => {
    const { url, deliveries } = await iterated({ settleTimeoutMs: 200 });
    const first = await fetch(url, { method: "POST", headers: message.headers, body });
    expect(first.status).toBe(503);
    const answered = sendSecond(url);
    const next = await deliveries.next();
    expect(next.value?.event.id).toBe("a-2");
    await next.value?.accept();
    expect((await answered).status).toBe(204);
  });

  it("one whose client is still there is handed out as before", async () => {
    const { url, deliveries } = await iterated();
    const socket = await openRequest(url, body);
    const answered = answer(socket);
    await sleep(200);
    const next = await deliveries.next();
    expect(next.value?.event.id).toBe("a-1");
    await next.value?.accept();
    expect((await answered).status).toBe(204);
    socket.destroy();
  });
});
