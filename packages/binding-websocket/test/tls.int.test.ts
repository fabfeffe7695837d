import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectWebSocket, webSocketServerOptions } from "@posthorn/binding-websocket";
import { inCi } from "@posthorn/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket, { type ClientOptions, WebSocketServer } from "ws";
import { formats } from "./link.js";

// connectWebSocket over wss:// with a certificate the client does not trust: retrying cannot mend
// that, so the failure is not retryable (it was, and a caller retrying on retryable looped).

const openssl = (() => {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
if (!openssl && inCi())
  throw new Error("openssl is not installed; under CI=true the TLS test must run");

describe.skipIf(!openssl)(
  "connectWebSocket over wss:// (a self-signed certificate made by openssl)",
  () => {
    let dir: string;
    let cert: Buffer;
    let url: string;
    let close: () => Promise<void>;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "posthorn-ws-tls-"));
      execFileSync(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-days",
          "1",
          "-subj",
          "/CN=127.0.0.1",
          "-addext",
          "subjectAltName=IP:127.0.0.1",
          "-keyout",
          join(dir, "key.pem"),
          "-out",
          join(dir, "cert.pem"),
        ],
        { stdio: "ignore" },
      );
      cert = readFileSync(join(dir, "cert.pem"));
      const server = createServer({ cert, key: readFileSync(join(dir, "key.pem")) });
      const wss = new WebSocketServer({ server, ...webSocketServerOptions(formats) });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      url = `wss://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      close = async () => {
        for (const client of wss.clients) client.terminate();
        await new Promise((resolve) => wss.close(resolve));
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      };
    });
    afterAll(async () => {
      await close?.();
      rmSync(dir, { recursive: true, force: true });
    });

    it("an untrusted certificate is ConnectionFailed, not retryable, saying how to trust the CA", async () => {
      const err = await connectWebSocket(url, { formats, WebSocket }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({
        code: "ConnectionFailed",
        retryable: false,
        protocolCode: "DEPTH_ZERO_SELF_SIGNED_CERT",
        message: expect.stringMatching(/certificate was not accepted: trust its CA/),
      });
    });

    it("trusted through a WebSocket subclass that adds { ca }, as the docs say, it connects", async () => {
      const ca = cert;
      class TrustingWebSocket extends WebSocket {
        constructor(address: string, protocols?: string | string[], options?: ClientOptions) {
          super(address, protocols, { ...options, ca });
        }
      }
      const socket = await connectWebSocket(url, { formats, WebSocket: TrustingWebSocket });
      expect(socket.protocol).toBe("cloudevents.json");
      socket.close();
    });
  },
);
