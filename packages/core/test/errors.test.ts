import { CloudEvent, isPosthornError, PosthornError, thrownFor } from "@posthorn/core";
import { describe, expect, it } from "vitest";

// Error messages quote what arrived, and go on to logs, HTTP answers and dead-letter reasons: a
// hostile megabyte in a header name or an attribute must not make a megabyte of message.
describe("PosthornError holds bounded text", () => {
  it("cuts a message past 2,000 characters and an attribute past 200, saying how much is left out", () => {
    const err = new PosthornError("InvalidEvent", `bad ${"x".repeat(1_000_000)}`, {
      attribute: "a".repeat(1_000_000),
    });
    expect(err.message.length).toBeLessThan(2100);
    expect(err.message).toMatch(/^bad x+\.\.\. \(998004 more characters\)$/);
    expect(err.attribute?.length).toBeLessThan(300);
    expect(err.attribute).toMatch(/^a{200}\.\.\. \(999800 more characters\)$/);
  });

  it("keeps short text as it is", () => {
    const err = new PosthornError("Timeout", "m".repeat(2000), { attribute: "id" });
    expect(err.message).toBe("m".repeat(2000));
    expect(err.attribute).toBe("id");
  });

  it("cuts what an event built from hostile members says", () => {
    for (const init of [
      { specversion: "x".repeat(1_000_000) },
      { specversion: "1.0", id: "1", source: "/s", type: "t", ["A".repeat(1_000_000)]: "v" },
    ]) {
      let thrown: unknown;
      try {
        new CloudEvent(init as never);
      } catch (err) {
        thrown = err;
      }
      expect(isPosthornError(thrown, "InvalidEvent")).toBe(true);
      expect((thrown as Error).message.length).toBeLessThan(300);
      expect(((thrown as PosthornError).attribute ?? "").length).toBeLessThan(300);
    }
  });
});

describe("thrownFor", () => {
  it("types what a caller's function threw as InvalidEvent, keeping it as cause", () => {
    const thrown = new TypeError("x is undefined");
    const err = thrownFor(thrown, "the keyMapper", "e-1", "key");
    expect(err).toMatchObject({ code: "InvalidEvent", attribute: "key", retryable: false });
    expect(err.cause).toBe(thrown);
    expect(err.message).toBe('the keyMapper threw for event "e-1": x is undefined');
    expect(thrownFor("no", "f", 7, "subject", "; nothing sent").message).toBe(
      'f threw for event "7": no; nothing sent',
    );
  });
  it("passes a PosthornError through as it is", () => {
    const own = new PosthornError("NotSupported", "mine");
    expect(thrownFor(own, "the keyMapper", "e-1", "key")).toBe(own);
  });
});
