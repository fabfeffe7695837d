import type { IncomingMessage, ServerResponse } from "node:http";
import {
  createNodeHandler,
  type HttpReceiver,
  httpPublisher,
  httpReceiver,
  parseRetryAfter,
} from "@posthorn/binding-http";
import { CloudEvent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { watchTimerOverflows } from "@posthorn/testkit";
import { afterAll, describe, expect, it } from "vitest";
import { failure, SENDERS, startServer, type TestServer } from "./servers.js";

const event = new CloudEvent({
  specversion: "1.0",
  id: "p-1",
  source: "/pub",
  type: "t",
  data: "x",
  datacontenttype: "text/plain",
});
const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

/** A server answering with the scripted statuses in turn (then 204), recording each request. */
async function scripted(
  answers: Array<{ status: number; headers?: Record<string, string>; body?: string }>,
) {
  const seen: Array<{ method: string; headers: IncomingMessage["headers"]; at: number }> = [];
  const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on("end", () => {
      seen.push({ method: req.method ?? "", headers: req.headers, at: Date.now() });
      const next = answers.shift() ?? { status: 204 };
      res.writeHead(next.status, next.headers ?? {});
      res.end(next.body);
    });
  });
  servers.push(server);
  return { url: server.url, seen };
}

/** A server in front of `receiver` that records the method of every request it gets. */
async function recordingMethods(receiver: HttpReceiver) {
  const methods: string[] = [];
  const handler = createNodeHandler(receiver);
  const server = await startServer((req, res) => {
    methods.push(req.method ?? "");
    handler(req, res);
  });
  servers.push(server);
  return { server, methods };
}

