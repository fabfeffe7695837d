// The Node entry point's publisher sends over node:http / node:https: what that sender does
// that fetch did for it (content-length, keep-alive, TLS, URL checks) and what it must not do
// (leave sockets behind, crash on a header node:http refuses). Answers whose body hangs or is cut
// short: answer-body.int.test.ts.
import { Agent, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, Agent as HttpsAgent } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { httpPublisher } from "@posthorn/binding-http";
import { selfSignedCertificate, type TestCertificate } from "@posthorn/testkit";
import { afterAll, describe, expect, it } from "vitest";
import { failure, startServer, type TestServer, textEvent } from "./servers.js";

const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

interface Recorded {
  headers: IncomingMessage["headers"];
  body: string;
}

/** A server answering every request with `status` that records the requests and connections. */
async function recording(status = 204) {
  const requests: Recorded[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      requests.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(status);
      res.end();
    });
  });
  server.server.on("connection", (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  servers.push(server);
  return { ...server, requests, sockets, connections: () => connections };
}

async function until(check: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("httpPublisher over node:http", () => {
  it("sends a content-length (not chunked) and the event's headers, reusing one keep-alive connection", async () => {
    const server = await recording();
    const publisher = httpPublisher({ url: server.url, retry: false });
    for (let i = 0; i < 20; i++) await publisher.publish(textEvent(`k-${i}`, "/node"));
    expect(server.requests).toHaveLength(20);
    for (const r of server.requests) {
      expect(r.headers["content-length"]).toBe("1");
      expect(r.headers["transfer-encoding"]).toBeUndefined();
      expect(r.body).toBe("x");
    }
    expect(server.requests[7]?.headers["ce-id"]).toBe("k-7");
    expect(server.connections()).toBe(1);
    await publisher.close();
  });

  it("close() destroys the publisher's own idle connections", async () => {
    const server = await recording();
    const publisher = httpPublisher({ url: server.url });
    await publisher.publish(textEvent("c-1", "/node"));
    expect(server.sockets.size).toBe(1);
    await publisher.close();
    await until(() => server.sockets.size === 0);
    await expect(publisher.publish(textEvent("c-2", "/node"))).rejects.toMatchObject({
      code: "Closed",
    });
  });

  it("sends through a given agent and leaves it open on close()", async () => {
    const server = await recording();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    let created = 0;
    const create = agent.createConnection.bind(agent);
    agent.createConnection = ((...args: Parameters<typeof create>) => {
      created++;
      return create(...args);
    }) as typeof agent.createConnection;
    const publisher = httpPublisher({ url: server.url, agent });
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => publisher.publish(textEvent(`a-${i}`, "/node"))),
    );
    expect(server.requests).toHaveLength(10);
    expect(created).toBe(1); // maxSockets 1: the agent's limit held
    await publisher.close();
    expect(server.sockets.size).toBe(1); // still the caller's to close
    agent.destroy();
    await until(() => server.sockets.size === 0);
  });

  it("refuses a URL node:http cannot send to, or one holding credentials, when it is made", () => {
    for (const url of ["ftp://127.0.0.1/", "not a url", "http://user:secret@127.0.0.1/"]) {
      expect(() => httpPublisher({ url })).toThrow(
        expect.objectContaining({ code: "MalformedInput" }),
      );
    }
    // The message never repeats the password.
    try {
      httpPublisher({ url: "http://user:secret@127.0.0.1/" });
    } catch (err) {
      expect(String((err as Error).message)).not.toContain("secret");
    }
  });

  it("refuses an agent for the other protocol, or no agent at all, when it is made", () => {
    // It failed every publish instead, as InvalidEvent ("Protocol "https:" not supported").
    const cases: Array<[string, unknown, RegExp]> = [
      ["https://127.0.0.1:1/", new Agent(), /pass a node:https Agent/],
      ["http://127.0.0.1:1/", new HttpsAgent(), /pass a node:http Agent/],
      ["http://127.0.0.1:1/", {}, /must be a node:http or node:https Agent/],
    ];
    for (const [url, agent, message] of cases) {
      expect(() => httpPublisher({ url, agent: agent as Agent })).toThrow(message);
      expect(() => httpPublisher({ url, agent: agent as Agent })).toThrow(
        expect.objectContaining({ code: "NotSupported", attribute: "agent" }),
      );
    }
    const agent = new HttpsAgent();
    expect(() => httpPublisher({ url: "https://127.0.0.1:1/", agent })).not.toThrow();
    agent.destroy();
  });

  it("a header node:http refuses is InvalidEvent with nothing sent", async () => {
    const server = await recording();
    const publisher = httpPublisher({ url: server.url, headers: { "x-name": "Ω" } });
    const err = await failure(publisher.publish(textEvent("h-1", "/node")));
    expect(err.code).toBe("InvalidEvent");
    expect(err.retryable).toBe(false);
    expect(server.requests).toHaveLength(0);
    await publisher.close();
  });

  it("a refused connection is ConnectionFailed with the socket's error code", async () => {
    const server = await recording();
    const url = server.url;
    await server.close();
    const publisher = httpPublisher({ url, retry: false });
    const err = await failure(publisher.publish(textEvent("r-1", "/node")));
    expect(err.code).toBe("ConnectionFailed");
    expect(err.protocolCode).toBe("ECONNREFUSED");
    await publisher.close();
  });

  it("the caller's abortSignal ends a request in flight with Aborted", async () => {
    const server = await startServer((req: IncomingMessage) => {
      req.resume(); // never answers
    });
    servers.push(server);
    const publisher = httpPublisher({ url: server.url, retry: false });
    const controller = new AbortController();
    const pending = failure(
      publisher.publish(textEvent("x-1", "/node"), { abortSignal: controller.signal }),
    );
    setTimeout(() => controller.abort(), 50);
    expect((await pending).code).toBe("Aborted");
    await publisher.close();
  });
});

// A certificate for 127.0.0.1 made by openssl for this run: the publisher trusts it only
// through the agent it is given.
const tls = selfSignedCertificate();

describe.skipIf(!tls)("httpPublisher over node:https", () => {
  it("sends over TLS with a private CA given through the agent, and refuses the certificate without it", async () => {
    const { cert, key } = tls as TestCertificate;
    const seen: string[] = [];
    const server = createHttpsServer({ cert, key }, (req, res) => {
      seen.push(String(req.headers["ce-id"]));
      req.resume();
      req.on("end", () => {
        res.writeHead(202);
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
    try {
      const agent = new HttpsAgent({ keepAlive: true, ca: cert });
      const trusting = httpPublisher({ url, agent, retry: false });
      await trusting.publish(textEvent("tls-1", "/node"));
      expect(seen).toEqual(["tls-1"]);
      await trusting.close();
      agent.destroy();

      const untrusting = httpPublisher({ url, retry: false });
      const err = await failure(untrusting.publish(textEvent("tls-2", "/node")));
      expect(err.code).toBe("ConnectionFailed");
      expect(err.protocolCode).toBe("DEPTH_ZERO_SELF_SIGNED_CERT");
      // Trying again fails the same way until the configuration changes.
      expect(err.retryable).toBe(false);
      expect(err.message).toContain("options.agent");
      expect(seen).toEqual(["tls-1"]);
      await untrusting.close();
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
