import type { IncomingMessage, ServerResponse } from "node:http";
import {
  confirmWebhookCallback,
  createNodeHandler,
  httpPublisher,
  httpReceiver,
  readWebhookApproval,
} from "@posthorn/binding-http";
import type { CloudEvent } from "@posthorn/core";
import { refusedOption } from "@posthorn/testkit";
import { afterAll, describe, expect, it } from "vitest";
import { failure, startServer, type TestServer, textEvent } from "./servers.js";

const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

const event = (id: string): CloudEvent => textEvent(id, "/rate");

/** A receiver granting `rate`, recording the id and arrival time of every POST. */
async function rateReceiver(rate: number | "*") {
  const posts: Array<{ id: string; at: number }> = [];
  const receiver = httpReceiver({
    webhook: { allowedOrigins: ["sender.example"], allowedRate: rate },
    onDelivery: (d) => void posts.push({ id: d.event?.id ?? "", at: performance.now() }),
  });
  const server = await startServer(createNodeHandler(receiver));
  servers.push(server);
  return { url: server.url, posts };
}

/**
 * A fetch that records when the publisher sends each POST (what the rate limiter controls). A few
 * ms of event-loop delay can sit between the limiter releasing a request and this call, so the
 * spacing checks allow SLACK_MS; without pacing the gaps are near 0, far below.
 */
function timedFetch() {
  const sent: number[] = [];
  const f: typeof fetch = (input, init) => {
    if (init?.method === "POST") sent.push(performance.now());
    return fetch(input, init);
  };
  return { fetch: f, sent };
}

const SLACK_MS = 10;

function gaps(times: readonly number[]): number[] {
  return times.slice(1).map((t, i) => t - (times[i] as number));
}

