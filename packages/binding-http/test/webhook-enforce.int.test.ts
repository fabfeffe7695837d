// The rate of http-webhook.md from both ends: a receiver that enforces the rate it granted
// (4.2.2: 429 for a sender over it, with Retry-After per 2.2), and a publisher that, told 429 with
// Retry-After, sends nothing more to the target until then (2.2), whichever publish it came to.
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  createNodeHandler,
  type HttpReceiverOptions,
  httpPublisher,
  httpReceiver,
} from "@posthorn/binding-http";
import { afterAll, describe, expect, it } from "vitest";
import { OriginRates } from "../src/webhook.js";
import { failure, SENDERS, startServer, type TestServer, textEvent } from "./servers.js";

const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

/** A node:http server around a receiver, recording the id of every event delivered. */
async function receiverServer(options: HttpReceiverOptions) {
  const delivered: string[] = [];
  const server = await startServer(
    createNodeHandler({ ...options, onDelivery: (d) => void delivered.push(d.event?.id ?? "") }),
  );
  servers.push(server);
  return { url: server.url, delivered };
}

let n = 0;
/** POSTs one binary-mode event, with `origin` as WebHook-Request-Origin unless undefined. */
function post(url: string, origin: string | undefined): Promise<Response> {
  n++;
  const headers: Record<string, string> = {
    "ce-specversion": "1.0",
    "ce-id": `e-${n}`,
    "ce-source": "/enforce",
    "ce-type": "t",
    "content-type": "text/plain",
  };
  if (origin !== undefined) headers["webhook-request-origin"] = origin;
  return fetch(url, { method: "POST", headers, body: "x" });
}

