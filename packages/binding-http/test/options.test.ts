import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  createFetchHandler,
  createNodeHandler,
  type HttpReceiverOptions,
  httpPublisher,
  httpReceiver,
  toHttpMessage,
} from "@posthorn/binding-http";
import { CloudEvent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { refusedOption } from "@posthorn/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Numeric options are checked where the publisher or receiver is made.

const refused = refusedOption;

const NaN_ = Number.NaN;

describe("httpPublisher numeric options", () => {
  let server: Server;
  let url: string;
  let requests = 0;
  beforeAll(async () => {
    server = createServer((req, res) => {
      requests++;
      req.resume();
      req.on("end", () => res.writeHead(503).end());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("refuses NaN, negatives and fractions, naming the option", () => {
    const cases: [object, string, string][] = [
      [{ timeoutMs: NaN_ }, "timeoutMs", "NaN"],
      [{ timeoutMs: -1 }, "timeoutMs", "-1"],
      [{ closeTimeoutMs: -1 }, "closeTimeoutMs", "-1"],
      [{ closeTimeoutMs: NaN_ }, "closeTimeoutMs", "NaN"],
      // attempt >= NaN never held: a receiver answering 503 was tried again for ever.
      [{ retry: { maxAttempts: NaN_ } }, "retry.maxAttempts", "NaN"],
      [{ retry: { maxAttempts: 0 } }, "retry.maxAttempts", "0"],
      [{ retry: { maxAttempts: 2.5 } }, "retry.maxAttempts", "2.5"],
      [{ retry: { baseDelayMs: -1 } }, "retry.baseDelayMs", "-1"],
      [{ retry: { maxDelayMs: NaN_ } }, "retry.maxDelayMs", "NaN"],
      [{ retry: { attemptTimeoutMs: NaN_ } }, "retry.attemptTimeoutMs", "NaN"],
      [{ webhook: { origin: "a.example", requestRate: 0 } }, "webhook.requestRate", "0"],
      [{ webhook: { origin: "a.example", timeoutMs: NaN_ } }, "webhook.timeoutMs", "NaN"],
      [
        { webhook: { origin: "a.example", approvalTimeoutMs: -1 } },
        "webhook.approvalTimeoutMs",
        "-1",
      ],
      [{ webhook: { origin: "a.example", burst: NaN_ } }, "webhook.burst", "NaN"],
    ];
    for (const [options, option, shown] of cases) {
      expect(() => httpPublisher({ url, ...options })).toThrow(refused(option, shown));
    }
    expect(() =>
      httpPublisher({
        url,
        timeoutMs: Infinity,
        closeTimeoutMs: Infinity,
        retry: { maxAttempts: Infinity, maxDelayMs: 0, attemptTimeoutMs: Infinity },
      }),
    ).not.toThrow();
  });

  it("a per-call timeoutMs of NaN or below 0 rejects the call with no request made", async () => {
    const publisher = httpPublisher({ url, retry: false });
    const event = new CloudEvent({ specversion: "1.0", id: "o", source: "/o", type: "t" });
    const before = requests;
    // NaN was no limit at all.
    await expect(publisher.publish(event, { timeoutMs: NaN_ })).rejects.toEqual(
      refused("timeoutMs", "NaN"),
    );
    await expect(publisher.publish(event, { timeoutMs: -1 })).rejects.toEqual(
      refused("timeoutMs", "-1"),
    );
    expect(requests).toBe(before);
    await publisher.close();
  });
});

describe("httpPublisher webhook.origin", () => {
  it("refuses an origin that is not a non-empty string (fetch sent 'undefined')", () => {
    for (const origin of [undefined, "", "  ", 5]) {
      const options = { url: "http://127.0.0.1:1/", webhook: { origin } } as unknown as Parameters<
        typeof httpPublisher
      >[0];
      expect(() => httpPublisher(options)).toThrow(
        expect.objectContaining({ code: "NotSupported", attribute: "webhook.origin" }),
      );
    }
  });
});

describe("httpPublisher mode and method", () => {
  const event = new CloudEvent({ specversion: "1.0", id: "m", source: "/m", type: "t" });
  it("refuses a mode or method it does not know, naming it, with no request made", async () => {
    const url = "http://127.0.0.1:1/";
    // "structred" was sent in structured mode once a format was given; GET went out with a body.
    for (const [options, attribute] of [
      [{ mode: "structred", format: json }, "mode"],
      [{ method: "GET" }, "method"],
    ] as const) {
      expect(() => httpPublisher({ url, ...(options as object) })).toThrow(
        expect.objectContaining({ code: "NotSupported", attribute }),
      );
    }
    const publisher = httpPublisher({ url, format: json });
    await expect(
      publisher.publish(event, { mode: "structred" as "structured" }),
    ).rejects.toMatchObject({ code: "NotSupported", attribute: "mode" });
    expect(() => toHttpMessage(event, { mode: "batches" as "batch", format: json })).toThrow(
      expect.objectContaining({ code: "NotSupported", attribute: "mode" }),
    );
  });
});

describe("httpReceiver numeric options", () => {
  it("refuses NaN, negatives and fractions, in every adapter given options", () => {
    const cases: [object, string, string][] = [
      [{ maxPayloadBytes: NaN_ }, "maxPayloadBytes", "NaN"],
      [{ maxBodyBytes: -1 }, "maxBodyBytes", "-1"],
      [{ maxHeaderCount: 1.5 }, "maxHeaderCount", "1.5"],
      // A batch limit of 0 would refuse every batch, empty ones aside.
      [{ maxBatchEvents: 0 }, "maxBatchEvents", "0"],
      [{ maxBatchEvents: NaN_ }, "maxBatchEvents", "NaN"],
      [{ maxBatchEvents: 2.5 }, "maxBatchEvents", "2.5"],
      [{ maxHeaderBytes: NaN_ }, "maxHeaderBytes", "NaN"],
      [{ json: { maxDepth: -1 } }, "json.maxDepth", "-1"],
      // Sent as Retry-After: NaN went out as "NaN".
      [{ defaultRetryAfterMs: NaN_ }, "defaultRetryAfterMs", "NaN"],
      [{ defaultRetryAfterMs: Infinity }, "defaultRetryAfterMs", "Infinity"],
      [{ settleTimeoutMs: -1 }, "settleTimeoutMs", "-1"],
      [{ drainTimeoutMs: NaN_ }, "drainTimeoutMs", "NaN"],
      [{ requestTimeoutMs: NaN_ }, "requestTimeoutMs", "NaN"],
    ];
    for (const [options, option, shown] of cases) {
      expect(() => httpReceiver(options)).toThrow(refused(option, shown));
      expect(() => createNodeHandler(options)).toThrow(refused(option, shown));
      expect(() => createFetchHandler(options)).toThrow(refused(option, shown));
    }
    expect(() =>
      httpReceiver({ maxPayloadBytes: 0, settleTimeoutMs: Infinity, requestTimeoutMs: Infinity }),
    ).not.toThrow();
    expect(() => httpReceiver({ maxBatchEvents: 1 })).not.toThrow();
    expect(() => httpReceiver({ maxBatchEvents: Infinity })).not.toThrow();
  });
  it("refuses a releaseStatus other than 429 and 503 (200 told the sender a released event was delivered)", () => {
    for (const releaseStatus of [200, 500, "429"]) {
      const options = { releaseStatus } as unknown as HttpReceiverOptions;
      for (const make of [httpReceiver, createNodeHandler, createFetchHandler]) {
        expect(() => make(options)).toThrow(
          expect.objectContaining({ code: "NotSupported", attribute: "releaseStatus" }),
        );
      }
    }
    expect(() => httpReceiver({ releaseStatus: 429 })).not.toThrow();
  });
  it('refuses a webhook.allowedOrigins that is not "*", a list of origins or a function', () => {
    // A single origin as a string failed every handshake later with a TypeError (500).
    for (const allowedOrigins of ["partner.example", undefined, [1], null]) {
      const options = { webhook: { allowedOrigins } } as unknown as HttpReceiverOptions;
      for (const make of [httpReceiver, createNodeHandler, createFetchHandler]) {
        expect(() => make(options)).toThrow(
          expect.objectContaining({ code: "NotSupported", attribute: "webhook.allowedOrigins" }),
        );
      }
    }
    expect(() => httpReceiver({ webhook: { allowedOrigins: "partner.example" as "*" } })).toThrow(
      /\["partner\.example"\]/,
    );
    for (const allowedOrigins of ["*", ["a.example"], () => true] as const) {
      expect(() => httpReceiver({ webhook: { allowedOrigins } })).not.toThrow();
    }
  });
});