describe("webhook rate (WebHook-Allowed-Rate)", () => {
  it("spaces requests 60000/rate ms apart by default (burst 1)", async () => {
    const { url, posts } = await rateReceiver(600); // one per 100 ms
    const timed = timedFetch();
    const publisher = httpPublisher({
      url,
      fetch: timed.fetch,
      webhook: { origin: "sender.example" },
    });
    const ids = ["a", "b", "c", "d", "e", "f"];
    await Promise.all(ids.map((id) => publisher.publish(event(id))));
    expect(publisher.permission).toEqual({ allowedOrigin: "sender.example", allowedRate: 600 });
    expect(posts.map((p) => p.id).sort()).toEqual(ids);
    expect(timed.sent).toHaveLength(6);
    for (const gap of gaps(timed.sent)) expect(gap).toBeGreaterThanOrEqual(100 - SLACK_MS);
    const span = (timed.sent.at(-1) as number) - (timed.sent[0] as number);
    expect(span).toBeGreaterThanOrEqual(500 - SLACK_MS);
    // Paced, not stalled: five intervals plus scheduling slack.
    expect(span).toBeLessThan(1500);
    // The receiver sees them spread out too. Arrival times carry connection and scheduling jitter
    // (one loaded run saw a first arrival 100 ms late), so this only checks that they are paced at
    // all: unpaced, six arrivals land within a few ms.
    const seen = (posts.at(-1)?.at as number) - (posts[0]?.at as number);
    expect(seen).toBeGreaterThanOrEqual(250);
  });

  it("sends a burst of `burst` requests at once, then one per interval", async () => {
    const { url } = await rateReceiver(600);
    const timed = timedFetch();
    const publisher = httpPublisher({
      url,
      fetch: timed.fetch,
      webhook: { origin: "sender.example", burst: 3 },
    });
    await Promise.all(["a", "b", "c", "d", "e"].map((id) => publisher.publish(event(id))));
    const t0 = timed.sent[0] as number;
    const offsets = timed.sent.map((t) => t - t0);
    expect(offsets).toHaveLength(5);
    // The first three go together; the fourth waits one interval, the fifth two.
    expect(offsets[2]).toBeLessThan(60);
    expect(offsets[3]).toBeGreaterThanOrEqual(100 - SLACK_MS);
    expect(offsets[4]).toBeGreaterThanOrEqual(200 - SLACK_MS);
  });

  it("does not pace when the receiver grants *", async () => {
    const { url, posts } = await rateReceiver("*");
    const timed = timedFetch();
    const publisher = httpPublisher({
      url,
      fetch: timed.fetch,
      webhook: { origin: "sender.example", requestRate: 6 },
    });
    const ids = Array.from({ length: 10 }, (_, i) => `n${i}`);
    await Promise.all(ids.map((id) => publisher.publish(event(id))));
    expect(publisher.permission?.allowedRate).toBeUndefined();
    expect(posts).toHaveLength(10);
    // At the 6/min asked for, ten requests would take 90 s; unlimited, they take milliseconds.
    expect((timed.sent.at(-1) as number) - (timed.sent[0] as number)).toBeLessThan(2000);
  });

  it("rejects a publish aborted while it waits for the rate with Aborted; it is never sent and the queue moves up", async () => {
    const { url, posts } = await rateReceiver(60); // one per second
    const publisher = httpPublisher({ url, webhook: { origin: "sender.example" } });
    await publisher.publish(event("first"));
    const controller = new AbortController();
    const started = performance.now();
    const waiting = publisher.publish(event("aborted"), { abortSignal: controller.signal });
    const behind = publisher.publish(event("behind"));
    setTimeout(() => controller.abort(), 100);
    const err = await failure(waiting);
    expect(err.code).toBe("Aborted");
    expect(performance.now() - started).toBeLessThan(900);
    await behind;
    // "behind" took the slot the aborted publish gave up: one interval after "first", not two.
    expect(performance.now() - started).toBeLessThan(1800);
    // Give a wrongly queued request time to arrive before checking nothing else was sent.
    await new Promise((r) => setTimeout(r, 1200));
    expect(posts.map((p) => p.id)).toEqual(["first", "behind"]);
  });

  it("ends the wait with Aborted when an AbortSignal.timeout fires first", async () => {
    const { url, posts } = await rateReceiver(60);
    const publisher = httpPublisher({ url, webhook: { origin: "sender.example" } });
    await publisher.publish(event("first"));
    const err = await failure(
      publisher.publish(event("late"), { abortSignal: AbortSignal.timeout(150) }),
    );
    expect(err.code).toBe("Aborted");
    expect(posts.map((p) => p.id)).toEqual(["first"]);
  });

  it("counts retries against the rate and still honours 429 Retry-After", async () => {
    let posts = 0;
    const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      if (req.method === "OPTIONS") {
        res.writeHead(200, {
          "webhook-allowed-origin": "sender.example",
          "webhook-allowed-rate": "600",
        });
        res.end();
        return;
      }
      posts++;
      if (posts === 1) res.writeHead(429, { "retry-after": "0" });
      else res.writeHead(204);
      res.end();
    });
    servers.push(server);
    const timed = timedFetch();
    const publisher = httpPublisher({
      url: server.url,
      fetch: timed.fetch,
      webhook: { origin: "sender.example" },
    });
    await publisher.publish(event("retried"));
    expect(posts).toBe(2);
    // Retry-After: 0 allows an immediate retry, but the rate does not: one interval apart.
    expect(gaps(timed.sent)[0]).toBeGreaterThanOrEqual(100 - SLACK_MS);
  });

  it("paces to a rate granted later by approveWebhook", async () => {
    const { url } = await rateReceiver("*");
    const timed = timedFetch();
    const publisher = httpPublisher({
      url,
      fetch: timed.fetch,
      webhook: { origin: "sender.example" },
    });
    await publisher.publish(event("a"));
    expect(publisher.approveWebhook({ allowedRate: 600 })).toEqual({
      allowedOrigin: "sender.example",
      allowedRate: 600,
    });
    await Promise.all(["b", "c", "d"].map((id) => publisher.publish(event(id))));
    const later = timed.sent.slice(1);
    for (const gap of gaps(later)) expect(gap).toBeGreaterThanOrEqual(100 - SLACK_MS);
  });

  it("refuses approveWebhook on a publisher without the webhook option", () => {
    const publisher = httpPublisher({ url: "http://127.0.0.1:1/" });
    expect(() => publisher.approveWebhook()).toThrow(
      expect.objectContaining({ code: "NotSupported" }),
    );
  });
});

