import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { connectWebSocket, webSocketServerOptions } from "@posthorn/binding-websocket";
import { selfSignedCertificate, type TestCertificate } from "@posthorn/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket, { type ClientOptions, WebSocketServer } from "ws";
import { formats } from "./link.js";

// connectWebSocket over wss:// with a certificate the client does not trust: retrying cannot mend
// that, so the failure is not retryable (it was, and a caller retrying on retryable looped).

const tls = selfSignedCertificate();

describe.skipIf(!tls)(
  "connectWebSocket over wss:// (a self-signed certificate made by openssl)",
  () => {
    const { cert, key } = tls ?? ({} as TestCertificate);
    let url: string;
    let close: () => Promise<void>;
    beforeAll(async () => {
      const server = createServer({ cert, key });
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
