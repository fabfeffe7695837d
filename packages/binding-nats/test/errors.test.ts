import { translateNatsError } from "@posthorn/binding-nats";
import { PosthornError } from "@posthorn/core";
import { describe, expect, it } from "vitest";

function named(name: string, message = "boom", code?: string | number): Error {
  const e = new Error(message) as Error & { code?: string | number };
  e.name = name;
  if (code !== undefined) e.code = code;
  return e;
}

describe("translateNatsError", () => {
  it("maps the v3 clients' error names", () => {
    expect(translateNatsError(named("TimeoutError"), "publish")).toMatchObject({
      code: "Timeout",
      retryable: true,
      protocolCode: "TimeoutError",
    });
    expect(translateNatsError(named("ClosedConnectionError"), "publish").code).toBe("Closed");
    expect(translateNatsError(named("ConnectionError"), "subscribe")).toMatchObject({
      code: "ConnectionFailed",
      retryable: true,
    });
    expect(
      translateNatsError(named("NoResponders", "no responders", 503), "publish"),
    ).toMatchObject({
      code: "PublishRejected",
      retryable: false,
    });
    expect(
      translateNatsError(
        named("InvalidArgumentError", "'payload' max_payload size exceeded"),
        "publish",
      ).code,
    ).toBe("PayloadTooLarge");
  });

  it("maps the v2 package's NatsError codes", () => {
    expect(translateNatsError(named("NatsError", "x", "TIMEOUT"), "publish").code).toBe("Timeout");
    expect(translateNatsError(named("NatsError", "x", "CONNECTION_CLOSED"), "publish").code).toBe(
      "Closed",
    );
    expect(
      translateNatsError(named("NatsError", "x", "MAX_PAYLOAD_EXCEEDED"), "publish").code,
    ).toBe("PayloadTooLarge");
    expect(
      translateNatsError(named("NatsError", "x", "PERMISSIONS_VIOLATION"), "publish").code,
    ).toBe("PublishRejected");
  });

  it("keeps the original as cause, passes Posthorn errors through, and makes settlement errors SettlementFailed", () => {
    const original = named("TimeoutError");
    expect(translateNatsError(original, "publish").cause).toBe(original);
    const own = new PosthornError("Aborted", "stop");
    expect(translateNatsError(own, "publish")).toBe(own);
    expect(translateNatsError(original, "settle").code).toBe("SettlementFailed");
    expect(translateNatsError("weird", "publish").code).toBe("PublishRejected");
    expect(translateNatsError(undefined, "subscribe").code).toBe("ConnectionFailed");
  });
});
