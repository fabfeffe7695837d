import {
  createNodeHandler,
  fromHttpMessage,
  type HttpReceiverOptions,
  toHttpMessage,
} from "@posthorn/binding-http";
import { CloudEvent, isPosthornError } from "@posthorn/core";
import { refusedOption } from "@posthorn/testkit";
import { afterEach, describe, expect, it } from "vitest";
import { startServer, type TestServer } from "./servers.js";

// maxPayloadBytes is the size limit's name in every binding; maxBodyBytes is its former name here.

/** A binary-mode message whose body is `size` bytes of octets. */
function message(size: number) {
  const event = new CloudEvent({
    specversion: "1.0",
    id: "limit-1",
    source: "/tests",
    type: "t",
    datacontenttype: "application/octet-stream",
    data: new Uint8Array(size),
  });
  const { headers, body } = toHttpMessage(event);
  return { headers, body: body ?? new Uint8Array(0) };
}

function tooLarge(run: () => unknown): boolean {
  try {
    run();
    return false;
  } catch (err) {
    return isPosthornError(err, "PayloadTooLarge");
  }
}

describe("fromHttpMessage size limit", () => {
  it("maxPayloadBytes limits the body", () => {
    expect(tooLarge(() => fromHttpMessage(message(101), { maxPayloadBytes: 100 }))).toBe(true);
    expect(tooLarge(() => fromHttpMessage(message(100), { maxPayloadBytes: 100 }))).toBe(false);
  });

  it("the deprecated maxBodyBytes still limits the body", () => {
    expect(tooLarge(() => fromHttpMessage(message(101), { maxBodyBytes: 100 }))).toBe(true);
    expect(tooLarge(() => fromHttpMessage(message(100), { maxBodyBytes: 100 }))).toBe(false);
  });

  it("maxPayloadBytes wins when both are given", () => {
    const larger = { maxPayloadBytes: 200, maxBodyBytes: 100 };
    expect(tooLarge(() => fromHttpMessage(message(150), larger))).toBe(false);
    const smaller = { maxPayloadBytes: 100, maxBodyBytes: 200 };
    expect(tooLarge(() => fromHttpMessage(message(150), smaller))).toBe(true);
  });
});

describe("HTTP receiver size limit, over node:http", () => {
  const servers: TestServer[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
  });

  /** A node:http receiver with `options`; returns the status it answers a body of `size` with. */
  async function serve(options: HttpReceiverOptions): Promise<(size: number) => Promise<number>> {
    const server = await startServer(
      createNodeHandler({ ...options, onDelivery: () => undefined }),
    );
    servers.push(server);
    return async (size) => {
      const { headers, body } = message(size);
      const response = await fetch(server.url, {
        method: "POST",
        headers,
        body: body as Uint8Array<ArrayBuffer>,
      });
      await response.arrayBuffer();
      return response.status;
    };
  }

  it("maxPayloadBytes answers 413 past the limit", async () => {
    const send = await serve({ maxPayloadBytes: 1000 });
    expect(await send(1001)).toBe(413);
    expect(await send(1000)).toBe(204);
  });

  it("the deprecated maxBodyBytes still answers 413 past the limit", async () => {
    const send = await serve({ maxBodyBytes: 1000 });
    expect(await send(1001)).toBe(413);
    expect(await send(1000)).toBe(204);
  });

  it("maxPayloadBytes wins when both are given", async () => {
    expect(await (await serve({ maxPayloadBytes: 2000, maxBodyBytes: 1000 }))(1500)).toBe(204);
    expect(await (await serve({ maxPayloadBytes: 1000, maxBodyBytes: 2000 }))(1500)).toBe(413);
  });
});

describe("fromHttpMessage limits given per call", () => {
  it("refuses NaN, negatives and fractions with NotSupported naming the limit, before reading", () => {
    // NaN compared false and turned the limit off (the body was read); -1 refused every body.
    const cases: [object, string, string][] = [
      [{ maxPayloadBytes: Number.NaN }, "maxPayloadBytes", "NaN"],
      [{ maxPayloadBytes: -1 }, "maxPayloadBytes", "-1"],
      [{ maxBodyBytes: 2.5 }, "maxBodyBytes", "2.5"],
      [{ json: { maxDepth: Number.NaN } }, "json.maxDepth", "NaN"],
    ];
    for (const [options, option, shown] of cases) {
      expect(() => fromHttpMessage(message(10), options)).toThrow(refusedOption(option, shown));
    }
    expect(
      fromHttpMessage(message(10), { maxPayloadBytes: Infinity, json: { maxDepth: 0 } }),
    ).toBeDefined();
  });
});
