import { type Delivery, type Message, PosthornError } from "@posthorn/core";
import { describe, expect, it } from "vitest";
import { deliveryRecord } from "../src/commands/receive.js";
import { parseEndpointUrl, redact } from "../src/index.js";
import { describeError, registerSecret } from "../src/redact.js";

// A token is a credential as a password is: the command never prints it.
describe("secrets other than passwords", () => {
  it("hides an http token= query value in display and in later messages", () => {
    const u = parseEndpointUrl("http://127.0.0.1:8080/events?a=1&token=t0k-en%2B1&b=2");
    expect(u.display).toBe("http://127.0.0.1:8080/events?a=1&token=***&b=2");
    expect(u.params.get("token")).toBe("t0k-en+1");
    expect(redact("server said: Bearer t0k-en+1 is not allowed")).not.toContain("t0k-en+1");
  });

  it("hides a NATS token given as the user of the URL", () => {
    const u = parseEndpointUrl("nats://s3cret-t0ken@127.0.0.1:4222/orders");
    expect(u.username).toBe("s3cret-t0ken");
    expect(u.display).toBe("nats://***@127.0.0.1:4222/orders");
    expect(redact("authorization violation for s3cret-t0ken")).not.toContain("s3cret-t0ken");
    // A user with a password is a user name, shown as before.
    expect(parseEndpointUrl("nats://alice:pw-x@127.0.0.1/s").display).toBe(
      "nats://alice:***@127.0.0.1/s",
    );
  });

  it("receive --json prints an HTTP authorization header as ***", () => {
    const message: Message = {
      body: new Uint8Array(0),
      properties: { Authorization: "Bearer abc-secret", "ce-id": "1" },
    };
    const delivery = { message, deliveryCount: 1 } as unknown as Delivery;
    const line = JSON.stringify(deliveryRecord(delivery));
    expect(line).not.toContain("abc-secret");
    expect(JSON.parse(line).properties).toEqual({ Authorization: "***", "ce-id": "1" });
  });
});

describe("redact", () => {
  it("hides a short password where it stands alone, without cutting it out of other words", () => {
    registerSecret("p");
    // Before: "cannot ***ublish to kafka://u:***@h/q?sasl=***lain: ... su******ort ...".
    expect(
      redact("cannot publish to kafka://u:p@h/q?sasl=plain: server does not support p (p)"),
    ).toBe("cannot publish to kafka://u:***@h/q?sasl=plain: server does not support *** (***)");
    registerSecret("a.b");
    expect(redact("password a.b refused; aXb is not it")).toBe(
      "password *** refused; aXb is not it",
    );
  });

  it("hides a long password wherever it appears, inside other text too", () => {
    registerSecret("Long-Secret-9");
    expect(redact("xLong-Secret-9y")).toBe("x***y");
  });
});

describe("describeError", () => {
  it("reads a cause that is a plain object (rhea's AMQP errors) instead of printing [object Object]", () => {
    const err = new PosthornError("ConnectionFailed", "the session failed (amqp:not-found)", {
      cause: { condition: "amqp:not-found", description: "NOT_FOUND - no exchange 'x'" },
    });
    expect(describeError(err)).toBe(
      "the session failed (amqp:not-found): NOT_FOUND - no exchange 'x'",
    );
    expect(describeError(new Error("outer", { cause: {} }))).toBe("outer");
  });
});
