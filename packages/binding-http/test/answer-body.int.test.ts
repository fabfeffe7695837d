// Once an answer's status line and headers are in, the publish is settled by them: a 2xx is the
// receiver's acceptance (http-webhook.md 2.2), whatever its body does next. A body that never
// ends, trickles, or is cut off must not time the attempt out and send the event again, nor leave
// a connection with a body still coming down it for the next request.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { httpPublisher } from "@posthorn/binding-http";
import { afterAll, describe, expect, it } from "vitest";
import { failure, SENDERS, startServer, type TestServer, textEvent } from "./servers.js";

const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

/**
 * A server whose first answer is `first` (it owns the response after the request body is read)
 * and whose later answers are 204. It records the requests' ids and whether the connection that
 * carried the first one has closed.
 */
async function server(first: (res: ServerResponse) => void) {
  const ids: string[] = [];
  let firstClosed = false;
  const s = await startServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on("end", () => {
      ids.push(String(req.headers["ce-id"]));
      if (ids.length === 1) {
        (req.socket as Socket).on("close", () => {
          firstClosed = true;
        });
        first(res);
      } else res.writeHead(204).end();
    });
  });
  servers.push(s);
  return { url: s.url, ids, firstClosed: () => firstClosed };
}

async function until(check: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

// Short attempts, so that a publisher still waiting for the body times out (and resends) well
// within the test's time.
const RETRY = { maxAttempts: 2, attemptTimeoutMs: 1500, baseDelayMs: 10 };

describe.each(SENDERS)("an answer's body, over $name", ({ options }) => {
  it("a 200 whose body never ends is delivered, sent once; its connection is dropped and the next publish works", async () => {
    const target = await server((res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("accepted, and then nothing more");
    });
    const publisher = httpPublisher({ url: target.url, retry: RETRY, ...options });
    const started = Date.now();
    await publisher.publish(textEvent("hang-1", "/body"));
    expect(Date.now() - started).toBeLessThan(1000);
    expect(target.ids).toEqual(["hang-1"]);
    // The connection with the unfinished body is closed, not reused for the next request.
    await until(target.firstClosed, 3000);
    await publisher.publish(textEvent("hang-2", "/body"));
    expect(target.ids).toEqual(["hang-1", "hang-2"]);
    await publisher.close();
  });

  it("a 202 whose body trickles in is delivered at once", async () => {
    const target = await server((res) => {
      res.writeHead(202, { "content-type": "text/plain" });
      const tick = setInterval(() => {
        if (res.destroyed) clearInterval(tick);
        else res.write(".");
      }, 100);
      res.on("close", () => clearInterval(tick));
    });
    const publisher = httpPublisher({ url: target.url, retry: RETRY, ...options });
    const started = Date.now();
    await publisher.publish(textEvent("slow-1", "/body"));
    expect(Date.now() - started).toBeLessThan(1000);
    await publisher.publish(textEvent("slow-2", "/body"));
    expect(target.ids).toEqual(["slow-1", "slow-2"]);
    await publisher.close();
  });

  it("a 200 cut off mid-body is delivered, not retried", async () => {
    const target = await server((res) => {
      res.writeHead(200, { "content-length": "100" });
      res.write("only part of it");
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const publisher = httpPublisher({ url: target.url, retry: RETRY, ...options });
    await publisher.publish(textEvent("cut-1", "/body"));
    await publisher.publish(textEvent("cut-2", "/body"));
    expect(target.ids).toEqual(["cut-1", "cut-2"]);
    await publisher.close();
  });

  it("a 503 whose body never ends is its status (with what came of the body), not a Timeout", async () => {
    const target = await server((res) => {
      res.writeHead(503, { "content-type": "text/plain", "retry-after": "0" });
      res.write("busy");
    });
    const publisher = httpPublisher({ url: target.url, retry: false, ...options });
    const err = await failure(publisher.publish(textEvent("busy-1", "/body")));
    expect(err.code).toBe("PublishRejected");
    expect(err.protocolCode).toBe(503);
    expect(err.retryable).toBe(true);
    expect(err.message).toContain("busy");
    await publisher.close();
  });

  it("a 400 cut off mid-body is final, as a 400 is", async () => {
    const target = await server((res) => {
      res.writeHead(400, { "content-length": "100" });
      res.write("bad event");
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const publisher = httpPublisher({ url: target.url, retry: RETRY, ...options });
    const err = await failure(publisher.publish(textEvent("bad-1", "/body")));
    expect(err.code).toBe("PublishRejected");
    expect(err.protocolCode).toBe(400);
    expect(err.retryable).toBe(false);
    expect(target.ids).toEqual(["bad-1"]);
    await publisher.close();
  });

  it("a 400 whose body outlasts attemptTimeoutMs is final, sent once, not a retryable Timeout", async () => {
    const target = await server((res) => {
      res.writeHead(400, { "content-type": "text/plain" });
      res.write("bad event");
    });
    const publisher = httpPublisher({
      url: target.url,
      retry: { maxAttempts: 3, attemptTimeoutMs: 300, baseDelayMs: 10 },
      ...options,
    });
    // Over node:http it was a Timeout, and the event was sent three times.
    const err = await failure(publisher.publish(textEvent("slow-bad-1", "/body")));
    expect(err).toMatchObject({ code: "PublishRejected", protocolCode: 400, retryable: false });
    expect(err.message).toContain("bad event");
    expect(target.ids).toEqual(["slow-bad-1"]);
    await publisher.close();
  });

  it("a 429 whose body outlasts attemptTimeoutMs still holds the publisher for its Retry-After", async () => {
    const target = await server((res) => {
      res.writeHead(429, { "content-type": "text/plain", "retry-after": "30" });
      res.write("slow down");
    });
    const publisher = httpPublisher({
      url: target.url,
      retry: { maxAttempts: 3, attemptTimeoutMs: 300, baseDelayMs: 10, maxDelayMs: 60_000 },
      ...options,
    });
    const first = await failure(
      publisher.publish(textEvent("slow-429-1", "/body"), { timeoutMs: 1000 }),
    );
    expect(first).toMatchObject({ code: "PublishRejected", protocolCode: 429, retryable: true });
    // The next publish is held by the Retry-After, nothing sent (it went out: the 429 was lost).
    const second = await failure(
      publisher.publish(textEvent("slow-429-2", "/body"), { timeoutMs: 1000 }),
    );
    expect(second).toMatchObject({ code: "PublishRejected", protocolCode: 429 });
    expect(target.ids).toEqual(["slow-429-1"]);
    await publisher.close();
  });
});