describe.each(SENDERS)("over $name", ({ options: sender }) => {
  it("Infinity as every time limit sets none: a slow answer is waited for", async () => {
    const overflows = watchTimerOverflows();
    try {
      const server = await startServer((req, res) => {
        req.resume();
        req.on("end", () => {
          // Slower than the 1 ms after which a timer set to Infinity fires.
          setTimeout(() => {
            res.writeHead(204);
            res.end();
          }, 30);
        });
      });
      servers.push(server);
      const publisher = httpPublisher({
        ...sender,
        url: server.url,
        timeoutMs: Infinity,
        retry: { attemptTimeoutMs: Infinity, maxDelayMs: Infinity },
      });
      await expect(publisher.publish(event)).resolves.toBeUndefined();
      await expect(publisher.publish(event, { timeoutMs: 2 ** 40 })).resolves.toBeUndefined();
      expect(overflows.count()).toBe(0);
      await publisher.close();
    } finally {
      overflows.stop();
    }
  });

  describe("httpPublisher retries", () => {
    it("a 400 is final, and its answer's text is in the error", async () => {
      const { url, seen } = await scripted([
        {
          status: 400,
          headers: { "content-type": "text/plain" },
          body: "ce-id is missing ünd more",
        },
      ]);
      const publisher = httpPublisher({
        ...sender,
        url,
        retry: { maxAttempts: 3, baseDelayMs: 10 },
      });
      const err = await failure(publisher.publish(event));
      expect(err.code).toBe("PublishRejected");
      expect(err.protocolCode).toBe(400);
      expect(err.retryable).toBe(false);
      expect(err.message).toContain("answered 400: ce-id is missing ünd more");
      expect(seen).toHaveLength(1);
    });

    it("follows no redirect: a 3xx fails the publish with its status, and where it points gets nothing", async () => {
      // fetch would follow them: a 301, 302 or 303 as a GET without the event (answered 2xx,
      // the publish would have looked delivered), a 307 or 308 to wherever the answer points.
      for (const status of [301, 302, 303, 307, 308]) {
        const target = await scripted([]);
        const { url, seen } = await scripted([{ status, headers: { location: target.url } }]);
        const publisher = httpPublisher({
          ...sender,
          url,
          retry: { maxAttempts: 3, baseDelayMs: 10 },
        });
        const err = await failure(publisher.publish(event));
        expect(err.code, String(status)).toBe("PublishRejected");
        expect(err.protocolCode).toBe(status);
        expect(err.retryable).toBe(false);
        expect(err.message).toContain(`answered ${status}`);
        expect(seen).toHaveLength(1);
        expect(target.seen).toHaveLength(0);
        await publisher.close();
      }
    });

    it("waits out Retry-After on 429, then delivers", async () => {
      const { url, seen } = await scripted([{ status: 429, headers: { "retry-after": "1" } }]);
      const publisher = httpPublisher({
        ...sender,
        url,
        retry: { maxAttempts: 3, baseDelayMs: 10 },
      });
      await publisher.publish(event);
      expect(seen).toHaveLength(2);
      expect((seen[1]?.at ?? 0) - (seen[0]?.at ?? 0)).toBeGreaterThanOrEqual(950);
    });
    it("retries 503 with backoff when there is no Retry-After", async () => {
      const { url, seen } = await scripted([{ status: 503 }, { status: 503 }]);
      await httpPublisher({
        ...sender,
        url,
        retry: { maxAttempts: 3, baseDelayMs: 20 },
      }).publish(event);
      expect(seen).toHaveLength(3);
    });
    it("retries a 5xx (a handler that failed, a proxy whose receiver is away), then delivers", async () => {
      for (const status of [500, 502, 504, 507]) {
        const { url, seen } = await scripted([{ status }]);
        await httpPublisher({
          ...sender,
          url,
          retry: { maxAttempts: 3, baseDelayMs: 10 },
        }).publish(event);
        expect(seen, String(status)).toHaveLength(2);
      }
    });
    it("retries a 408 (the receiver's requestTimeoutMs passed before the body arrived), then delivers", async () => {
      const { url, seen } = await scripted([{ status: 408, headers: { connection: "close" } }]);
      await httpPublisher({ ...sender, url, retry: { baseDelayMs: 10 } }).publish(event);
      expect(seen).toHaveLength(2);
    });
    it("never retries another 4xx, nor 501 or 505 (the server cannot take such a request at all), and reports the status as protocolCode", async () => {
      for (const status of [400, 401, 404, 413, 415, 422, 501, 505]) {
        const { url, seen } = await scripted([{ status }]);
        const err = await failure(
          httpPublisher({
            ...sender,
            url,
            retry: { maxAttempts: 5, baseDelayMs: 1 },
          }).publish(event),
        );
        expect(err.code).toBe("PublishRejected");
        expect(err.protocolCode).toBe(status);
        expect(err.retryable).toBe(false);
        expect(seen).toHaveLength(1);
      }
    });
    it("gives up after maxAttempts with a retryable PublishRejected", async () => {
      const { url, seen } = await scripted([{ status: 503 }, { status: 503 }, { status: 503 }]);
      const err = await failure(
        httpPublisher({
          ...sender,
          url,
          retry: { maxAttempts: 2, baseDelayMs: 1 },
        }).publish(event),
      );
      expect(err).toMatchObject({ code: "PublishRejected", protocolCode: 503, retryable: true });
      expect(seen).toHaveLength(2);
    });
    it("does not wait a Retry-After longer than maxDelayMs", async () => {
      const { url, seen } = await scripted([{ status: 429, headers: { "retry-after": "120" } }]);
      const err = await failure(
        httpPublisher({
          ...sender,
          url,
          retry: { maxDelayMs: 1000 },
        }).publish(event),
      );
      expect(err).toMatchObject({ code: "PublishRejected", protocolCode: 429, retryable: true });
      expect(seen).toHaveLength(1);
    });
    it("fails with Timeout when the receiver does not answer in time", async () => {
      const server = await startServer(() => undefined); // never answers
      servers.push(server);
      const err = await failure(
        httpPublisher({
          ...sender,
          url: server.url,
          timeoutMs: 100,
          retry: false,
        }).publish(event),
      );
      expect(err).toMatchObject({ code: "Timeout", retryable: true });
    });
    it("fails with a retryable ConnectionFailed when nothing listens", async () => {
      const server = await startServer(() => undefined);
      const url = server.url;
      await server.close();
      const err = await failure(
        httpPublisher({
          ...sender,
          url,
          retry: { maxAttempts: 2, baseDelayMs: 1 },
        }).publish(event),
      );
      expect(err).toMatchObject({ code: "ConnectionFailed", retryable: true });
    });
    it("fails with Aborted when the caller's signal fires", async () => {
      const server = await startServer(() => undefined);
      servers.push(server);
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 50);
      const err = await failure(
        httpPublisher({
          ...sender,
          url: server.url,
        }).publish(event, { abortSignal: controller.signal }),
      );
      expect(err.code).toBe("Aborted");
    });
    it("reads Retry-After as seconds or an HTTP-date", () => {
      expect(parseRetryAfter("3")).toBe(3000);
      expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
      expect(parseRetryAfter("soon")).toBeUndefined();
    });
    it("ignores a Retry-After that is neither whole seconds nor an HTTP-date", () => {
      // Date.parse reads these as dates in 2001, which made them "retry at once".
      for (const value of ["1.5", "-1", "+3", "1e3", "10s", "May 2"]) {
        expect(parseRetryAfter(value, 5_000)).toBeUndefined();
      }
      expect(parseRetryAfter("Thu, 01 Jan 1970 00:00:10 GMT", 4_000)).toBe(6000);
      expect(parseRetryAfter("Thursday, 01-Jan-70 00:00:10 GMT", 4_000)).toBe(6000);
      // asctime carries no zone and means GMT, whatever the local time zone.
      expect(parseRetryAfter("Thu Jan  1 00:00:10 1970", 4_000)).toBe(6000);
    });
    it("sends the Authorization header, static or from a function", async () => {
      const { url, seen } = await scripted([]);
      await httpPublisher({
        ...sender,
        url,
        authorization: "Bearer a",
      }).publish(event);
      await httpPublisher({
        ...sender,
        url,
        authorization: async () => "Bearer b",
      }).publish(event);
      expect(seen.map((s) => s.headers.authorization)).toEqual(["Bearer a", "Bearer b"]);
    });
    it("types what an authorization callback does wrong, and sends nothing", async () => {
      const { url, seen } = await scripted([]);
      const boom = new Error("token service down");
      const cases: Array<[() => string | Promise<string>, object]> = [
        [
          () => {
            throw boom;
          },
          { code: "ConnectionFailed", retryable: true, cause: boom },
        ],
        [() => Promise.reject(boom), { code: "ConnectionFailed", retryable: true, cause: boom }],
        [(() => undefined) as unknown as () => string, { code: "InvalidEvent", retryable: false }],
      ];
      for (const [authorization, expected] of cases) {
        for (const webhook of [undefined, { origin: "a.example" }]) {
          const publisher = httpPublisher({
            ...sender,
            url,
            authorization,
            ...(webhook ? { webhook } : {}),
          });
          expect(await failure(publisher.publish(event))).toMatchObject(expected);
        }
      }
      expect(seen).toHaveLength(0);
    });
    it("keeps the event's content-type and ce-* headers over configured ones, and refuses framing headers", async () => {
      const { url, seen } = await scripted([]);
      const clash = { "Content-Type": "text/html", "CE-Type": "forged", "X-Extra": "1" };
      await httpPublisher({ ...sender, url, headers: clash }).publish(event);
      await httpPublisher({ ...sender, url }).publish(event, { headers: clash });
      for (const { headers } of seen) {
        expect(headers["content-type"]).toBe("text/plain");
        expect(headers["ce-type"]).toBe("t");
        expect(headers["x-extra"]).toBe("1");
      }
      for (const framing of [{ "Content-Length": "1" }, { "transfer-encoding": "chunked" }]) {
        expect(() => httpPublisher({ ...sender, url, headers: framing })).toThrow(
          expect.objectContaining({ code: "InvalidEvent" }),
        );
        const err = await failure(
          httpPublisher({ ...sender, url }).publish(event, { headers: framing }),
        );
        expect(err).toMatchObject({ code: "InvalidEvent", retryable: false });
      }
      expect(seen).toHaveLength(2);
    });
    it("refuses headers with CR or LF", () => {
      expect(() =>
        httpPublisher({
          ...sender,
          url: "http://127.0.0.1:1/",
          headers: { "x-a": "1\r\nx-b: 2" },
        }),
      ).toThrow(/CR, LF/);
    });
    it("a header the transport cannot send is InvalidEvent, with nothing sent and no retry", async () => {
      const { url, seen } = await scripted([]);
      const cases: Array<Parameters<typeof httpPublisher>[0]> = [
        { url, headers: { "x-name": "Ω" } },
        { url, headers: { "x name": "1" } },
        { url, authorization: () => "Bearer \u20ac" },
      ];
      for (const options of cases) {
        const publisher = httpPublisher({ ...sender, ...options, retry: { baseDelayMs: 1_000 } });
        const started = Date.now();
        const err = await failure(publisher.publish(event, { headers: {} }));
        expect(err).toMatchObject({ code: "InvalidEvent", retryable: false });
        expect(Date.now() - started).toBeLessThan(500); // not retried after a backoff
        await publisher.close();
      }
      expect(seen).toHaveLength(0);
    });
    it("refuses an absolute URL that is not http(s), or holds credentials, when it is made", () => {
      for (const url of ["data:,x", "ftp://127.0.0.1/", "http://user:secret@127.0.0.1/"]) {
        expect(() => httpPublisher({ ...sender, url })).toThrow(
          expect.objectContaining({ code: "MalformedInput" }),
        );
      }
    });
    it("a relative URL is MalformedInput in Node, when made or on publish, and not retried", async () => {
      let publisher: ReturnType<typeof httpPublisher>;
      try {
        publisher = httpPublisher({ ...sender, url: "/events", retry: { baseDelayMs: 1_000 } });
      } catch (err) {
        expect(err).toMatchObject({ code: "MalformedInput" }); // node:http: when it is made
        return;
      }
      const started = Date.now();
      expect(await failure(publisher.publish(event))).toMatchObject({
        code: "MalformedInput",
        retryable: false,
      });
      expect(Date.now() - started).toBeLessThan(500);
    });
    it("refuses to publish after close", async () => {
      const publisher = httpPublisher({
        ...sender,
        url: "http://127.0.0.1:1/",
      });
      await publisher.close();
      expect(await failure(publisher.publish(event))).toMatchObject({ code: "Closed" });
    });
  });

  describe("webhook validation handshake", () => {
    it("asks with OPTIONS before the first delivery and delivers once granted, on both sides", async () => {
      const received: string[] = [];
      const receiver = httpReceiver({
        formats: [json],
        webhook: { allowedOrigins: ["events.example.com"], allowedRate: 120 },
        onDelivery: (d) => void received.push(d.event?.id ?? ""),
      });
      const { server, methods } = await recordingMethods(receiver);
      const publisher = httpPublisher({
        ...sender,
        url: server.url,
        webhook: { origin: "events.example.com", requestRate: 60 },
      });
      await publisher.publish(event);
      await publisher.publish(event);
      expect(methods).toEqual(["OPTIONS", "POST", "POST"]);
      expect(publisher.permission).toEqual({
        allowedOrigin: "events.example.com",
        allowedRate: 120,
      });
      expect(received).toEqual(["p-1", "p-1"]);
    });
    it("grants * with the requested rate when every origin is allowed", async () => {
      const receiver = httpReceiver({ webhook: { allowedOrigins: "*" } });
      const server = await startServer(createNodeHandler(receiver));
      servers.push(server);
      const response = await fetch(server.url, {
        method: "OPTIONS",
        headers: { "WebHook-Request-Origin": "a.example", "WebHook-Request-Rate": "30" },
      });
      expect(response.status).toBe(200);
      expect(response.headers.get("webhook-allowed-origin")).toBe("*");
      expect(response.headers.get("webhook-allowed-rate")).toBe("30");
      await receiver.close();
    });
    it("refuses an origin it does not allow, and the sender never POSTs", async () => {
      const receiver = httpReceiver({
        webhook: { allowedOrigins: (o) => o.endsWith(".trusted.example") },
      });
      const { server, methods } = await recordingMethods(receiver);
      const err = await failure(
        httpPublisher({
          ...sender,
          url: server.url,
          webhook: { origin: "evil.example" },
        }).publish(event),
      );
      expect(err).toMatchObject({ code: "PublishRejected", protocolCode: 403, retryable: false });
      expect(methods).toEqual(["OPTIONS"]);
    });
    it("treats a receiver that ignores the handshake as not granting", async () => {
      const { url, seen } = await scripted([{ status: 200 }]);
      const err = await failure(
        httpPublisher({
          ...sender,
          url,
          webhook: { origin: "a.example" },
        }).publish(event),
      );
      expect(err.code).toBe("PublishRejected");
      expect(seen.map((s) => s.method)).toEqual(["OPTIONS"]);
    });
    it("retries a validation request answered 429 or 5xx, as a delivery is, then delivers", async () => {
      const { url, seen } = await scripted([
        { status: 503, headers: { "retry-after": "0" } },
        { status: 500 },
        { status: 200, headers: { "webhook-allowed-origin": "a.example" } },
      ]);
      await httpPublisher({
        ...sender,
        url,
        retry: { maxAttempts: 3, baseDelayMs: 1 },
        webhook: { origin: "a.example" },
      }).publish(event);
      expect(seen.map((s) => s.method)).toEqual(["OPTIONS", "OPTIONS", "OPTIONS", "POST"]);
    });
    it("fails with a retryable PublishRejected, not a refusal, when the 5xx answers outlast the retries", async () => {
      const { url, seen } = await scripted([
        { status: 503 },
        { status: 502 },
        { status: 200, headers: { "webhook-allowed-origin": "*" } },
      ]);
      const publisher = httpPublisher({
        ...sender,
        url,
        retry: { maxAttempts: 2, baseDelayMs: 1 },
        webhook: { origin: "a.example" },
      });
      const err = await failure(publisher.publish(event));
      expect(err).toMatchObject({ code: "PublishRejected", protocolCode: 502, retryable: true });
      expect(err.message).toContain("validation request");
      expect(seen.map((s) => s.method)).toEqual(["OPTIONS", "OPTIONS"]);
      // The next publish asks again.
      await publisher.publish(event);
      expect(seen.map((s) => s.method)).toEqual(["OPTIONS", "OPTIONS", "OPTIONS", "POST"]);
    });
  });
});
