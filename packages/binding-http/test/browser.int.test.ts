import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createNodeHandler, httpReceiver } from "@posthorn/binding-http";
import { webSocketPublisher, webSocketServerOptions } from "@posthorn/binding-websocket";
import { CloudEvent, differences } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { inCi, vector } from "@posthorn/testkit";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { startServer, type TestServer } from "./servers.js";

// core, format-json, binding-http and binding-websocket bundled for the browser and run in a real
// headless Chromium: the page sends events to a local HTTP server and receives one over a
// WebSocket. Outside CI a machine without Chromium skips this; under CI=true it fails instead.
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const available = existsSync(CHROMIUM);
const root = fileURLToPath(new URL("../../", import.meta.url));

const sent = [
  "typical",
  "unicode-subject",
  "header-special-chars",
  "binary-every-byte",
  "ext-integer",
].map((name) => vector(name).event);
const pushed = vector("json-unicode").event;

const ENTRY = `
import { CloudEvent, equivalent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { httpPublisher } from "@posthorn/binding-http";
import { connectWebSocket, webSocketSubscriber } from "@posthorn/binding-websocket";

window.runPosthorn = async ({ events, expected }) => {
  for (const mode of ["binary", "structured"]) {
    const publisher = httpPublisher({ url: location.origin + "/events", mode, format: json, retry: false });
    for (const e of events) await publisher.publish(CloudEvent.from(e));
  }
  const socket = await connectWebSocket("ws://" + location.host + "/ws", { formats: [json] });
  const subscriber = webSocketSubscriber(socket, { formats: [json] });
  const iterator = subscriber[Symbol.asyncIterator]();
  socket.send("ready");
  const { value } = await iterator.next();
  await value.accept();
  socket.close();
  return {
    protocol: socket.protocol,
    event: value.event.toJSON(),
    equivalent: equivalent(value.event, CloudEvent.from(expected)),
    userAgent: navigator.userAgent,
  };
};
window.posthornReady = true;
`;

describe.skipIf(!available && !inCi())(
  `browser (headless Chromium at ${CHROMIUM}; skipped outside CI when it is missing)`,
  () => {
    let server: TestServer;
    let wss: WebSocketServer;
    const received: CloudEvent[] = [];
    let bundle = "";

    beforeAll(async () => {
      const alias: Record<string, string> = {};
      for (const pkg of ["core", "format-json", "binding-http", "binding-websocket"]) {
        alias[`@posthorn/${pkg}`] = `${root}${pkg}/src/index.ts`;
      }
      const result = await build({
        stdin: { contents: ENTRY, resolveDir: root, loader: "js" },
        bundle: true,
        format: "esm",
        platform: "browser",
        target: "chrome110",
        write: false,
        alias,
        logLevel: "silent",
      });
      bundle = result.outputFiles[0]?.text ?? "";
      const receive = createNodeHandler(
        httpReceiver({
          formats: [json],
          onDelivery: (d) => void received.push(d.event as CloudEvent),
        }),
      );
      server = await startServer((req, res) => {
        if (req.method === "GET" && req.url === "/") {
          res.writeHead(200, { "content-type": "text/html" });
          res.end('<!doctype html><script type="module" src="/bundle.js"></script>');
        } else if (req.method === "GET" && req.url === "/bundle.js") {
          res.writeHead(200, { "content-type": "text/javascript" });
          res.end(bundle);
        } else receive(req, res);
      });
      wss = new WebSocketServer({
        server: server.server,
        path: "/ws",
        ...webSocketServerOptions([json]),
      });
      // When the page says it is listening, push one event to it over the socket.
      wss.on("connection", (socket) => {
        socket.once("message", () => {
          void webSocketPublisher(socket as never, { formats: [json] }).publish(pushed);
        });
      });
    });
    afterAll(async () => {
      for (const c of wss?.clients ?? []) c.terminate();
      await new Promise((resolve) => (wss ? wss.close(resolve) : resolve(undefined)));
      await server?.close();
    });

    it("sends events over HTTP and receives one over WebSocket, all equivalent", async () => {
      expect(bundle.length).toBeGreaterThan(1000);
      expect(bundle).not.toMatch(/from\s*["']node:/);
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
      });
      try {
        const page = await browser.newPage();
        const errors: string[] = [];
        page.on("pageerror", (err) => errors.push(err.message));
        await page.goto(server.url);
        await page.waitForFunction(
          () => (window as unknown as { posthornReady?: boolean }).posthornReady === true,
        );
        const result = (await page.evaluate(
          (args) =>
            (window as unknown as { runPosthorn(a: unknown): Promise<unknown> }).runPosthorn(args),
          { events: sent.map((e) => e.toJSON()), expected: pushed.toJSON() },
        )) as {
          protocol: string;
          event: Record<string, unknown>;
          equivalent: boolean;
          userAgent: string;
        };
        expect(errors).toEqual([]);
        expect(result.userAgent).toMatch(/Chrome/);
        // Over HTTP: every event, in binary then structured mode, arrived equivalent.
        expect(received).toHaveLength(sent.length * 2);
        for (const [i, event] of received.entries()) {
          expect(differences(sent[i % sent.length] as CloudEvent, event)).toEqual([]);
        }
        // Over WebSocket: the pushed event, judged equivalent in the browser and here.
        expect(result.protocol).toBe("cloudevents.json");
        expect(result.equivalent).toBe(true);
        expect(differences(pushed, CloudEvent.from(result.event as never))).toEqual([]);
      } finally {
        await browser.close();
      }
    }, 60_000);
  },
);
