import type { IncomingMessage, ServerResponse } from "node:http";
import { createNodeHandler, httpPublisher, httpReceiver } from "@posthorn/binding-http";
import type { CloudEvent } from "@posthorn/core";
import { afterAll, describe, expect, it } from "vitest";
import { failure, SENDERS, startServer, type TestServer, textEvent } from "./servers.js";

const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

const event = (id: string): CloudEvent => textEvent(id, "/timeout");

interface Seen {
  /** performance.now() when the request's body had arrived. */
  at: number;
  /** performance.now() when the request's connection closed or it was answered. */
  ended?: number;
}

/**
 * A node:http server that answers every request with `answer` after `delayMs` (never, when
 * `delayMs` is `undefined`), recording when each request arrived and when it ended.
 */
async function slowServer(
  delayMs: number | undefined,
  answer: { status: number; headers?: Record<string, string> },
) {
  const seen: Seen[] = [];
  const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
    const entry: Seen = { at: 0 };
    seen.push(entry);
    res.on("close", () => {
      entry.ended = performance.now();
    });
    req.resume();
    req.on("end", () => {
      entry.at = performance.now();
      if (delayMs === undefined) return;
      const timer = setTimeout(() => {
        res.writeHead(answer.status, answer.headers ?? {});
        res.end();
      }, delayMs);
      res.on("close", () => clearTimeout(timer));
    });
  });
  servers.push(server);
  return { url: server.url, seen };
}

async function until(check: () => boolean, ms = 2000): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Runs `publish` and returns how long it took to settle and the error it rejected with. */
async function timed(publish: () => Promise<void>) {
  const start = performance.now();
  const err = await failure(publish());
  return { err, ms: performance.now() - start, start };
}

