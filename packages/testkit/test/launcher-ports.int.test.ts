import { existsSync } from "node:fs";
import { connect, createServer, Server } from "node:net";
import mqtt from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { type LaunchedBroker, startMosquitto, startNatsServer } from "../src/brokers.js";
import { startPersistentMosquitto } from "../src/faults.js";

// A launcher chooses a port, then the broker binary binds it: in between, another process (a
// parallel test worker) can take it. These tests take it for real, in that window: the next
// loopback server closed in this process (the launcher's port probe) has its port bound by a
// "blocker" server the moment it is closed, before the launcher goes on. The broker must then
// come up on another port of its own, and never be confused with the blocker.

interface Blocker {
  readonly port: number;
  /** Connections the blocker accepted: a launcher that waited for "a port that answers". */
  connections: number;
  readonly server: Server;
}

const blockers: Blocker[] = [];
let restoreClose: (() => void) | undefined;

afterEach(async () => {
  restoreClose?.();
  for (const b of blockers.splice(0)) await new Promise((r) => b.server.close(r));
});

function block(port: number): Promise<Blocker> {
  const blocker: Blocker = {
    port,
    connections: 0,
    server: createServer((socket) => {
      blocker.connections++;
      socket.destroy();
    }),
  };
  blockers.push(blocker);
  return new Promise((resolve, reject) => {
    blocker.server.once("error", reject);
    blocker.server.listen(port, "127.0.0.1", () => resolve(blocker));
  });
}

/**
 * From now on, the ports of the loopback servers closed in this process, from the `first`-th (1
 * = the next) to the `last`-th, are bound again by blockers as soon as they close, before the
 * closer's callback runs. Resolves with the blockers once they are all taken.
 */
function takeClosedPorts(first: number, last = first): Promise<Blocker[]> {
  const close = Server.prototype.close;
  const taken: Blocker[] = [];
  let seen = 0;
  let done: (b: Blocker[]) => void = () => {};
  const all = new Promise<Blocker[]>((resolve) => {
    done = resolve;
  });
  restoreClose = () => {
    Server.prototype.close = close;
  };
  Server.prototype.close = function (this: Server, callback?: (err?: Error) => void) {
    const address = this.address();
    if (typeof address !== "object" || address?.address !== "127.0.0.1") {
      return close.call(this, callback);
    }
    seen++;
    if (seen < first || seen > last) return close.call(this, callback);
    if (seen === last) restoreClose?.();
    const port = address.port;
    return close.call(this, (err?: Error) => {
      void block(port).then((b) => {
        taken.push(b);
        if (taken.length === last - first + 1) done(taken);
        callback?.(err);
      });
    });
  } as typeof close;
  return all;
}

// The INFO a NATS server sends first: proof that a NATS server, not the blocker, listens.
function natsInfo(port: number): Promise<{ port: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let text = "";
    socket.on("data", (d: Buffer) => {
      text += d.toString();
      const end = text.indexOf("\r\n");
      if (end < 0) return;
      socket.destroy();
      if (!text.startsWith("INFO ")) reject(new Error(`not a NATS server: ${text}`));
      else resolve(JSON.parse(text.slice(5, end)));
    });
    socket.once("error", reject);
    socket.once("close", () => reject(new Error(`closed before INFO: ${text}`)));
  });
}

async function mqttRoundTrip(url: string): Promise<string> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000 });
  try {
    const got = new Promise<string>((resolve) =>
      client.on("message", (_t, payload) => resolve(payload.toString())),
    );
    await client.subscribeAsync("posthorn/launcher-ports", { qos: 1 });
    await client.publishAsync("posthorn/launcher-ports", "ours", { qos: 1 });
    return await got;
  } finally {
    await client.endAsync();
  }
}

function alive(broker: LaunchedBroker): boolean {
  return broker.process.exitCode === null && broker.process.signalCode === null;
}

// The launchers need the nats-server and mosquitto binaries; a missing one is a failure here.
describe("broker launchers and a port another process takes first", () => {
  it("startNatsServer comes up on another port of its own, never talking to the taker", async () => {
    const taken = takeClosedPorts(1);
    const nats = await startNatsServer();
    try {
      const [blocker] = await taken;
      expect(nats.port).not.toBe(blocker?.port);
      expect(alive(nats)).toBe(true);
      expect((await natsInfo(nats.port)).port).toBe(nats.port);
      expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`);
      expect(blocker?.connections, "the launcher connected to the process that took its port").toBe(
        0,
      );
    } finally {
      await nats.stop();
    }
  });

  it("startMosquitto comes up on other ports when its WebSocket port is taken", async () => {
    // The second port closed is the WebSocket listener's.
    const taken = takeClosedPorts(2);
    const mosquitto = await startMosquitto({ websockets: true });
    try {
      const [blocker] = await taken;
      expect(mosquitto.ports.websocket).not.toBe(blocker?.port);
      expect(mosquitto.port).not.toBe(mosquitto.ports.websocket);
      expect(alive(mosquitto)).toBe(true);
      expect(await mqttRoundTrip(`ws://127.0.0.1:${mosquitto.ports.websocket}`)).toBe("ours");
      expect(await mqttRoundTrip(mosquitto.url)).toBe("ours");
      expect(blocker?.connections).toBe(0);
    } finally {
      await mosquitto.stop();
    }
  });

  it("startPersistentMosquitto comes up on another port when its port is taken", async () => {
    const taken = takeClosedPorts(1);
    const mosquitto = await startPersistentMosquitto();
    try {
      const [blocker] = await taken;
      expect(mosquitto.port).not.toBe(blocker?.port);
      expect(alive(mosquitto)).toBe(true);
      expect(await mqttRoundTrip(mosquitto.url)).toBe("ours");
      expect(blocker?.connections).toBe(0);
    } finally {
      await mosquitto.stop();
    }
  });

  it("gives up after 5 starts that each found a port taken, and leaves nothing behind", async () => {
    const taken = takeClosedPorts(1, 5);
    const error = await startNatsServer().catch((err: Error) => err);
    const blockersTaken = await taken;
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(
      /another process took a port each time the broker started \(5 attempts/,
    );
    expect(blockersTaken.every((b) => b.connections === 0)).toBe(true);
    // The directory went with the failed start: its path is the store's, in the last stderr.
    const dir = /(\/\S*posthorn-nats-[^/\s"]+)/.exec((error as Error).message)?.[1];
    expect(dir, (error as Error).message).toBeDefined();
    expect(existsSync(dir as string)).toBe(false);
  });

  it("startMosquitto is ready with a config that turns its log off (the launcher reads that log)", async () => {
    const mosquitto = await startMosquitto({ config: () => ["log_dest none", "log_type error"] });
    try {
      expect(await mqttRoundTrip(mosquitto.url)).toBe("ours");
    } finally {
      await mosquitto.stop();
    }
  });

  it("restart() refuses, naming the port, when another process took it while the broker was down", async () => {
    const mosquitto = await startMosquitto();
    try {
      await mosquitto.kill();
      const blocker = await block(mosquitto.port);
      await expect(mosquitto.restart()).rejects.toThrow(
        new RegExp(
          `cannot restart the broker on its ports \\(${mosquitto.port}\\): another process took one while it was down`,
        ),
      );
      expect(blocker.connections, "restart() took the taker for the broker").toBe(0);
    } finally {
      await mosquitto.stop();
    }
  });
});
