import {
  createNodeHandler,
  type HttpReceiverOptions,
  httpReceiver,
  toHttpMessage,
} from "@posthorn/binding-http";
import { CloudEvent, type Delivery, PosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { watchTimerOverflows } from "@posthorn/testkit";
import { afterAll, describe, expect, it } from "vitest";
import { startServer, type TestServer } from "./servers.js";

const event = new CloudEvent({
  specversion: "1.0",
  id: "r-1",
  source: "/receiver",
  type: "com.example.test",
  datacontenttype: "application/json",
  data: { n: 1 },
});
const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function serve(options: HttpReceiverOptions): Promise<string> {
  const server = await startServer(
    createNodeHandler(httpReceiver({ formats: [json], ...options })),
  );
  servers.push(server);
  return server.url;
}

async function post(
  url: string,
  message = toHttpMessage(event),
  extra: Record<string, string> = {},
) {
  const response = await fetch(url, {
    method: "POST",
    headers: { ...message.headers, ...extra },
    body: message.body as BodyInit,
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

describe("HTTP receiver status codes (node:http)", () => {
  it("answers 204 when the handler accepts, or returns without settling", async () => {
    const seen: Delivery[] = [];
    const url = await serve({ onDelivery: (d) => void seen.push(d) });
    expect((await post(url)).status).toBe(204);
    expect(seen[0]?.event?.id).toBe("r-1");
    expect(seen[0]?.settled).toBe(true);
  });
  it("answers 503 with Retry-After on release, in seconds, rounding the delay up", async () => {
    const url = await serve({ onDelivery: (d) => d.release({ delayMs: 2500 }) });
    const r = await post(url);
    expect(r.status).toBe(503);
    expect(r.headers.get("retry-after")).toBe("3");
  });
  it("answers 429 on release when configured, with the default Retry-After", async () => {
    const url = await serve({
      releaseStatus: 429,
      defaultRetryAfterMs: 7000,
      onDelivery: (d) => d.release(),
    });
    const r = await post(url);
    expect(r.status).toBe(429);
    expect(r.headers.get("retry-after")).toBe("7");
  });
  it("answers 422 on reject, with the reason", async () => {
    const url = await serve({ onDelivery: (d) => d.reject("no such order") });
    const r = await post(url);
    expect(r.status).toBe(422);
    expect(r.text).toBe("no such order");
  });
  it("answers 500 when the handler throws", async () => {
    const url = await serve({
      onDelivery: () => {
        throw new Error("boom");
      },
    });
    expect((await post(url)).status).toBe(500);
  });
  it("answers 500 when the handler throws a PosthornError, never that code's 4xx", async () => {
    // A handler forwarding the event fails with its downstream's error: a 413 or 400 here told
    // the sender its (correct) event was bad, and the sender dropped it for good.
    for (const code of [
      "PayloadTooLarge",
      "InvalidEvent",
      "MalformedInput",
      "UnsupportedContentType",
    ] as const) {
      const url = await serve({
        onDelivery: () => {
          throw new PosthornError(code, "the downstream broker refused it");
        },
      });
      const r = await post(url);
      expect({ code, status: r.status, text: r.text }).toEqual({
        code,
        status: 500,
        text: "the event handler failed",
      });
    }
  });
  it("answers a handler that settles and then throws with its settlement, not 500", async () => {
    const url = await serve({
      onDelivery: async (d) => {
        await d.reject("refused first");
        throw new Error("boom after settling");
      },
    });
    const r = await post(url);
    expect({ status: r.status, text: r.text }).toEqual({ status: 422, text: "refused first" });
  });
  it("fails a whole batch with 400 for one invalid event in it, delivering none of it", async () => {
    const seen: string[] = [];
    const url = await serve({ onDelivery: (d) => void seen.push(d.event.id) });
    const good = JSON.parse(new TextDecoder().decode(json.encode(event)));
    const body = JSON.stringify([good, { ...good, id: "r-bad", type: undefined }, good]);
    const r = await post(url, {
      headers: { "content-type": "application/cloudevents-batch+json" },
      body: new TextEncoder().encode(body),
    });
    expect(r.status).toBe(400);
    expect(seen).toEqual([]);
  });
  it("answers 400 for an invalid event and for an unparseable body", async () => {
    const url = await serve({ onDelivery: () => undefined });
    const missingType = { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s" };
    expect((await post(url, { headers: missingType, body: new Uint8Array(0) })).status).toBe(400);
    const badJson = {
      headers: { "content-type": "application/cloudevents+json" },
      body: new TextEncoder().encode("{nope"),
    };
    expect((await post(url, badJson)).status).toBe(400);
    const overlong = {
      headers: { ...missingType, "ce-type": "t", "ce-subject": "%C0%A0" },
      body: new Uint8Array(0),
    };
    expect((await post(url, overlong)).status).toBe(400);
  });
  it("answers 415 for a body that is not a CloudEvent and for an unregistered format", async () => {
    const url = await serve({ onDelivery: () => undefined });
    const plain = {
      headers: { "content-type": "application/json" },
      body: new TextEncoder().encode("{}"),
    };
    expect((await post(url, plain)).status).toBe(415);
    const avro = {
      headers: { "content-type": "application/cloudevents+avro" },
      body: new Uint8Array(4),
    };
    expect((await post(url, avro)).status).toBe(415);
  });
  it("answers a hostile Content-Type or header name with a bounded body, not the value echoed whole", async () => {
    const url = await serve({ onDelivery: () => undefined });
    // Node takes up to 16 KiB of headers; the answer quoted all of it before.
    const long = await post(url, {
      headers: { "content-type": `application/cloudevents+${"x".repeat(12_000)}` },
      body: new TextEncoder().encode("{}"),
    });
    expect(long.status).toBe(415);
    expect(long.text.length).toBeLessThan(2200);
    expect(long.text).toMatch(/more characters\)$/);
    const name = await post(url, toHttpMessage(event), { [`ce-${"a_".repeat(6000)}`]: "x" });
    expect(name.status).toBe(400);
    expect(name.text.length).toBeLessThan(2200);
  });
  it("answers 413 past maxBodyBytes, by Content-Length and when streamed without one", async () => {
    const url = await serve({ maxBodyBytes: 1000, onDelivery: () => undefined });
    const big = toHttpMessage(event.withData("x".repeat(2000), "text/plain"));
    expect((await post(url, big)).status).toBe(413);
    const chunks = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 5; i++) controller.enqueue(new Uint8Array(400).fill(65));
        controller.close();
      },
    });
    const response = await fetch(url, {
      method: "POST",
      headers: big.headers,
      body: chunks,
      duplex: "half",
    } as RequestInit);
    expect(response.status).toBe(413);
    await response.text();
  });
  it("answers 431 past maxHeaderCount", async () => {
    const url = await serve({ maxHeaderCount: 20, onDelivery: () => undefined });
    const extra: Record<string, string> = {};
    for (let i = 0; i < 30; i++) extra[`x-filler-${i}`] = "v";
    expect((await post(url, toHttpMessage(event), extra)).status).toBe(431);
  });
  it("answers 401 when authorize refuses, and reads bearer tokens from the header or access_token", async () => {
    const url = await serve({
      authorize: (c) => c === "Bearer s3cret",
      onDelivery: () => undefined,
    });
    expect((await post(url)).status).toBe(401);
    expect((await post(url, toHttpMessage(event), { authorization: "Bearer s3cret" })).status).toBe(
      204,
    );
    expect((await post(`${url}?access_token=s3cret`)).status).toBe(204);
  });
  it("answers 405 for GET", async () => {
    const url = await serve({ onDelivery: () => undefined });
    const response = await fetch(url);
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toContain("POST");
    await response.text();
  });
  it("accepts a batch only when every event is accepted; one release asks for all again", async () => {
    let n = 0;
    const url = await serve({ onDelivery: (d) => (n++ === 1 ? d.release() : d.accept()) });
    const batch = toHttpMessage([event, event.cloneWith({ id: "r-2" })], {
      mode: "batch",
      format: json,
    });
    expect((await post(url, batch)).status).toBe(503);
  });
  it("asks a released batch again after the longest delay any of its releases asked for", async () => {
    // The sender resends the whole batch once: the first release's Retry-After (here 1 s) sent
    // the event that asked for 30 s back after 1 s.
    const delays: Record<string, number | undefined> = {
      "b-1": 1000,
      "b-2": 30_000,
      "b-3": undefined,
      "b-4": 2000,
    };
    const url = await serve({
      defaultRetryAfterMs: 5000,
      onDelivery: (d) => {
        const delayMs = delays[d.event.id];
        return d.release(delayMs === undefined ? {} : { delayMs });
      },
    });
    const batch = toHttpMessage(
      Object.keys(delays).map((id) => event.cloneWith({ id })),
      { mode: "batch", format: json },
    );
    const r = await post(url, batch);
    expect({ status: r.status, retryAfter: r.headers.get("retry-after") }).toEqual({
      status: 503,
      retryAfter: "30",
    });
    // Without a delay of its own, a release counts as defaultRetryAfterMs.
    delays["b-2"] = undefined;
    const again = await post(url, batch);
    expect(again.headers.get("retry-after")).toBe("5");
  });
});

