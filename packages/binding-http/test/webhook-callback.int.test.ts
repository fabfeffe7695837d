import type { IncomingMessage, ServerResponse } from "node:http";
import {
  confirmWebhookCallback,
  createNodeHandler,
  type HttpPublisher,
  httpPublisher,
  httpReceiver,
  readWebhookApproval,
  type WebhookCallbackRequest,
} from "@posthorn/binding-http";
import type { CloudEvent } from "@posthorn/core";
import { afterAll, describe, expect, it } from "vitest";
import { failure, startServer, type TestServer, textEvent } from "./servers.js";

const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

const event = (id: string): CloudEvent => textEvent(id, "/callback");

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The delivery target: grants nobody at once, queues callback requests for later approval. */
async function deferringReceiver() {
  const requests: WebhookCallbackRequest[] = [];
  const methods: string[] = [];
  const received: string[] = [];
  const handler = createNodeHandler(
    httpReceiver({
      webhook: { allowedOrigins: ["known.example"], onCallback: (r) => void requests.push(r) },
      onDelivery: (d) => void received.push(d.event?.id ?? ""),
    }),
  );
  const server = await startServer((req, res) => {
    methods.push(req.method ?? "");
    handler(req, res);
  });
  servers.push(server);
  return { url: server.url, requests, methods, received };
}

const SECRET = "s3cr3t-Zq9";

/**
 * The sender's own server, hosting the callback URL: a request with the right key approves the
 * publisher (found through `target`, since the publisher is made after the URL is known).
 */
async function senderCallbackServer(target: { publisher?: HttpPublisher }) {
  const calls: Array<{ method: string; url: string; headers: IncomingMessage["headers"] }> = [];
  const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    calls.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname !== "/confirm" || url.searchParams.get("key") !== SECRET) {
      res.writeHead(403);
      res.end("unknown callback");
      return;
    }
    target.publisher?.approveWebhook(readWebhookApproval(req.headers));
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("approved");
  });
  servers.push(server);
  return { callbackUrl: `${server.url}confirm?key=${SECRET}`, base: server.url, calls };
}