describe("close() and publishes waiting for the rate (closeTimeoutMs)", () => {
  it("sends what the rate allows within closeTimeoutMs, then fails the rest with Closed, nothing sent", async () => {
    const { url, posts } = await rateReceiver(60); // one per second
    const publisher = httpPublisher({
      url,
      closeTimeoutMs: 1500,
      webhook: { origin: "sender.example" },
    });
    await publisher.publish(event("first"));
    const queued = ["b", "c", "d"].map((id) =>
      publisher.publish(event(id)).then(
        () => "sent",
        (err: { code?: string }) => err.code,
      ),
    );
    const started = performance.now();
    await publisher.close();
    const took = performance.now() - started;
    // "b" got its turn a second after "first"; "c" would have had to wait until 2 s.
    expect(await Promise.all(queued)).toEqual(["sent", "Closed", "Closed"]);
    expect(took).toBeGreaterThanOrEqual(1400);
    expect(took).toBeLessThan(1900);
    // Give a wrongly sent request time to arrive before checking nothing else was sent.
    await new Promise((r) => setTimeout(r, 1200));
    expect(posts.map((p) => p.id)).toEqual(["first", "b"]);
  });

  it("bounds that wait by 5 s by default (it was the whole queue's: here 10 s)", {
    timeout: 15_000,
  }, async () => {
    const { url, posts } = await rateReceiver(6); // one per 10 s
    const publisher = httpPublisher({ url, webhook: { origin: "sender.example" } });
    await publisher.publish(event("first"));
    const waiting = failure(publisher.publish(event("second")));
    const started = performance.now();
    await publisher.close();
    const took = performance.now() - started;
    const err = await waiting;
    expect(err.code).toBe("Closed");
    expect(err.message).toMatch(/closeTimeoutMs \(5000 ms\)/);
    expect(took).toBeGreaterThanOrEqual(4900);
    expect(took).toBeLessThan(6500);
    expect(posts.map((p) => p.id)).toEqual(["first"]);
  });

  it("with closeTimeoutMs: Infinity, close() waits until every queued publish is sent", async () => {
    const { url, posts } = await rateReceiver(600); // one per 100 ms
    const publisher = httpPublisher({
      url,
      closeTimeoutMs: Infinity,
      webhook: { origin: "sender.example" },
    });
    await publisher.publish(event("first"));
    const ids = ["b", "c", "d", "e"];
    const queued = Promise.all(ids.map((id) => publisher.publish(event(id))));
    await publisher.close();
    await queued;
    expect(posts.map((p) => p.id).sort()).toEqual(["b", "c", "d", "e", "first"]);
  });

  it("stops a publish backing off before a retry with Closed, the 503 it got as its cause", async () => {
    let requests = 0;
    const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
      requests++;
      req.resume();
      req.on("end", () => res.writeHead(503).end());
    });
    servers.push(server);
    const publisher = httpPublisher({
      url: server.url,
      closeTimeoutMs: 200,
      retry: { maxAttempts: 5, baseDelayMs: 2000, maxDelayMs: 2000 },
    });
    const publishing = failure(publisher.publish(event("retried")));
    while (requests === 0) await new Promise((r) => setTimeout(r, 10));
    const started = performance.now();
    await publisher.close();
    expect(performance.now() - started).toBeLessThan(900);
    const err = await publishing;
    expect(err.code).toBe("Closed");
    expect((err.cause as { protocolCode?: unknown }).protocolCode).toBe(503);
    expect(requests).toBe(1);
  });

  it("stops a retry waiting for the granted rate with Closed, the 503 that made it retry as its cause", async () => {
    // The rate-queue wait ended with a bare Closed: the 503 the publish was retrying was lost.
    const receiver = httpReceiver({
      webhook: { allowedOrigins: ["sender.example"], allowedRate: 6 }, // one per 10 s
    });
    const handler = createNodeHandler(receiver);
    let posts = 0;
    const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
      if (req.method === "POST" && ++posts === 1) {
        req.resume();
        req.on("end", () => res.writeHead(503).end());
        return;
      }
      handler(req, res);
    });
    servers.push(server);
    const publisher = httpPublisher({
      url: server.url,
      closeTimeoutMs: 200,
      webhook: { origin: "sender.example" },
      retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 10 },
    });
    const publishing = failure(publisher.publish(event("paced-retry")));
    while (posts === 0) await new Promise((r) => setTimeout(r, 10));
    const started = performance.now();
    await publisher.close();
    expect(performance.now() - started).toBeLessThan(900);
    const err = await publishing;
    expect(err.code).toBe("Closed");
    expect(err.message).toMatch(/closeTimeoutMs \(200 ms\)/);
    expect((err.cause as { protocolCode?: unknown } | undefined)?.protocolCode).toBe(503);
    expect(posts).toBe(1);
  });
});

