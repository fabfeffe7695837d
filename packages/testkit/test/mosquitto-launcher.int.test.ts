import { readFileSync } from "node:fs";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LaunchedBroker, startMosquitto, waitForPort } from "../src/index.js";

// startMosquitto needs the mosquitto binary; a missing one is a failure here, never a skip.
describe("startMosquitto", () => {
  let broker: LaunchedBroker;

  beforeAll(async () => {
    broker = await startMosquitto({ websockets: true });
    await waitForPort("127.0.0.1", broker.ports.websocket as number);
  });
  afterAll(() => broker?.stop());

  function config(): string {
    const args = broker.process.spawnargs;
    const path = args[args.indexOf("-c") + 1];
    expect(path).toBeTypeOf("string");
    return readFileSync(path as string, "utf8");
  }

  it("turns Nagle's algorithm off for client sockets, as a global option before any listener", () => {
    const lines = config().split("\n");
    const nodelay = lines.indexOf("set_tcp_nodelay true");
    const firstListener = lines.findIndex((l) => l.startsWith("listener "));
    expect(nodelay).toBeGreaterThanOrEqual(0);
    expect(firstListener).toBeGreaterThan(nodelay);
  });

  it("is running with that configuration (mosquitto exits on an option it does not know)", () => {
    expect(broker.process.exitCode).toBeNull();
    expect(broker.process.signalCode).toBeNull();
  });

  for (const listener of ["mqtt", "websocket"] as const) {
    it(`round-trips a batch of small QoS 1 messages over its ${listener} listener`, async () => {
      const url =
        listener === "mqtt"
          ? `mqtt://127.0.0.1:${broker.port}`
          : `ws://127.0.0.1:${broker.ports.websocket}`;
      const client = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 });
      try {
        const topic = `posthorn/launcher/${listener}`;
        const received: string[] = [];
        const count = 50;
        const all = new Promise<void>((resolve) => {
          client.on("message", (t, payload) => {
            if (t !== topic) return;
            received.push(payload.toString());
            if (received.length === count) resolve();
          });
        });
        await client.subscribeAsync(topic, { qos: 1 });
        const sent = Array.from({ length: count }, (_, i) => `m${i}`);
        await Promise.all(sent.map((m) => client.publishAsync(topic, m, { qos: 1 })));
        await all;
        expect(received).toEqual(sent);
      } finally {
        await client.endAsync();
      }
    });
  }
});