describe("webhook validation by callback (WebHook-Request-Callback)", () => {
  it("delivers only after the receiver confirms by GET to the sender's callback URL", async () => {
    const target = await deferringReceiver();
    const holder: { publisher?: HttpPublisher } = {};
    const sender = await senderCallbackServer(holder);
    const publisher = httpPublisher({
      url: target.url,
      webhook: { origin: "new.example", requestRate: 6000, callbackUrl: sender.callbackUrl },
    });
    holder.publisher = publisher;
    let settled = false;
    const delivered = publisher.publish(event("after-approval")).finally(() => {
      settled = true;
    });
    await until(() => target.requests.length === 1);
    const request = target.requests[0] as WebhookCallbackRequest;
    expect(request.origin).toBe("new.example");
    expect(request.callbackUrl).toBe(sender.callbackUrl);
    expect(request.requestedRate).toBe(6000);
    // Nothing is delivered while the grant is pending.
    await new Promise((r) => setTimeout(r, 150));
    expect(settled).toBe(false);
    expect(target.methods).toEqual(["OPTIONS"]);
    expect(publisher.permission).toBeUndefined();

    await request.confirm();
    await delivered;
    expect(target.methods).toEqual(["OPTIONS", "POST"]);
    expect(target.received).toEqual(["after-approval"]);
    expect(publisher.permission).toEqual({ allowedOrigin: "new.example", allowedRate: 6000 });
    expect(sender.calls).toHaveLength(1);
    expect(sender.calls[0]).toMatchObject({
      method: "GET",
      url: `/confirm?key=${SECRET}`,
      headers: { "webhook-allowed-origin": "new.example", "webhook-allowed-rate": "6000" },
    });
    // Later publishes go straight out, with no new handshake.
    await publisher.publish(event("second"));
    expect(target.methods).toEqual(["OPTIONS", "POST", "POST"]);
  });

  it("answers a deferred validation request 200 with the grant headers withheld", async () => {
    const target = await deferringReceiver();
    const response = await fetch(target.url, {
      method: "OPTIONS",
      headers: {
        "WebHook-Request-Origin": "new.example",
        "WebHook-Request-Callback": "https://sender.example/confirm?id=1&key=abc",
      },
    });
    await response.arrayBuffer();
    expect(response.status).toBe(200);
    expect(response.headers.get("allow")).toContain("POST");
    expect(response.headers.get("webhook-allowed-origin")).toBeNull();
    expect(response.headers.get("webhook-allowed-rate")).toBeNull();
    expect(target.requests.map((r) => r.callbackUrl)).toEqual([
      "https://sender.example/confirm?id=1&key=abc",
    ]);
  });

  it("grants an allowed origin at once even when it sent a callback URL", async () => {
    const target = await deferringReceiver();
    const response = await fetch(target.url, {
      method: "OPTIONS",
      headers: {
        "WebHook-Request-Origin": "known.example",
        "WebHook-Request-Callback": "https://known.example/confirm?key=abc",
      },
    });
    await response.arrayBuffer();
    expect(response.headers.get("webhook-allowed-origin")).toBe("known.example");
    // 4.2.2: no limit configured and none asked for: the rate is stated as "*".
    expect(response.headers.get("webhook-allowed-rate")).toBe("*");
    expect(target.requests).toHaveLength(0);
  });

  it("refuses (403) a callback URL that is not absolute http(s), without calling onCallback", async () => {
    const target = await deferringReceiver();
    for (const callback of ["javascript:alert(1)", "/relative/confirm", "file:///etc/passwd"]) {
      const response = await fetch(target.url, {
        method: "OPTIONS",
        headers: { "WebHook-Request-Origin": "new.example", "WebHook-Request-Callback": callback },
      });
      await response.arrayBuffer();
      expect(response.status).toBe(403);
      expect(response.headers.get("webhook-allowed-origin")).toBeNull();
    }
    expect(target.requests).toHaveLength(0);
  });

  it("does not approve on a callback with the wrong key, then times out and asks again", async () => {
    const target = await deferringReceiver();
    const holder: { publisher?: HttpPublisher } = {};
    const sender = await senderCallbackServer(holder);
    const publisher = httpPublisher({
      url: target.url,
      webhook: { origin: "new.example", callbackUrl: sender.callbackUrl, approvalTimeoutMs: 400 },
    });
    holder.publisher = publisher;
    const pending = publisher.publish(event("never"));
    await until(() => target.requests.length === 1);
    const forged = await failure(
      confirmWebhookCallback(`${sender.base}confirm?key=guessed`, { allowedOrigin: "*" }),
    );
    expect(forged).toMatchObject({ code: "PublishRejected", protocolCode: 403 });
    const err = await failure(pending);
    expect(err).toMatchObject({ code: "Timeout", retryable: true });
    expect(publisher.permission).toBeUndefined();
    expect(target.received).toEqual([]);
    // The next publish starts a new handshake.
    const again = publisher.publish(event("again"));
    await until(() => target.requests.length === 2);
    await (target.requests[1] as WebhookCallbackRequest).confirm({ allowedRate: 600 });
    await again;
    expect(target.methods).toEqual(["OPTIONS", "OPTIONS", "POST"]);
    expect(target.received).toEqual(["again"]);
    expect(publisher.permission?.allowedRate).toBe(600);
  });

  it("rejects a publish aborted while awaiting approval, and delivers the others once approved", async () => {
    const target = await deferringReceiver();
    const holder: { publisher?: HttpPublisher } = {};
    const sender = await senderCallbackServer(holder);
    const publisher = httpPublisher({
      url: target.url,
      webhook: { origin: "new.example", callbackUrl: sender.callbackUrl },
    });
    holder.publisher = publisher;
    const controller = new AbortController();
    const aborted = publisher.publish(event("aborted"), { abortSignal: controller.signal });
    const kept = publisher.publish(event("kept"));
    await until(() => target.requests.length === 1);
    controller.abort();
    expect((await failure(aborted)).code).toBe("Aborted");
    await (target.requests[0] as WebhookCallbackRequest).confirm();
    await kept;
    expect(target.received).toEqual(["kept"]);
    expect(target.methods).toEqual(["OPTIONS", "POST"]);
  });

  it("fails publishes awaiting approval with Closed when the publisher closes", async () => {
    const target = await deferringReceiver();
    const sender = await senderCallbackServer({});
    const publisher = httpPublisher({
      url: target.url,
      webhook: { origin: "new.example", callbackUrl: sender.callbackUrl },
    });
    const pending = publisher.publish(event("closed"));
    await until(() => target.requests.length === 1);
    await publisher.close();
    expect((await failure(pending)).code).toBe("Closed");
    expect(target.received).toEqual([]);
  });

  it("sends WebHook-Request-Callback only on the validation request", async () => {
    const seen: Array<{ method: string; callback: string | undefined }> = [];
    const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      const callback = req.headers["webhook-request-callback"];
      seen.push({ method: req.method ?? "", callback: callback as string | undefined });
      if (req.method === "OPTIONS") {
        res.writeHead(200, { "webhook-allowed-origin": "new.example" });
      } else res.writeHead(204);
      res.end();
    });
    servers.push(server);
    const publisher = httpPublisher({
      url: server.url,
      webhook: { origin: "new.example", callbackUrl: "https://new.example/cb?key=k" },
    });
    await publisher.publish(event("sync"));
    expect(seen).toEqual([
      { method: "OPTIONS", callback: "https://new.example/cb?key=k" },
      { method: "POST", callback: undefined },
    ]);
  });
});

