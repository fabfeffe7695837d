import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createNodeHandler, httpPublisher, httpReceiver } from "@posthorn/binding-http";
import type { Delivery } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { baselineHandles, expectNoLeakedHandles, shutdownEvent } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";

describe("HTTP graceful shutdown", () => {
  it("receiver.close() releases held deliveries (503 + Retry-After), publisher.close() waits for in-flight publishes, and no socket or timer is left", {
    timeout: 20_000,
  }, async () => {
    const baseline = await baselineHandles();
    const receiver = httpReceiver({ formats: [json] });
    const server = createServer(createNodeHandler(receiver));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const publisher = httpPublisher({
      url: `http://127.0.0.1:${port}/`,
      retry: false,
      timeoutMs: 10_000,
    });

    // Ten publishes whose deliveries the application holds unsettled; five it accepts.
    const held = 10;
    const outcomes = Array.from({ length: held }, (_, i) =>
      publisher.publish(shutdownEvent("http", i)).then(
        () => ({ ok: true as const }),
        (err: { code?: string; protocolCode?: unknown; retryable?: boolean }) => ({
          ok: false as const,
          code: err.code,
          status: err.protocolCode,
          retryable: err.retryable,
        }),
      ),
    );
    const iterator = receiver[Symbol.asyncIterator]();
    const deliveries: Delivery[] = [];
    for (let i = 0; i < held; i++) deliveries.push((await iterator.next()).value as Delivery);
    for (const d of deliveries.slice(0, 5)) await d.accept();

    // The publisher's close waits for the five still held; the receiver's close answers them.
    let publisherClosed = false;
    const closingPublisher = publisher.close().then(() => {
      publisherClosed = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(publisherClosed).toBe(false);
    await receiver.close();
    await closingPublisher;
    const results = await Promise.all(outcomes);
    expect(results.filter((r) => r.ok)).toHaveLength(5);
    for (const r of results.filter((r) => !r.ok)) {
      expect(r).toMatchObject({ code: "PublishRejected", status: 503, retryable: true });
    }
    await expect(deliveries[7]?.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
    expect(await iterator.next()).toMatchObject({ done: true });
    await expect(publisher.publish(shutdownEvent("http", 99))).rejects.toMatchObject({
      code: "Closed",
    });

    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    const after = await expectNoLeakedHandles(baseline);
    console.log(
      `shutdown http: 5 accepted, 5 held deliveries released by close() (503); handles before ${JSON.stringify(baseline)}, after ${JSON.stringify(after)}`,
    );
  });
});

describe("HTTP settlement after the request was answered", () => {
  it("a delivery settled after settleTimeoutMs already answered 503 fails with SettlementFailed", async () => {
    const receiver = httpReceiver({ formats: [json], settleTimeoutMs: 50 });
    const server = createServer(createNodeHandler(receiver));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const publisher = httpPublisher({ url: `http://127.0.0.1:${port}/`, retry: false });
    const publishing = publisher.publish(shutdownEvent("http", 1));
    const delivery = (await receiver[Symbol.asyncIterator]().next()).value as Delivery;
    await expect(publishing).rejects.toMatchObject({ code: "PublishRejected", protocolCode: 503 });
    await expect(delivery.accept()).rejects.toMatchObject({ code: "SettlementFailed" });
    await publisher.close();
    await receiver.close();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  });
});
