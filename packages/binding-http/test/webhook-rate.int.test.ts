import type { IncomingMessage, ServerResponse } from "node:http";
import { createNodeHandler, httpPublisher, httpReceiver } from "@posthorn/binding-http";
import type { CloudEvent } from "@posthorn/core";
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