describe("confirmWebhookCallback", () => {
  it("POSTs when asked, carrying the grant headers", async () => {
    const calls: Array<{ method: string; headers: IncomingMessage["headers"] }> = [];
    const server = await startServer((req, res) => {
      req.resume();
      calls.push({ method: req.method ?? "", headers: req.headers });
      res.writeHead(204);
      res.end();
    });
    servers.push(server);
    await confirmWebhookCallback(new URL(`${server.url}cb?key=1`), {
      method: "POST",
      allowedOrigin: "a.example",
      allowedRate: 30,
    });
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      method: "POST",
      headers: { "webhook-allowed-origin": "a.example", "webhook-allowed-rate": "30" },
    });
  });

  it("refuses a URL that is not absolute http(s) with MalformedInput", async () => {
    for (const bad of ["not a url", "ftp://x.example/cb", "/cb?key=1"]) {
      const err = await failure(confirmWebhookCallback(bad));
      expect(err).toMatchObject({ code: "MalformedInput", attribute: "webhook-request-callback" });
    }
  });

  it("reports a refused connection as ConnectionFailed and a slow one as Timeout", async () => {
    const closed = await startServer(() => undefined);
    const url = closed.url;
    await closed.close();
    expect((await failure(confirmWebhookCallback(url))).code).toBe("ConnectionFailed");
    const slow = await startServer(() => undefined); // never answers
    servers.push(slow);
    const err = await failure(confirmWebhookCallback(slow.url, { timeoutMs: 100 }));
    expect(err).toMatchObject({ code: "Timeout", retryable: true });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const aborted = await failure(
      confirmWebhookCallback(slow.url, { abortSignal: controller.signal }),
    );
    expect(aborted.code).toBe("Aborted");
  });
});

describe("readWebhookApproval", () => {
  it("reads WebHook-Allowed-Rate from Web Headers and Node header records", () => {
    expect(readWebhookApproval(new Headers({ "WebHook-Allowed-Rate": "120" }))).toEqual({
      allowedRate: 120,
    });
    expect(readWebhookApproval({ "webhook-allowed-rate": "45" })).toEqual({ allowedRate: 45 });
    expect(readWebhookApproval({ "webhook-allowed-rate": "*" })).toEqual({});
    expect(readWebhookApproval({ "webhook-allowed-rate": " 45 " })).toEqual({ allowedRate: 45 });
    expect(readWebhookApproval({})).toEqual({});
  });
});

describe("webhook.callbackUrl", () => {
  it("is refused at construction when it is not an absolute http(s) URL", () => {
    for (const bad of ["confirm?key=1", "mailto:ops@example.com", "https://a.example:99999/"]) {
      expect(() =>
        httpPublisher({
          url: "http://127.0.0.1:1/",
          webhook: { origin: "a.example", callbackUrl: bad },
        }),
      ).toThrow(expect.objectContaining({ code: "MalformedInput" }));
    }
  });
});