describe.each(SENDERS)("over $name", ({ options: sender }) => {
  describe("httpPublisher timeoutMs bounds the whole call", () => {
    it("a 503 after 1 s on every attempt: Timeout at 1.5 s, the second attempt cut off", {
      timeout: 10_000,
    }, async () => {
      const { url, seen } = await slowServer(1000, { status: 503 });
      const publisher = httpPublisher({
        ...sender,
        url,
        timeoutMs: 1500,
        retry: { maxAttempts: 3, baseDelayMs: 10 },
      });
      const { err, ms } = await timed(() => publisher.publish(event("slow-503")));
      expect(err).toMatchObject({ code: "Timeout", retryable: true });
      expect(err.message).toContain("timeoutMs 1500 ms");
      expect(err.message).toContain("answered 503");
      expect(ms).toBeGreaterThanOrEqual(1450);
      expect(ms).toBeLessThan(2200);
      expect(seen).toHaveLength(2);
    });

    it("503 with Retry-After: 1 forever and timeoutMs 1500: fails with the 503 once the next Retry-After would end past the deadline", {
      timeout: 10_000,
    }, async () => {
      const { url, seen } = await slowServer(0, { status: 503, headers: { "retry-after": "1" } });
      const publisher = httpPublisher({
        ...sender,
        url,
        timeoutMs: 1500,
        retry: { maxAttempts: 5, baseDelayMs: 10 },
      });
      const { err, ms } = await timed(() => publisher.publish(event("retry-after")));
      // The first Retry-After (1 s) fits in 1.5 s and is waited out; the second would end at about
      // 2 s, so the call fails at once with the receiver's answer instead of sleeping past it.
      expect(err).toMatchObject({ code: "PublishRejected", protocolCode: 503, retryable: true });
      expect(err.message).toContain("timeoutMs 1500 ms");
      expect(seen).toHaveLength(2);
      expect(ms).toBeGreaterThanOrEqual(950);
      expect(ms).toBeLessThan(1500);
    });

    it("a backoff that would outlast the call is cut short at the deadline with Timeout", {
      timeout: 5000,
    }, async () => {
      const { url, seen } = await slowServer(0, { status: 503 });
      const publisher = httpPublisher({
        ...sender,
        url,
        timeoutMs: 800,
        retry: { maxAttempts: 3, baseDelayMs: 5000, maxDelayMs: 10_000 },
      });
      const { err, ms } = await timed(() => publisher.publish(event("backoff")));
      expect(err).toMatchObject({ code: "Timeout", retryable: true });
      expect(err.message).toContain("answered 503");
      expect(ms).toBeGreaterThanOrEqual(750);
      expect(ms).toBeLessThan(1500);
      expect(seen).toHaveLength(1);
    });

    it("an attempt never outlives the call: per-call timeoutMs 400 under attemptTimeoutMs 5000", {
      timeout: 10_000,
    }, async () => {
      const { url, seen } = await slowServer(undefined, { status: 204 });
      const publisher = httpPublisher({
        ...sender,
        url,
        timeoutMs: 10_000,
        retry: { maxAttempts: 3, baseDelayMs: 1, attemptTimeoutMs: 5000 },
      });
      const { err, ms } = await timed(() =>
        publisher.publish(event("per-call"), { timeoutMs: 400 }),
      );
      expect(err).toMatchObject({ code: "Timeout", retryable: true });
      expect(err.message).toContain("timeoutMs 400 ms");
      expect(ms).toBeGreaterThanOrEqual(350);
      expect(ms).toBeLessThan(1000);
      expect(seen).toHaveLength(1);
    });

    it("an array in binary mode shares one budget: the third request is cut off at 1 s", {
      timeout: 10_000,
    }, async () => {
      const { url, seen } = await slowServer(400, { status: 204 });
      const publisher = httpPublisher({
        ...sender,
        url,
        timeoutMs: 1000,
      });
      const { err, ms } = await timed(() =>
        publisher.publish([event("a-1"), event("a-2"), event("a-3")]),
      );
      expect(err).toMatchObject({ code: "Timeout" });
      expect(ms).toBeGreaterThanOrEqual(950);
      expect(ms).toBeLessThan(1600);
      expect(seen).toHaveLength(3);
    });

    it("the caller's abortSignal cuts a backoff short with Aborted", {
      timeout: 5000,
    }, async () => {
      const { url, seen } = await slowServer(0, { status: 503 });
      const publisher = httpPublisher({
        ...sender,
        url,
        timeoutMs: 10_000,
        retry: { maxAttempts: 3, baseDelayMs: 4000 },
      });
      const { err, ms } = await timed(() =>
        publisher.publish(event("abort"), { abortSignal: AbortSignal.timeout(300) }),
      );
      expect(err.code).toBe("Aborted");
      expect(ms).toBeGreaterThanOrEqual(250);
      expect(ms).toBeLessThan(1000);
      expect(seen).toHaveLength(1);
    });
  });

  describe("httpPublisher timeoutMs and the authorization callback", () => {
    it("a callback that never answers ends the call with Timeout at timeoutMs, nothing sent", async () => {
      const { url, seen } = await slowServer(0, { status: 204 });
      const publisher = httpPublisher({
        ...sender,
        url,
        authorization: () => new Promise<string>(() => {}),
      });
      const { err, ms } = await timed(() => publisher.publish(event("auth-1"), { timeoutMs: 300 }));
      expect(err?.code).toBe("Timeout");
      expect(ms).toBeGreaterThanOrEqual(280);
      expect(ms).toBeLessThan(1500);
      expect(seen).toHaveLength(0);
    });

    it("the caller's abortSignal ends the wait for the callback with Aborted", async () => {
      const { url, seen } = await slowServer(0, { status: 204 });
      const publisher = httpPublisher({
        ...sender,
        url,
        authorization: () => new Promise<string>(() => {}),
      });
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      const { err } = await timed(() =>
        publisher.publish(event("auth-2"), { abortSignal: controller.signal }),
      );
      expect(err?.code).toBe("Aborted");
      expect(seen).toHaveLength(0);
    });

    it("without timeoutMs, a callback that never answers ends the call at retry.attemptTimeoutMs, and close() returns", async () => {
      const { url, seen } = await slowServer(0, { status: 204 });
      const publisher = httpPublisher({
        ...sender,
        url,
        retry: { maxAttempts: 3, attemptTimeoutMs: 300 },
        authorization: () => new Promise<string>(() => {}),
      });
      // It never settled, and close(), which waits for publishes in flight, never returned.
      const { err, ms } = await timed(() => publisher.publish(event("auth-3")));
      expect(err).toMatchObject({ code: "Timeout", retryable: true, attribute: "authorization" });
      expect(ms).toBeGreaterThanOrEqual(280);
      expect(ms).toBeLessThan(1500);
      expect(seen).toHaveLength(0);
      await publisher.close();
    });

    it("the handshake's callback is bounded by webhook.timeoutMs: the publish fails, nothing sent", async () => {
      const { url, seen } = await slowServer(0, { status: 204 });
      const publisher = httpPublisher({
        ...sender,
        url,
        webhook: { origin: "sender.example", timeoutMs: 300 },
        authorization: () => new Promise<string>(() => {}),
      });
      const { err, ms } = await timed(() => publisher.publish(event("auth-4")));
      expect(err).toMatchObject({ code: "Timeout", attribute: "authorization" });
      expect(ms).toBeLessThan(1500);
      expect(seen).toHaveLength(0);
      await publisher.close();
    });
  });

  describe("httpPublisher retry.attemptTimeoutMs", () => {
    it("a receiver that never answers: each of 3 attempts aborted at 300 ms, then Timeout", {
      timeout: 10_000,
    }, async () => {
      const { url, seen } = await slowServer(undefined, { status: 204 });
      const publisher = httpPublisher({
        ...sender,
        url,
        retry: { maxAttempts: 3, baseDelayMs: 1, attemptTimeoutMs: 300 },
      });
      const { err, ms } = await timed(() => publisher.publish(event("attempts")));
      expect(err).toMatchObject({ code: "Timeout", retryable: true });
      expect(err.message).toContain("300 ms");
      expect(seen).toHaveLength(3);
      expect(ms).toBeGreaterThanOrEqual(850);
      expect(ms).toBeLessThan(2500);
      // Each attempt's connection is closed by the abort about 300 ms after its request arrived
      // (the server sees the last close a moment after the publish rejects).
      await until(() => seen.every((s) => s.ended !== undefined));
      for (const s of seen) {
        expect(s.ended).toBeDefined();
        const lived = (s.ended as number) - s.at;
        expect(lived).toBeGreaterThanOrEqual(250);
        expect(lived).toBeLessThan(800);
      }
    });
  });

  describe("httpPublisher timeoutMs with webhooks", () => {
    it("bounds the wait for an approval by callback", { timeout: 10_000 }, async () => {
      const handler = createNodeHandler(
        httpReceiver({
          // Grants nobody at once: the sender waits for its callback URL to be called.
          webhook: { allowedOrigins: ["other.example"], onCallback: () => undefined },
          onDelivery: () => undefined,
        }),
      );
      const target = await startServer(handler);
      servers.push(target);
      const publisher = httpPublisher({
        ...sender,
        url: target.url,
        webhook: { origin: "sender.example", callbackUrl: "http://127.0.0.1:9/confirm" },
      });
      const { err, ms } = await timed(() =>
        publisher.publish(event("approval"), { timeoutMs: 500 }),
      );
      expect(err).toMatchObject({ code: "Timeout", retryable: true });
      expect(ms).toBeGreaterThanOrEqual(450);
      expect(ms).toBeLessThan(1500);
      await publisher.close();
    });

    it("bounds the wait for the granted rate; the publish that times out is never sent", {
      timeout: 10_000,
    }, async () => {
      const posts: string[] = [];
      const handler = createNodeHandler(
        httpReceiver({
          webhook: { allowedOrigins: ["sender.example"], allowedRate: 30 }, // one per 2 s
          onDelivery: (d) => void posts.push(d.event?.id ?? ""),
        }),
      );
      const target = await startServer(handler);
      servers.push(target);
      const publisher = httpPublisher({
        ...sender,
        url: target.url,
        webhook: { origin: "sender.example" },
      });
      await publisher.publish(event("first"));
      const { err, ms } = await timed(() => publisher.publish(event("second"), { timeoutMs: 300 }));
      expect(err).toMatchObject({ code: "Timeout", retryable: true });
      expect(ms).toBeGreaterThanOrEqual(250);
      expect(ms).toBeLessThan(1200);
      await new Promise((r) => setTimeout(r, 100));
      expect(posts).toEqual(["first"]);
    });
  });
});