describe("webhook rates given as options", () => {
  const bad: Array<[unknown, string]> = [
    [0, "0"],
    [-1, "-1"],
    [2.5, "2.5"],
    [Number.NaN, "NaN"],
    [Number.POSITIVE_INFINITY, "Infinity"],
    ["100", 'string "100"'],
  ];

  it("httpReceiver and the adapters refuse a webhook.allowedRate other than * or a whole number of 1 or more", async () => {
    // NaN, 0 and Infinity went out as WebHook-Allowed-Rate: NaN, 0 and Infinity.
    for (const [rate, shown] of bad) {
      const webhook = { allowedOrigins: "*" as const, allowedRate: rate as number };
      expect(() => httpReceiver({ webhook })).toThrow(refusedOption("webhook.allowedRate", shown));
      expect(() => createNodeHandler({ webhook })).toThrow(
        refusedOption("webhook.allowedRate", shown),
      );
    }
    // A rate past 1e21 goes out as digits, which String() writes with an exponent.
    const receiver = httpReceiver({ webhook: { allowedOrigins: "*", allowedRate: 1e21 } });
    const reply = await receiver.handle({
      method: "OPTIONS",
      headers: { "webhook-request-origin": "sender.example" },
      readBody: () => Promise.resolve(new Uint8Array()),
    });
    expect(reply.headers["webhook-allowed-rate"]).toBe("1000000000000000000000");
  });

  it("confirmWebhookCallback refuses such an allowedRate with no request made", async () => {
    let calls = 0;
    const f: typeof fetch = () => {
      calls++;
      return Promise.resolve(new Response(null, { status: 200 }));
    };
    for (const [rate, shown] of bad) {
      await expect(
        confirmWebhookCallback("http://127.0.0.1:1/confirm", {
          allowedRate: rate as number,
          fetch: f,
        }),
      ).rejects.toEqual(refusedOption("allowedRate", shown));
    }
    expect(calls).toBe(0);
    await confirmWebhookCallback("http://127.0.0.1:1/confirm", { allowedRate: 30, fetch: f });
    expect(calls).toBe(1);
  });

  it("approveWebhook refuses such an allowedRate and approves nothing", () => {
    const publisher = httpPublisher({
      url: "http://127.0.0.1:1/",
      webhook: { origin: "sender.example" },
    });
    // They were taken for no limit.
    for (const [rate, shown] of bad) {
      expect(() => publisher.approveWebhook({ allowedRate: rate as number })).toThrow(
        refusedOption("allowedRate", shown),
      );
    }
    expect(publisher.permission).toBeUndefined();
    expect(publisher.approveWebhook({ allowedRate: "*" }).allowedRate).toBeUndefined();
  });
});

