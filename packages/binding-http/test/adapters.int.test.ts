import { once } from "node:events";
import { connect as connectHttp2, createServer as createHttp2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import {
  createNodeHandler,
  httpPublisher,
  httpReceiver,
  toHttpMessage,
} from "@posthorn/binding-http";
import { expressHandler } from "@posthorn/binding-http/express";
import { fastifyCloudEvents } from "@posthorn/binding-http/fastify";
import type { CloudEvent, Delivery } from "@posthorn/core";
import { equivalent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { vector } from "@posthorn/testkit";
import express from "express";
import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const samples = ["typical", "binary-every-byte", "unicode-subject", "header-special-chars"].map(
  (name) => vector(name).event,
);

async function roundTrips(url: string, received: CloudEvent[]): Promise<void> {
  for (const mode of ["binary", "structured"] as const) {
    for (const event of samples) {
      received.length = 0;
      await httpPublisher({ url, mode, format: json, retry: false }).publish(event);
      expect(received).toHaveLength(1);
      expect(equivalent(received[0] as CloudEvent, event)).toBe(true);
    }
  }
}

describe("Express adapter (@posthorn/binding-http/express)", () => {
  const received: CloudEvent[] = [];
  let server: ReturnType<ReturnType<typeof express>["listen"]>;
  let base = "";
  beforeAll(async () => {
    const app = express();
    const onDelivery = (d: Delivery) => void received.push(d.event as CloudEvent);
    app.use("/events", expressHandler({ formats: [json], onDelivery }));
    // Behind express.raw(), the adapter takes the bytes the middleware read.
    app.post(
      "/raw",
      express.raw({ type: () => true }),
      expressHandler({ formats: [json], onDelivery }),
    );
    // Behind express.json(), the body is gone: a clear 500, never a wrong event.
    app.post(
      "/parsed",
      express.json({ type: () => true }),
      expressHandler({ formats: [json], onDelivery }),
    );
    // Behind express.text(), the bytes are gone too: a string cannot give them back.
    app.post(
      "/text",
      express.text({ type: "text/*" }),
      expressHandler({ formats: [json], onDelivery }),
    );
    app.post(
      "/reject",
      expressHandler({ formats: [json], maxBodyBytes: 100, onDelivery: (d) => d.reject("nope") }),
    );
    await new Promise<void>((resolve) => {
      server = app.listen(0, "127.0.0.1", () => resolve());
    });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("receives binary and structured events over a real Express server", async () => {
    await roundTrips(`${base}/events`, received);
  });
  it("works behind express.raw()", async () => {
    await roundTrips(`${base}/raw`, received);
  });
  it("answers 500 with an explanation behind express.json()", async () => {
    const response = await fetch(`${base}/parsed`, {
      method: "POST",
      headers: { "content-type": "application/cloudevents+json" },
      body: JSON.stringify(samples[0]),
    });
    expect(response.status).toBe(500);
    expect(await response.text()).toMatch(/before body parsers/);
  });
  it("answers 500 with an explanation behind express.text(), delivering nothing", async () => {
    // Latin-1 text and bytes that are not UTF-8: the string express.text() leaves was encoded
    // back as UTF-8, and the event carried other bytes than the sender's.
    for (const [contentType, bytes] of [
      ["text/plain; charset=iso-8859-1", [0x68, 0xe9]],
      ["text/plain", [0x68, 0xff]],
    ] as const) {
      received.length = 0;
      const response = await fetch(`${base}/text`, {
        method: "POST",
        headers: {
          "ce-specversion": "1.0",
          "ce-id": "text-1",
          "ce-source": "/adapters",
          "ce-type": "com.example.text",
          "content-type": contentType,
        },
        body: new Uint8Array(bytes),
      });
      const text = await response.text();
      expect({ contentType, status: response.status, received: received.length }).toEqual({
        contentType,
        status: 500,
        received: 0,
      });
      expect(text).toMatch(/decoded to text .*express\.raw/);
    }
  });
  it("answers other methods 405 with Allow when mounted with app.use", async () => {
    for (const method of ["GET", "DELETE", "PATCH"]) {
      const response = await fetch(`${base}/events`, { method });
      expect([method, response.status]).toEqual([method, 405]);
      expect(response.headers.get("allow")).toBe("POST, PUT, OPTIONS");
      await response.text();
    }
  });
  it("maps reject to 422 and oversized bodies to 413", async () => {
    const publisher = httpPublisher({ url: `${base}/reject`, retry: false });
    await expect(publisher.publish(vector("minimal").event)).rejects.toMatchObject({
      protocolCode: 422,
    });
    await expect(publisher.publish(vector("large-json").event)).rejects.toMatchObject({
      protocolCode: 413,
    });
  });
});

describe("Fastify adapter (@posthorn/binding-http/fastify)", () => {
  const received: CloudEvent[] = [];
  const app = Fastify();
  let base = "";
  beforeAll(async () => {
    await app.register(
      fastifyCloudEvents({
        path: "/events",
        formats: [json],
        webhook: { allowedOrigins: ["sender.example"] },
        onDelivery: (d) => void received.push(d.event as CloudEvent),
        methodNotAllowed: true,
      }),
    );
    const subscriber = httpReceiver({ formats: [json], settleTimeoutMs: 5000 });
    await app.register(fastifyCloudEvents({ path: "/held", receiver: subscriber }));
    (async () => {
      for await (const d of subscriber) await d.release({ delayMs: 2000 });
    })();
    app.addHook("onClose", () => subscriber.close());
    // The application's own GET at a path the plugin serves, routed before the plugin loads.
    app.get("/mixed", async () => ({ listing: true }));
    await app.register(
      fastifyCloudEvents({
        path: "/mixed",
        formats: [json],
        onDelivery: () => undefined,
        methodNotAllowed: true,
      }),
    );
    await app.register(fastifyCloudEvents({ path: "/legacy", formats: [json] }));
    // After the plugin loaded: without methodNotAllowed (the default) Fastify takes it.
    app.get("/legacy", async () => ({ legacy: true }));
    // The plugin's parsers are encapsulated: the app's own JSON routes still parse JSON.
    app.post("/plain", async (request) => ({ echoed: request.body }));
    await app.listen({ port: 0, host: "127.0.0.1" });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  afterAll(() => app.close());

  it("receives binary and structured events over a real Fastify server", async () => {
    await roundTrips(`${base}/events`, received);
  });
  it("answers the webhook handshake through Fastify", async () => {
    const publisher = httpPublisher({
      url: `${base}/events`,
      webhook: { origin: "sender.example" },
    });
    await publisher.publish(samples[0] as CloudEvent);
    expect(publisher.permission?.allowedOrigin).toBe("sender.example");
  });
  it("answers a released delivery with 503 and Retry-After through Fastify", async () => {
    const response = await fetch(`${base}/held`, {
      method: "POST",
      headers: { "content-type": "application/cloudevents+json" },
      body: JSON.stringify(samples[0]),
    });
    expect(response.status).toBe(503);
    expect(response.headers.get("retry-after")).toBe("2");
    await response.text();
  });
  it("with methodNotAllowed, answers the other methods at its path 405 with Allow, as the other receivers do", async () => {
    for (const method of ["GET", "HEAD", "DELETE", "PATCH"]) {
      const response = await fetch(`${base}/events`, { method });
      expect([method, response.status]).toEqual([method, 405]);
      expect(response.headers.get("allow")).toBe("POST, PUT, OPTIONS");
      await response.text();
    }
  });
  it("leaves a method the application routed at its path to the application", async () => {
    const listing = await fetch(`${base}/mixed`);
    expect(await listing.json()).toEqual({ listing: true });
    const head = await fetch(`${base}/mixed`, { method: "HEAD" });
    expect(head.status).toBe(200);
    const other = await fetch(`${base}/mixed`, { method: "DELETE" });
    expect(other.status).toBe(405);
    await other.text();
    await httpPublisher({ url: `${base}/mixed`, retry: false }).publish(samples[0] as CloudEvent);
  });
  it("routes only POST, PUT and OPTIONS by default, leaving a route added after it to the application", async () => {
    expect(await (await fetch(`${base}/legacy`)).json()).toEqual({ legacy: true });
    const other = await fetch(`${base}/legacy`, { method: "DELETE" });
    expect(other.status).toBe(404);
    await other.text();
  });
  it("with methodNotAllowed, makes Fastify refuse the application's own route for that method added after it", async () => {
    const late = Fastify();
    try {
      await late.register(
        fastifyCloudEvents({ path: "/events", formats: [json], methodNotAllowed: true }),
      );
      expect(() => late.get("/events", async () => "mine")).toThrow(
        expect.objectContaining({ code: "FST_ERR_DUPLICATED_ROUTE" }),
      );
    } finally {
      await late.close();
    }
  });
  it("leaves the application's other routes and parsers alone", async () => {
    const response = await fetch(`${base}/plain`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"a":1}',
    });
    expect(await response.json()).toEqual({ echoed: { a: 1 } });
  });
});

describe("createNodeHandler on node:http2", () => {
  it("answers HTTP/2 requests, with no Connection header for node:http2 to warn about", async () => {
    const received: CloudEvent[] = [];
    const receiver = httpReceiver({
      formats: [json],
      maxPayloadBytes: 10,
      onDelivery: (d: Delivery) => void received.push(d.event as CloudEvent),
    });
    const server = createHttp2Server(createNodeHandler(receiver));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.message);
    process.on("warning", onWarning);
    const client = connectHttp2(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const post = async (body: string) => {
        const { headers } = toHttpMessage(samples[0] as CloudEvent);
        const request = client.request({ ":method": "POST", ":path": "/", ...headers });
        request.end(body);
        const [answer] = (await once(request, "response")) as [Record<string, unknown>];
        request.resume();
        await once(request, "end");
        return answer;
      };
      expect((await post(""))[":status"]).toBe(204);
      // 413 carries Connection: close over HTTP/1.1.
      const tooLarge = await post("x".repeat(100));
      expect(tooLarge[":status"]).toBe(413);
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => /connection header/i.test(w))).toEqual([]);
      expect(received).toHaveLength(1);
    } finally {
      process.off("warning", onWarning);
      client.close();
      await receiver.close();
      await new Promise((r) => server.close(r));
    }
  });
});
