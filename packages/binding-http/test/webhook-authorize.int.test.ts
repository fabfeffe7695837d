// Whether the webhook validation request (OPTIONS) goes through the receiver's authorize: not by
// default (http-webhook.md 4: the handshake establishes no authorization context, and a sender
// need not send a credential with it), and yes with webhook.authorizeValidation.
import { createNodeHandler, httpPublisher, httpReceiver } from "@posthorn/binding-http";
import { afterAll, describe, expect, it } from "vitest";
import { failure, SENDERS, startServer, type TestServer, textEvent } from "./servers.js";

const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

const TOKEN = "Bearer s3cret";

/** A receiver whose authorize takes TOKEN; it records what reached allowedOrigins and onCallback. */
async function target(authorizeValidation: boolean | undefined) {
  const asked: string[] = [];
  const callbacks: string[] = [];
  const delivered: string[] = [];
  const server = await startServer(
    createNodeHandler({
      authorize: (credential) => credential === TOKEN,
      webhook: {
        allowedOrigins: (origin) => {
          asked.push(origin);
          return origin === "sender.example";
        },
        onCallback: (request) => void callbacks.push(request.origin),
        ...(authorizeValidation === undefined ? {} : { authorizeValidation }),
      },
      onDelivery: (d) => void delivered.push(d.event?.id ?? ""),
    }),
  );
  servers.push(server);
  return { url: server.url, asked, callbacks, delivered };
}

function validation(url: string, headers: Record<string, string>): Promise<Response> {
  return fetch(url, { method: "OPTIONS", headers });
}

describe("webhook.authorizeValidation", () => {
  it("refuses a validation request without the credential with 401; it reaches neither allowedOrigins nor onCallback", async () => {
    const t = await target(true);
    const bare = await validation(t.url, { "webhook-request-origin": "sender.example" });
    expect(bare.status).toBe(401);
    expect(bare.headers.get("www-authenticate")).toBe("Bearer");
    expect(bare.headers.get("webhook-allowed-origin")).toBeNull();
    const wrong = await validation(t.url, {
      "webhook-request-origin": "stranger.example",
      "webhook-request-callback": "http://127.0.0.1:9/confirm",
      authorization: "Bearer wrong",
    });
    expect(wrong.status).toBe(401);
    expect(t.asked).toEqual([]);
    expect(t.callbacks).toEqual([]);
    // With it, the handshake is answered as before; the access_token query parameter counts too.
    const good = await validation(t.url, {
      "webhook-request-origin": "sender.example",
      authorization: TOKEN,
    });
    expect(good.status).toBe(200);
    expect(good.headers.get("webhook-allowed-origin")).toBe("sender.example");
    const byQuery = await validation(`${t.url}?access_token=s3cret`, {
      "webhook-request-origin": "sender.example",
    });
    expect(byQuery.status).toBe(200);
    // An OPTIONS that is no validation request (no origin) only says what is allowed.
    expect((await validation(t.url, {})).status).toBe(204);
  });

  it.each(SENDERS)("a publisher with authorization passes it, over $name", async ({ options }) => {
    const t = await target(true);
    const publisher = httpPublisher({
      url: t.url,
      authorization: TOKEN,
      webhook: { origin: "sender.example" },
      ...options,
    });
    await publisher.publish(textEvent("v-1", "/authorize"));
    expect(t.delivered).toEqual(["v-1"]);
    expect(t.asked).toEqual(["sender.example"]);
    await publisher.close();
    // Without one it is refused at the handshake: a 401 is final, nothing is delivered.
    const anonymous = httpPublisher({
      url: t.url,
      webhook: { origin: "sender.example" },
      ...options,
    });
    const err = await failure(anonymous.publish(textEvent("v-2", "/authorize")));
    expect(err).toMatchObject({ code: "PublishRejected", protocolCode: 401, retryable: false });
    expect(err.message).toMatch(/did not grant delivery/); // refused at OPTIONS, not at POST
    expect(t.asked).toEqual(["sender.example"]);
    expect(t.delivered).toEqual(["v-1"]);
    await anonymous.close();
  });

  it("is off by default: the handshake is answered whatever the credential", async () => {
    const t = await target(undefined);
    const bare = await validation(t.url, { "webhook-request-origin": "sender.example" });
    expect(bare.status).toBe(200);
    expect(bare.headers.get("webhook-allowed-origin")).toBe("sender.example");
  });

  it("is refused without authorize when the receiver is made", () => {
    const options = { webhook: { allowedOrigins: "*" as const, authorizeValidation: true } };
    for (const make of [() => httpReceiver(options), () => createNodeHandler(options)]) {
      expect(make).toThrow(
        expect.objectContaining({ code: "NotSupported", attribute: "webhook.authorizeValidation" }),
      );
    }
  });
});