describe("a WebHook-Allowed-Rate the receiver got wrong", () => {
  /** A receiver granting the origin with `rate` as its WebHook-Allowed-Rate, counting POSTs. */
  async function wrongRateReceiver(rate: string) {
    const seen = { posts: 0 };
    const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      if (req.method === "OPTIONS") {
        res.writeHead(200, {
          "webhook-allowed-origin": "sender.example",
          "webhook-allowed-rate": rate,
        });
      } else {
        seen.posts++;
        res.writeHead(204);
      }
      res.end();
    });
    servers.push(server);
    return { url: server.url, seen };
  }

  it("fails the publish with MalformedInput, nothing delivered; the next publish asks again", async () => {
    // Each was taken for no limit, and the events went out unpaced.
    for (const rate of ["0", "-3", "1.5", "abc", "1e3", "0x10", ""]) {
      const { url, seen } = await wrongRateReceiver(rate);
      const publisher = httpPublisher({ url, webhook: { origin: "sender.example" } });
      for (const id of ["a", "b"]) {
        const err = await failure(publisher.publish(event(id)));
        expect(err).toMatchObject({ code: "MalformedInput", attribute: "webhook-allowed-rate" });
        expect(err.message).toContain(JSON.stringify(rate));
      }
      expect(seen.posts).toBe(0);
      expect(publisher.permission).toBeUndefined();
    }
  });

  it("does not wait for a callback approval instead", async () => {
    const { url } = await wrongRateReceiver("fast");
    const publisher = httpPublisher({
      url,
      webhook: { origin: "sender.example", callbackUrl: "http://127.0.0.1:1/approve?key=k" },
    });
    const started = performance.now();
    const err = await failure(publisher.publish(event("a")));
    expect(err.code).toBe("MalformedInput");
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it("reads * and positive integers, a huge one as no limit", async () => {
    for (const [rate, granted] of [
      ["*", undefined],
      [" 120 ", 120],
      ["9".repeat(400), undefined],
    ] as const) {
      const { url, seen } = await wrongRateReceiver(rate);
      const publisher = httpPublisher({ url, webhook: { origin: "sender.example" } });
      await publisher.publish(event("a"));
      expect(publisher.permission?.allowedRate).toBe(granted);
      expect(seen.posts).toBe(1);
    }
  });

  it("readWebhookApproval refuses a callback's malformed rate with MalformedInput", () => {
    for (const rate of ["-3", "0", "2.5", "soon"]) {
      expect(() => readWebhookApproval({ "webhook-allowed-rate": rate })).toThrow(
        expect.objectContaining({ code: "MalformedInput", attribute: "webhook-allowed-rate" }),
      );
    }
  });
});

describe("a WebHook-Request-Rate the sender got wrong", () => {
  async function ask(
    allowedRate: number | "*" | undefined,
    requestRate: string | undefined,
    origin = "sender.example",
  ) {
    const receiver = httpReceiver({
      webhook: {
        allowedOrigins: ["sender.example"],
        ...(allowedRate === undefined ? {} : { allowedRate }),
      },
      onDelivery: () => undefined,
    });
    const server = await startServer(createNodeHandler(receiver));
    servers.push(server);
    const headers: Record<string, string> = { "webhook-request-origin": origin };
    if (requestRate !== undefined) headers["webhook-request-rate"] = requestRate;
    const res = await fetch(server.url, { method: "OPTIONS", headers });
    return {
      status: res.status,
      allowedOrigin: res.headers.get("webhook-allowed-origin"),
      allowedRate: res.headers.get("webhook-allowed-rate"),
    };
  }

  it("is answered 400 with no grant, with or without an allowedRate of the receiver's own", async () => {
    // Before, a malformed rate was taken for "no limit asked" and granted "*".
    for (const rate of ["0", "-3", "1.5", "abc", "1e3", "0x10", "060", "", "12 34"]) {
      for (const allowedRate of [undefined, 600, "*"] as const) {
        const answer = await ask(allowedRate, rate);
        expect({ rate, allowedRate, answer }).toEqual({
          rate,
          allowedRate,
          answer: { status: 400, allowedOrigin: null, allowedRate: null },
        });
      }
    }
  });

  it("a valid one is granted as asked, however many digits it has", async () => {
    // Rates of ten digits and more were taken for malformed and answered "*".
    for (const rate of ["1", "60", "*", "1234567890", "123456789012345678901234567890"]) {
      expect(await ask(undefined, rate)).toEqual({
        status: 200,
        allowedOrigin: "sender.example",
        allowedRate: rate,
      });
    }
    // The receiver's own allowedRate wins; an origin not allowed is 403.
    expect(await ask(600, "1234567890")).toMatchObject({ status: 200, allowedRate: "600" });
    expect(await ask(undefined, "60", "other.example")).toEqual({
      status: 403,
      allowedOrigin: null,
      allowedRate: null,
    });
  });
});
