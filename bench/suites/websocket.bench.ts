import type { AddressInfo } from "node:net";
import {
  connectWebSocket,
  toWebSocketFrame,
  webSocketPublisher,
  webSocketServerOptions,
} from "@posthorn/binding-websocket";
import { json } from "@posthorn/format-json";
import { vector } from "@posthorn/testkit";
import WebSocket, { WebSocketServer } from "ws";
import { type BenchSuite, compareThroughput } from "../lib.ts";

// Events per second over one WebSocket: webSocketPublisher (encoding each event as JSON, one text
// frame each) against plain ws sending the same pre-encoded bytes as text frames. A run ends when
// the server has received every message.
export const suite: BenchSuite = {
  name: "WebSocket binding: webSocketPublisher vs plain ws",
  async run(ctx) {
    const event = vector("typical").event;
    const frame = toWebSocketFrame(event, json);
    const wss = new WebSocketServer({
      port: 0,
      host: "127.0.0.1",
      ...webSocketServerOptions([json]),
    });
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
    let received = 0;
    let target = 0;
    let done: (() => void) | undefined;
    wss.on("connection", (socket) => {
      socket.on("message", () => {
        if (++received === target) done?.();
      });
    });
    const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
    const socket = await connectWebSocket(url, { formats: [json], WebSocket });
    const raw = socket;
    const publisher = webSocketPublisher(socket, { formats: [json] });
    const expect = (count: number): Promise<void> => {
      received = 0;
      target = count;
      return new Promise((resolve) => {
        done = resolve;
      });
    };
    try {
      const ours = async (n: number) => {
        const arrived = expect(n);
        const sends: Promise<void>[] = [];
        for (let i = 0; i < n; i++) sends.push(publisher.publish(event));
        await Promise.all(sends);
        await arrived;
      };
      // Against the same bytes pre-encoded (the goal row), and against plain ws encoding each
      // event with the same JSON format: what the binding itself costs on top of the format.
      const baselines = [
        {
          name: "publish structured JSON, one connection",
          label: "plain ws, pre-encoded",
          bytes: () => frame.data,
        },
        {
          name: "publish structured JSON, baseline encoding each event too",
          label: "plain ws + json.encode",
          bytes: () => json.encode(event),
        },
      ];
      const rows = [];
      for (const b of baselines) {
        rows.push(
          await compareThroughput({
            group: "throughput: WebSocket",
            name: b.name,
            count: ctx.quick ? 5000 : 50_000,
            rounds: ctx.quick ? 3 : 5,
            warmup: 5000,
            ours: { label: "webSocketPublisher", run: ours },
            baseline: {
              label: b.label,
              run: async (n) => {
                const arrived = expect(n);
                const sends: Promise<void>[] = [];
                for (let i = 0; i < n; i++) {
                  sends.push(
                    new Promise((resolve, reject) =>
                      raw.send(b.bytes(), { binary: false }, (err) =>
                        err ? reject(err) : resolve(),
                      ),
                    ),
                  );
                }
                await Promise.all(sends);
                await arrived;
              },
            },
            goal: 0.9,
          }),
        );
      }
      return rows;
    } finally {
      raw.close();
      for (const c of wss.clients) c.terminate();
      await new Promise((resolve) => wss.close(resolve));
    }
  },
};
