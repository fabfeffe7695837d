import { CloudEvent } from "@posthorn/core";
import { freePort, startKafkaBroker } from "@posthorn/testkit";
import { createPublisher, createSubscriber } from "posthorn";
import { describe, expect, it } from "vitest";
import { bridge } from "../src/bridge.js";

describe("bridge (HTTP to the testkit Kafka broker)", () => {
  it("moves every event, converting binary HTTP to structured Avro records", {
    timeout: 60_000,
  }, async () => {
    const kafka = await startKafkaBroker({ log: () => undefined });
    try {
      const topic = `example-bridge-${Date.now()}`;
      const to = `kafka://${kafka.brokers[0]}/${topic}?mode=structured&format=avro`;
      // Port 0: the bridge's HTTP receiver listens on a port the system picks, named to onReady.
      let ready!: (port: number | undefined) => void;
      const isReady = new Promise<number | undefined>((r) => {
        ready = r;
      });
      const running = bridge("http://127.0.0.1:0/in", to, { limit: 20, onReady: ready });
      const from = `http://127.0.0.1:${await isReady}/in`;
      const publisher = await createPublisher(from);
      for (let i = 0; i < 20; i++) {
        await publisher.publish(
          CloudEvent.create({ type: "com.example.n", source: "/t", id: `e-${i}`, data: { i } }),
        );
      }
      await publisher.close();
      expect(await running).toEqual({ moved: 20, released: 0, rejected: 0, lost: 0 });
      const sub = await createSubscriber(`${to}&from=earliest`);
      const ids: string[] = [];
      for await (const d of sub) {
        expect(d.message.contentType).toContain("avro");
        ids.push(d.event?.id ?? "?");
        await d.accept();
        if (ids.length === 20) break;
      }
      await sub.close();
      expect(ids.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `e-${i}`).sort());
    } finally {
      await kafka.stop();
    }
  });

  it("counts an event it could not publish from an upstream that cannot redeliver as lost, and goes on", {
    timeout: 30_000,
  }, async () => {
    // WebSockets have no acknowledgement, so release() is NotSupported there; nothing listens
    // on the downstream port, so every publish fails.
    // Nothing listens on `to`'s port (were another process to take it, the counts would differ).
    const to = `http://127.0.0.1:${await freePort()}/nowhere?retries=0`;
    const stop = new AbortController();
    let ready!: (port: number | undefined) => void;
    const isReady = new Promise<number | undefined>((r) => {
      ready = r;
    });
    let lost = 0;
    let bothLost!: () => void;
    const isBothLost = new Promise<void>((r) => {
      bothLost = r;
    });
    const running = bridge("ws://127.0.0.1:0/in", to, {
      signal: stop.signal,
      onReady: ready,
      onSettled: (outcome) => {
        if (outcome === "lost" && ++lost === 2) bothLost();
      },
    });
    const from = `ws://127.0.0.1:${await isReady}/in`;
    const publisher = await createPublisher(from);
    for (let i = 0; i < 2; i++) {
      await publisher.publish(
        CloudEvent.create({ type: "com.example.n", source: "/t", id: `w-${i}` }),
      );
    }
    await publisher.close();
    await isBothLost;
    stop.abort();
    expect(await running).toEqual({ moved: 0, released: 0, rejected: 0, lost: 2 });
  });

  it("releases an event the downstream did not take, and moves it when the upstream delivers it again", {
    timeout: 30_000,
  }, async () => {
    // `to` is a port nothing listens on until the test starts a receiver there.
    const to = `http://127.0.0.1:${await freePort()}/out`;
    let ready!: (port: number | undefined) => void;
    const isReady = new Promise<number | undefined>((r) => {
      ready = r;
    });
    let released!: () => void;
    const isReleased = new Promise<void>((r) => {
      released = r;
    });
    const running = bridge("http://127.0.0.1:0/in", `${to}?retries=0`, {
      limit: 1,
      onReady: ready,
      onSettled: (outcome) => {
        if (outcome === "released") released();
      },
    });
    const from = `http://127.0.0.1:${await isReady}/in`;
    // Nothing listens downstream yet: the bridge releases the event, so the upstream receiver
    // answers 503 with Retry-After and the HTTP publisher sends it again.
    const publisher = await createPublisher(`${from}?retries=5`);
    const sent = publisher.publish(
      CloudEvent.create({ type: "com.example.n", source: "/t", id: "again" }),
    );
    await isReleased;
    const downstream = await createSubscriber(to);
    let got: string | undefined;
    for await (const d of downstream) {
      got = d.event?.id;
      await d.accept();
      break;
    }
    await sent;
    await publisher.close();
    const counts = await running;
    expect(got).toBe("again");
    expect(counts.moved).toBe(1);
    expect(counts.released).toBeGreaterThanOrEqual(1);
  });
});
