import { type WebSocketPublishOptions, webSocketPublisher } from "@posthorn/binding-websocket";
import type { Publisher, PublishOptions } from "@posthorn/core";
import { nextDelivery, settledWithin, shutdownEvent, watchTimerOverflows } from "@posthorn/testkit";
import { afterEach, describe, expect, it } from "vitest";
import { congest, formats, type Link, link, nextId } from "./link.js";

// Per-call PublishOptions over a real connection (an in-process ws server): never ignored.
const links: Link[] = [];
const open = async (): Promise<Link> => {
  const l = await link();
  links.push(l);
  return l;
};

afterEach(async () => {
  for (const l of links.splice(0)) await l.stop();
});

describe("webSocketPublisher per-call options", () => {
  it("refuses a content mode other than structured, with NotSupported, and sends nothing", async () => {
    const l = await open();
    // Typed as the general Publisher, as code written for any binding holds it.
    const publisher: Publisher = webSocketPublisher(l.client, { formats });
    for (const mode of ["batch", "binary"] as const) {
      await expect(publisher.publish(shutdownEvent("ws", 1), { mode })).rejects.toMatchObject({
        name: "PosthornError",
        code: "NotSupported",
      });
      await expect(
        publisher.publish([shutdownEvent("ws", 2), shutdownEvent("ws", 3)], { mode }),
      ).rejects.toMatchObject({ code: "NotSupported" });
    }
    await publisher.publish(shutdownEvent("ws", 4), { mode: "structured" });
    expect(await nextId(l)).toBe("shutdown-4");
  });

  it("rejects with Aborted, and sends nothing, when the signal was aborted before the call", async () => {
    const l = await open();
    const publisher = webSocketPublisher(l.client, { formats });
    const abortSignal = AbortSignal.abort();
    await expect(publisher.publish(shutdownEvent("ws", 1), { abortSignal })).rejects.toMatchObject({
      name: "PosthornError",
      code: "Aborted",
    });
    await expect(
      publisher.publish([shutdownEvent("ws", 2), shutdownEvent("ws", 3)], { abortSignal }),
    ).rejects.toMatchObject({ code: "Aborted" });
    await publisher.publish(shutdownEvent("ws", 4));
    expect(await nextId(l)).toBe("shutdown-4");
  });

  it("rejects with Aborted when the signal fires before ws wrote the frame; close() still waits for the frame", {
    timeout: 20_000,
  }, async () => {
    const l = await open();
    const publisher = webSocketPublisher(l.client, { formats });
    const backlog = await congest(l, (e) => publisher.publish(e));
    const controller = new AbortController();
    const call = publisher.publish(shutdownEvent("ws", 1), { abortSignal: controller.signal });
    expect(await settledWithin(call, 50)).toBe("pending");
    controller.abort();
    expect(await settledWithin(call, 1000)).toMatchObject({
      rejected: { name: "PosthornError", code: "Aborted" },
    });
    // The frame was handed to ws and still goes out: close() waits for it.
    const closing = publisher.close();
    expect(await settledWithin(closing, 50)).toBe("pending");
    l.server.resume();
    await Promise.all([...backlog, closing]);
    for (let i = 0; i < backlog.length; i++) await nextDelivery(l.received, 10_000);
    expect(await nextId(l)).toBe("shutdown-1");
  });

  it("rejects with Timeout when ws has not written the frames within timeoutMs, and resolves within it otherwise", {
    timeout: 20_000,
  }, async () => {
    const l = await open();
    const publisher = webSocketPublisher(l.client, { formats });
    await publisher.publish(shutdownEvent("ws", 0), { timeoutMs: 5000 });
    expect(await nextId(l)).toBe("shutdown-0");
    const backlog = await congest(l, (e) => publisher.publish(e));
    const started = Date.now();
    const call = publisher.publish([shutdownEvent("ws", 1), shutdownEvent("ws", 2)], {
      timeoutMs: 100,
    });
    expect(await settledWithin(call, 2000)).toMatchObject({
      rejected: { name: "PosthornError", code: "Timeout" },
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    l.server.resume();
    await Promise.all(backlog);
    await publisher.close();
  });

  it("timeoutMs 0 rejects with Timeout at once and sends nothing, one event or an array", async () => {
    const l = await open();
    let frames = 0;
    l.server.on("message", () => frames++);
    const publisher = webSocketPublisher(l.client, { formats });
    await expect(publisher.publish(shutdownEvent("ws", 1), { timeoutMs: 0 })).rejects.toMatchObject(
      { name: "PosthornError", code: "Timeout" },
    );
    await expect(
      publisher.publish([shutdownEvent("ws", 2), shutdownEvent("ws", 3)], { timeoutMs: 0 }),
    ).rejects.toMatchObject({ code: "Timeout" });
    // The next event is the first the server gets, and the only frame.
    await publisher.publish(shutdownEvent("ws", 4));
    expect(await nextId(l)).toBe("shutdown-4");
    expect(frames).toBe(1);
    // close() has no frame of the refused calls to wait for.
    await expect(settledWithin(publisher.close(), 1000)).resolves.toEqual({ resolved: undefined });
  });

  it("closeTimeoutMs 0: close() rejects with Timeout for a frame still unwritten, without blaming a healthy peer", async () => {
    const l = await open();
    const publisher = webSocketPublisher(l.client, { formats, closeTimeoutMs: 0 });
    const published = publisher.publish(shutdownEvent("ws", 30));
    const closing = await settledWithin(publisher.close(), 2000);
    expect(closing).toMatchObject({ rejected: { name: "PosthornError", code: "Timeout" } });
    const message = (closing as { rejected: Error }).rejected.message;
    // Before, it said "the peer is not reading" of a peer that reads everything, as this one does.
    expect(message).not.toContain("not reading");
    expect(message).toContain("closeTimeoutMs is 0");
    await published;
    expect(await nextId(l)).toBe("shutdown-30");
  });

  it("timeoutMs Infinity sets no limit: a publish behind a congested socket waits for it", {
    timeout: 20_000,
  }, async () => {
    const overflows = watchTimerOverflows();
    try {
      const l = await open();
      const publisher = webSocketPublisher(l.client, { formats });
      const backlog = await congest(l, (e) => publisher.publish(e));
      const call = publisher.publish(shutdownEvent("ws", 1), { timeoutMs: Infinity });
      // A timer set to Infinity fires after 1 ms: the call failed with Timeout by then.
      expect(await settledWithin(call, 100)).toBe("pending");
      l.server.resume();
      await Promise.all(backlog);
      await expect(call).resolves.toBeUndefined();
      expect(overflows.count()).toBe(0);
      await publisher.close();
    } finally {
      overflows.stop();
    }
  });

  it("types the per-call options as what a WebSocket can do", () => {
    const publisher = webSocketPublisher;
    type Options = NonNullable<Parameters<ReturnType<typeof publisher>["publish"]>[1]>;
    const structured: WebSocketPublishOptions = { mode: "structured", timeoutMs: 10 };
    const asCall: Options = structured;
    // @ts-expect-error: every WebSocket message is one structured event
    const batch: WebSocketPublishOptions = { mode: "batch" };
    const general: PublishOptions = structured;
    expect([asCall, batch, general]).toHaveLength(3);
  });
});
