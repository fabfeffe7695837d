import { createNodeHandler, httpReceiver, toHttpMessage } from "@posthorn/binding-http";
import { CloudEvent } from "@posthorn/core";
import { afterAll, describe, expect, it } from "vitest";
import { startServer, type TestServer } from "./servers.js";

const event = new CloudEvent({
  specversion: "1.0",
  id: "f-1",
  source: "/answered-first",
  type: "com.example.test",
  datacontenttype: "application/json",
  data: { n: 1 },
});
const message = toHttpMessage(event);
const servers: TestServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe("a response already answered by someone else", () => {
  it("createNodeHandler does not crash the process when its answer cannot be written", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => void unhandled.push(err);
    process.on("unhandledRejection", onUnhandled);
    try {
      const handler = createNodeHandler(httpReceiver({ onDelivery: () => sleep(200) }));
      // The application's own deadline answers 503 first; the receiver's answer comes later.
      const server = await startServer((req, res) => {
        setTimeout(() => {
          res.writeHead(503, { "retry-after": "1" });
          res.end("too slow");
        }, 50);
        handler(req, res);
      });
      servers.push(server);
      const response = await fetch(server.url, {
        method: "POST",
        headers: message.headers,
        body: message.body as BodyInit,
      });
      expect(response.status).toBe(503);
      expect(await response.text()).toBe("too slow");
      await sleep(400);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