describe("HTTP receiver as a Subscriber", () => {
  it("is ready at once: with the server listening, an event posted then is delivered", async () => {
    const receiver = httpReceiver({ formats: [json] });
    await expect(receiver.ready).resolves.toBeUndefined();
    const server = await startServer(createNodeHandler(receiver));
    servers.push(server);
    const responding = post(server.url);
    const { value } = await receiver[Symbol.asyncIterator]().next();
    expect((value as Delivery | undefined)?.event?.id).toBe("r-1");
    await (value as Delivery).accept();
    expect((await responding).status).toBe(204);
    await receiver.close();
  });
  it("holds the response open until the delivery is settled", async () => {
    const receiver = httpReceiver({ formats: [json] });
    const server = await startServer(createNodeHandler(receiver));
    servers.push(server);
    const responding = post(server.url);
    const iterator = receiver[Symbol.asyncIterator]();
    const { value } = await iterator.next();
    const delivery = value as Delivery;
    expect(delivery.event?.id).toBe("r-1");
    expect(delivery.capabilities.release).toBe("native");
    await expect(delivery.inProgress()).rejects.toMatchObject({
      code: "NotSupported",
      // It said "this transport cannot extend ownership".
      message: expect.stringContaining("HTTP has no acknowledgement wait to extend"),
    });
    await delivery.release({ delayMs: 1000 });
    await expect(delivery.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
    const r = await responding;
    expect(r.status).toBe(503);
    expect(r.headers.get("retry-after")).toBe("1");
    await receiver.close();
  });
  it("refuses release({ delayMs: NaN }) instead of answering Retry-After: NaN; a valid release still answers", async () => {
    const receiver = httpReceiver({ formats: [json] });
    const server = await startServer(createNodeHandler(receiver));
    servers.push(server);
    const responding = post(server.url);
    const { value } = await receiver[Symbol.asyncIterator]().next();
    const delivery = value as Delivery;
    await expect(delivery.release({ delayMs: Number.NaN })).rejects.toMatchObject({
      code: "NotSupported",
    });
    await delivery.release({ delayMs: 2000 });
    const r = await responding;
    expect(r.status).toBe(503);
    expect(r.headers.get("retry-after")).toBe("2");
    await receiver.close();
  });
  it("settleTimeoutMs Infinity sets no limit: a delivery settled later is still answered 204", async () => {
    const overflows = watchTimerOverflows();
    try {
      const receiver = httpReceiver({ formats: [json], settleTimeoutMs: Infinity });
      const server = await startServer(createNodeHandler(receiver));
      servers.push(server);
      const responding = post(server.url);
      const { value } = await receiver[Symbol.asyncIterator]().next();
      // A timer set to Infinity fires after 1 ms: the request was answered 503 by then.
      await new Promise((resolve) => setTimeout(resolve, 50));
      await (value as Delivery).accept();
      expect((await responding).status).toBe(204);
      expect(overflows.count()).toBe(0);
      await receiver.close();
    } finally {
      overflows.stop();
    }
  });
  it("answers 503 when a delivery stays unsettled past settleTimeoutMs, and after close", async () => {
    const receiver = httpReceiver({ formats: [json], settleTimeoutMs: 100 });
    const server = await startServer(createNodeHandler(receiver));
    servers.push(server);
    expect((await post(server.url)).status).toBe(503);
    await receiver.close();
    expect((await post(server.url)).status).toBe(503);
  });
  it("gives a batch's deliveries one settleTimeoutMs timer, not one each", async () => {
    // A timer per delivery: a 1 MiB batch of 19,000 minimal events set 19,000 timers.
    const receiver = httpReceiver({ formats: [json], settleTimeoutMs: 60_000 });
    const server = await startServer(createNodeHandler(receiver));
    servers.push(server);
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    const events = Array.from({ length: 200 }, (_, i) => event.cloneWith({ id: `one-timer-${i}` }));
    const responding = post(server.url, toHttpMessage(events, { mode: "batch", format: json }));
    const iterator = receiver[Symbol.asyncIterator]();
    const held: Delivery[] = [];
    for (let i = 0; i < 200; i++) held.push((await iterator.next()).value as Delivery);
    // The request's own timer, and a few of the HTTP client's and server's at most.
    expect(timers() - before).toBeLessThan(10);
    for (const d of held) await d.accept();
    expect((await responding).status).toBe(204);
    await receiver.close();
  });
  it("releases every delivery of a batch still unsettled after settleTimeoutMs, together", async () => {
    const receiver = httpReceiver({ formats: [json], settleTimeoutMs: 200 });
    const server = await startServer(createNodeHandler(receiver));
    servers.push(server);
    const events = ["t-1", "t-2", "t-3"].map((id) => event.cloneWith({ id }));
    const started = Date.now();
    const responding = post(server.url, toHttpMessage(events, { mode: "batch", format: json }));
    const iterator = receiver[Symbol.asyncIterator]();
    const held: Delivery[] = [];
    for (let i = 0; i < 3; i++) held.push((await iterator.next()).value as Delivery);
    await held[0]?.accept();
    const r = await responding;
    expect(r.status).toBe(503);
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    for (const d of held.slice(1)) {
      await expect(d.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
    }
    await receiver.close();
  });
  it("answers the webhook handshake (OPTIONS) 503 after close, granting nothing, like every other request", async () => {
    const receiver = httpReceiver({ formats: [json], webhook: { allowedOrigins: "*" } });
    const server = await startServer(createNodeHandler(receiver));
    servers.push(server);
    const handshake = () =>
      fetch(server.url, {
        method: "OPTIONS",
        headers: { "webhook-request-origin": "sender.example" },
      });
    const open = await handshake();
    expect(open.status).toBe(200);
    expect(open.headers.get("webhook-allowed-origin")).toBe("*");
    await receiver.close();
    for (const response of [
      await handshake(),
      // Not a validation request (no WebHook-Request-Origin): 204 with Allow while open.
      await fetch(server.url, { method: "OPTIONS" }),
    ]) {
      expect(response.status).toBe(503);
      expect(response.headers.get("retry-after")).toBe("1");
      expect(response.headers.get("webhook-allowed-origin")).toBeNull();
      expect(await response.text()).toContain("closed");
    }
  });
  it("answers the handshake with the same Allow as its other answers, and says which callback failed", async () => {
    const url = await serve({
      webhook: {
        allowedOrigins: (origin) => {
          if (origin === "broken.example") throw new Error("lookup down");
          return origin === "sender.example";
        },
        onCallback: () => {
          throw new Error("queue down");
        },
      },
    });
    const options = (headers: Record<string, string>) => fetch(url, { method: "OPTIONS", headers });
    for (const origin of ["sender.example", "other.example"]) {
      const response = await options({ "webhook-request-origin": origin });
      expect(response.status).toBe(origin === "sender.example" ? 200 : 403);
      expect(response.headers.get("allow")).toBe("POST, PUT, OPTIONS");
    }
    for (const headers of [
      { "webhook-request-origin": "broken.example" },
      {
        "webhook-request-origin": "other.example",
        "webhook-request-callback": "https://other.example/ok",
      },
    ]) {
      const response = await options(headers);
      expect(response.status).toBe(500);
      expect(await response.text()).toBe(
        "the webhook callback (allowedOrigins or onCallback) failed",
      );
    }
  });
  it("answers a handshake whose allowedOrigins check is still running at close() 503 at once", async () => {
    const receiver = httpReceiver({
      formats: [json],
      webhook: {
        allowedOrigins: () => new Promise<boolean>((r) => setTimeout(() => r(true), 3000)),
      },
    });
    const server = await startServer(createNodeHandler(receiver));
    servers.push(server);
    const answered = fetch(server.url, {
      method: "OPTIONS",
      headers: { "webhook-request-origin": "sender.example" },
    });
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await receiver.close();
    const response = await answered;
    expect(response.status).toBe(503);
    expect(response.headers.get("webhook-allowed-origin")).toBeNull();
    expect(Date.now() - started).toBeLessThan(1500);
  });
  it("leaving a for-await loop closes it: the delivery in hand and later requests are answered 503 at once, not after settleTimeoutMs", async () => {
    // The default settleTimeoutMs (30 s): a request left waiting for a loop nobody runs any more
    // would be answered only then.
    const receiver = httpReceiver({ formats: [json] });
    const server = await startServer(createNodeHandler(receiver));
    servers.push(server);
    const inHand = post(server.url);
    let kept: Delivery | undefined;
    for await (const d of receiver) {
      kept = d;
      break;
    }
    expect(kept?.event?.id).toBe("r-1");
    const started = Date.now();
    const first = await inHand;
    expect(first.status).toBe(503);
    expect(first.headers.get("retry-after")).toBe("1");
    await expect(kept?.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
    const later = await post(server.url);
    expect(later.status).toBe(503);
    expect(later.text).toContain("closed");
    // Far below the 30 s settle timeout the requests waited for before; slack for a loaded machine.
    expect(Date.now() - started).toBeLessThan(8000);
  }, 20_000);
});

describe("HTTP receiver close() with drainTimeoutMs", () => {
  /** A receiver behind a server, and a way to post to it. */
  async function served(options: HttpReceiverOptions) {
    const receiver = httpReceiver({ formats: [json], ...options });
    const server = await startServer(createNodeHandler(receiver));
    servers.push(server);
    return { receiver, url: server.url };
  }

  it("a delivery in hand settled within the window gets its real answer, and close waits for it", async () => {
    const { receiver, url } = await served({ drainTimeoutMs: 5000 });
    const inHand = post(url);
    const iterator = receiver[Symbol.asyncIterator]();
    const delivery = (await iterator.next()).value as Delivery;
    // Not handed out yet when close() starts: answered 503 at once, as without a drain.
    const queued = post(url, toHttpMessage(event.cloneWith({ id: "r-2" })));
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    let closedAt = 0;
    const closing = receiver.close().then(() => {
      closedAt = Date.now();
    });
    const queuedAnswer = await queued;
    expect(queuedAnswer.status).toBe(503);
    expect(queuedAnswer.headers.get("retry-after")).toBe("1");
    await new Promise((r) => setTimeout(r, 200));
    expect(closedAt).toBe(0);
    // New requests are refused while close() waits.
    expect((await post(url)).status).toBe(503);
    await delivery.accept();
    await closing;
    expect((await inHand).status).toBe(204);
    expect(closedAt - started).toBeGreaterThanOrEqual(200);
    expect(closedAt - started).toBeLessThan(3000);
    // Calling it again gives the same, settled promise.
    await receiver.close();
  });

  it("an onDelivery handler still running finishes within the window", async () => {
    let release: (() => void) | undefined;
    let entered: (() => void) | undefined;
    const started = new Promise<void>((r) => {
      entered = r;
    });
    const { receiver, url } = await served({
      drainTimeoutMs: 5000,
      onDelivery: () =>
        new Promise<void>((r) => {
          release = r;
          entered?.();
        }),
    });
    const answer = post(url);
    await started;
    const closing = receiver.close();
    setTimeout(() => release?.(), 150);
    await closing;
    expect((await answer).status).toBe(204);
  });

  it("past the window the rest is released (503), and settling it then fails", async () => {
    const { receiver, url } = await served({ drainTimeoutMs: 300 });
    const inHand = post(url);
    const delivery = (await receiver[Symbol.asyncIterator]().next()).value as Delivery;
    const started = Date.now();
    await receiver.close();
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(3000);
    const answer = await inHand;
    expect(answer.status).toBe(503);
    expect(answer.headers.get("retry-after")).toBe("1");
    await expect(delivery.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
  });

  it("a request whose body is still arriving when close() is called is answered 503 at once, before the sender finishes", async () => {
    const { receiver, url } = await served({});
    const message = toHttpMessage(event);
    const body = message.body as Uint8Array;
    const { request } = await import("node:http");
    let closedAt = 0;
    const req = request(url, {
      method: "POST",
      headers: { ...message.headers, "content-length": String(body.length) },
    });
    const answered = new Promise<{ status: number; at: number; close: string | undefined }>(
      (resolve, reject) => {
        req.on("response", (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, at: Date.now(), close: res.headers.connection });
        });
        req.on("error", reject);
      },
    );
    // Half the body, and the rest never: the answer came only once the sender sent it.
    req.write(body.subarray(0, 4));
    setTimeout(() => {
      closedAt = Date.now();
      void receiver.close();
    }, 100);
    const { status, at, close } = await answered;
    req.destroy();
    expect(status).toBe(503);
    expect(close).toBe("close");
    expect(at - closedAt).toBeLessThan(1000);
  });

  it("a request whose body arrives after close() is answered 503 at once, not after settleTimeoutMs", async () => {
    const { receiver, url } = await served({});
    const message = toHttpMessage(event);
    const body = message.body as Uint8Array;
    // The headers and half the body now, the rest once the receiver closed.
    const { request } = await import("node:http");
    const answered = new Promise<{ status: number; at: number }>((resolve, reject) => {
      const req = request(
        url,
        {
          method: "POST",
          headers: { ...message.headers, "content-length": String(body.length) },
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0, at: Date.now() }));
        },
      );
      req.on("error", reject);
      req.write(body.subarray(0, 4));
      setTimeout(async () => {
        await receiver.close();
        req.end(body.subarray(4));
      }, 100);
    });
    const started = Date.now();
    const { status, at } = await answered;
    expect(status).toBe(503);
    expect(at - started).toBeLessThan(3000);
  }, 40_000);
});