describe("a receiver with webhook.enforceRate", () => {
  it("answers 429 with Retry-After to an origin over its allowedRate, per origin, delivering nothing", async () => {
    const { url, delivered } = await receiverServer({
      webhook: { allowedOrigins: "*", allowedRate: 2, enforceRate: true },
    });
    expect((await post(url, "a.example")).status).toBe(204);
    expect((await post(url, "A.Example")).status).toBe(204); // the same origin
    const over = await post(url, "a.example");
    expect(over.status).toBe(429);
    const retryAfter = Number(over.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(await over.text()).toContain("a.example");
    expect(delivered).toEqual(["e-1", "e-2"]);
    // Another origin has a rate of its own; requests without an origin count as one more.
    expect((await post(url, "b.example")).status).toBe(204);
    expect((await post(url, undefined)).status).toBe(204);
    expect((await post(url, undefined)).status).toBe(204);
    expect((await post(url, undefined)).status).toBe(429);
    expect(delivered).toHaveLength(5);
  });

  it("grants the rate it enforces in the handshake", async () => {
    const { url } = await receiverServer({
      webhook: { allowedOrigins: ["a.example"], allowedRate: 2, enforceRate: true },
    });
    const answer = await fetch(url, {
      method: "OPTIONS",
      headers: { "webhook-request-origin": "a.example" },
    });
    expect(answer.headers.get("webhook-allowed-rate")).toBe("2");
  });

  it("is off by default: allowedRate alone is granted, not enforced", async () => {
    const { url, delivered } = await receiverServer({
      webhook: { allowedOrigins: "*", allowedRate: 2 },
    });
    for (let i = 0; i < 5; i++) expect((await post(url, "a.example")).status).toBe(204);
    expect(delivered).toHaveLength(5);
  });

  it("is refused without a numeric allowedRate when the receiver is made", () => {
    for (const options of [
      { webhook: { allowedOrigins: "*" as const, enforceRate: true } },
      { webhook: { allowedOrigins: "*" as const, allowedRate: "*" as const, enforceRate: true } },
    ]) {
      for (const make of [() => httpReceiver(options), () => createNodeHandler(options)]) {
        expect(make).toThrow(
          expect.objectContaining({ code: "NotSupported", attribute: "webhook.enforceRate" }),
        );
      }
    }
  });
});

describe.each(SENDERS)("a publisher told 429 with Retry-After, over $name", ({ options }) => {
  it("sends nothing more to the target until the Retry-After has passed, from any publish", async () => {
    const arrivals: Array<{ id: string; at: number }> = [];
    const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on("end", () => {
        arrivals.push({ id: String(req.headers["ce-id"]), at: performance.now() });
        if (arrivals.length === 1) res.writeHead(429, { "retry-after": "1" }).end();
        else res.writeHead(204).end();
      });
    });
    servers.push(server);
    const publisher = httpPublisher({ url: server.url, ...options });
    const first = publisher.publish(textEvent("first", "/hold"));
    // The second publish starts once the 429 is in; it waits with the retry of the first.
    while (arrivals.length === 0) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50));
    const second = publisher.publish(textEvent("second", "/hold"));
    await Promise.all([first, second]);
    const throttled = (arrivals[0] as { at: number }).at;
    const later = arrivals.slice(1);
    expect(later.map((a) => a.id).sort()).toEqual(["first", "second"]);
    for (const a of later) expect(a.at - throttled).toBeGreaterThanOrEqual(950);
    await publisher.close();
  });

  it("a publish whose time ends before the Retry-After fails at once, retryable, nothing sent", async () => {
    let posts = 0;
    const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on("end", () => {
        posts++;
        res.writeHead(429, { "retry-after": "30" }).end();
      });
    });
    servers.push(server);
    const publisher = httpPublisher({ url: server.url, ...options });
    const err = await failure(publisher.publish(textEvent("t-1", "/hold")));
    expect(err).toMatchObject({ code: "PublishRejected", protocolCode: 429, retryable: true });
    expect(posts).toBe(1);
    const started = performance.now();
    const held = await failure(publisher.publish(textEvent("t-2", "/hold"), { timeoutMs: 5000 }));
    expect(held).toMatchObject({ code: "PublishRejected", protocolCode: 429, retryable: true });
    expect(held.message).toMatch(/Retry-After/);
    expect(performance.now() - started).toBeLessThan(500);
    expect(posts).toBe(1);
    await publisher.close();
  });

  it("against an enforcing receiver: the publish over the rate fails retryable, and the next is not sent", async () => {
    const { url, delivered } = await receiverServer({
      webhook: { allowedOrigins: "*", allowedRate: 2, enforceRate: true },
    });
    const publisher = httpPublisher({
      url,
      ...options,
      headers: { "webhook-request-origin": "x" },
    });
    await publisher.publish(textEvent("r-1", "/hold"));
    await publisher.publish(textEvent("r-2", "/hold"));
    // Retry-After is about a minute, past retry.maxDelayMs (10 s): not waited out.
    const over = await failure(publisher.publish(textEvent("r-3", "/hold")));
    expect(over).toMatchObject({ code: "PublishRejected", protocolCode: 429, retryable: true });
    const held = await failure(publisher.publish(textEvent("r-4", "/hold")));
    expect(held).toMatchObject({ code: "PublishRejected", protocolCode: 429, retryable: true });
    expect(delivered).toEqual(["r-1", "r-2"]);
    await publisher.close();
  });
});

describe("OriginRates (the receiver's count per origin)", () => {
  it("lets an origin send again once its oldest delivery is a minute (less 1 s of slack) old", () => {
    const rates = new OriginRates(3);
    expect([0, 10, 20].map((t) => rates.take("a", t))).toEqual([0, 0, 0]);
    // Full until the delivery at 0 leaves the window at 59 000.
    expect(rates.take("a", 30_000)).toBe(29_000);
    expect(rates.take("b", 30_000)).toBe(0);
    expect(rates.take("a", 59_000)).toBe(0);
    expect(rates.take("a", 59_001)).toBe(9);
    expect(rates.take("a", 59_010)).toBe(0);
    // Long quiet: the whole rate again.
    expect([200_000, 200_001, 200_002, 200_003].map((t) => rates.take("a", t))).toEqual([
      0,
      0,
      0,
      59_000 - 3,
    ]);
  });
});
