import { fromHttpMessage, toHttpMessage } from "@posthorn/binding-http";
import {
  CloudEvent,
  createUncheckedEvent,
  decodeHeaderValue,
  encodeHeaderValue,
  isPosthornError,
} from "@posthorn/core";
import { avro } from "@posthorn/format-avro";
import { expectTypedError } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";

const base = { specversion: "1.0", id: "1", source: "/s", type: "t" } as const;

describe("encodeHeaderValue", () => {
  it("encodes the spec's example exactly (3.1.3.2)", () => {
    expect(encodeHeaderValue("Euro \u20AC \u{1F600}")).toBe("Euro%20%E2%82%AC%20%F0%9F%98%80");
  });
  it("encodes space, double quote and percent, and leaves other printable ASCII alone", () => {
    expect(encodeHeaderValue('a b"c%d')).toBe("a%20b%22c%25d");
    const printable = "!#$&'()*+,-./0123456789:;<=>?@AZ[\\]^_`az{|}~";
    expect(encodeHeaderValue(printable)).toBe(printable);
  });
  it("encodes controls, DEL and C1 characters, so CR and LF never reach a header", () => {
    expect(encodeHeaderValue("a\r\nSet-Cookie: x")).toBe("a%0D%0ASet-Cookie:%20x");
    expect(encodeHeaderValue("\u0000\u007f\u0085")).toBe("%00%7F%C2%85");
  });
  it("uses upper-case hex", () => {
    expect(encodeHeaderValue("\u00ff")).toBe("%C3%BF");
  });
  it("refuses a lone surrogate with a typed error", () => {
    expectTypedError(() => encodeHeaderValue("a\uD800b"), ["InvalidEvent"]);
  });
});

describe("decodeHeaderValue", () => {
  it("accepts lower-case hex and needless encoding", () => {
    expect(decodeHeaderValue("%e2%82%ac%41%2d")).toBe("\u20ACA-");
  });
  it("undoes an RFC 7230 quoted-string before percent-decoding", () => {
    expect(decodeHeaderValue('"a \\"quoted\\" value"')).toBe('a "quoted" value');
    expect(decodeHeaderValue('"100%25"')).toBe("100%");
  });
  it("rejects overlong and otherwise invalid UTF-8 with MalformedInput", () => {
    for (const bad of ["%C0%A0", "%FF", "%E2%82", "%80", "%ED%A0%80", "%F4%90%80%80"]) {
      expectTypedError(() => decodeHeaderValue(bad), ["MalformedInput"]);
    }
  });
  it("keeps a percent sign that starts no escape (values from SDKs that do not encode)", () => {
    expect(decodeHeaderValue("100%")).toBe("100%");
    expect(decodeHeaderValue("%ZZ%4")).toBe("%ZZ%4");
  });
  it("restores raw UTF-8 read as Latin-1 off the wire, and takes real Unicode text as it is", () => {
    const wire = String.fromCharCode(...new TextEncoder().encode("héllo 🚀"));
    expect(decodeHeaderValue(wire)).toBe("héllo 🚀");
    expect(decodeHeaderValue("héllo 🚀")).toBe("héllo 🚀");
    expect(decodeHeaderValue("é")).toBe("é");
  });
  it("round-trips every BMP and astral sample", () => {
    const samples = [
      "",
      "plain",
      " leading",
      "trailing ",
      "%",
      "%%25",
      '"',
      "\\",
      "€𝄞漢字مرحبا",
      "e\u0301",
    ];
    for (const s of samples) expect(decodeHeaderValue(encodeHeaderValue(s))).toBe(s);
  });
});

describe("header injection", () => {
  it("never writes CR or LF into any header the mapping produces", () => {
    const nasty = createUncheckedEvent({
      ...base,
      subject: "x\r\nX-Injected: 1",
      evil: "y\nContent-Length: 0",
    });
    let thrown: unknown;
    try {
      const { headers } = toHttpMessage(nasty);
      for (const [name, value] of Object.entries(headers)) {
        expect(name).not.toMatch(/[\r\n]/);
        expect(value).not.toMatch(/[\r\n]/);
      }
    } catch (err) {
      thrown = err;
    }
    expect(thrown === undefined || isPosthornError(thrown)).toBe(true);
  });
  it("refuses attribute names that could forge a header", () => {
    const event = createUncheckedEvent({ ...base, "x\r\nevil": "v" });
    expectTypedError(() => toHttpMessage(event), ["InvalidEvent"]);
  });
  it("refuses a datacontenttype holding CR or LF", () => {
    const event = createUncheckedEvent({
      ...base,
      datacontenttype: "text/plain\r\nX: y",
      data: "d",
    });
    expectTypedError(() => toHttpMessage(event), ["InvalidEvent"]);
  });
  it("decoding a percent-encoded CR LF yields a value the event then rejects, never a header", () => {
    const headers = {
      "ce-specversion": "1.0",
      "ce-id": "1",
      "ce-source": "/s",
      "ce-type": "t",
      "ce-subject": "a%0D%0Ab",
    };
    expectTypedError(() => fromHttpMessage({ headers, body: undefined }), ["InvalidEvent"]);
  });
});

describe("fromHttpMessage", () => {
  const headers = { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t" };
  it("reads header names case-insensitively", () => {
    const e = fromHttpMessage({
      headers: {
        "CE-SpecVersion": "1.0",
        "Ce-Id": "1",
        "CE-SOURCE": "/s",
        "ce-Type": "t",
        "Content-Type": "text/plain",
      },
      body: "hi",
    }) as CloudEvent;
    expect(e.id).toBe("1");
    expect(e.datacontenttype).toBe("text/plain");
    expect(e.data).toBe("hi");
  });
  it("reads a Web Headers object", () => {
    const e = fromHttpMessage({ headers: new Headers(headers), body: undefined }) as CloudEvent;
    expect(e.type).toBe("t");
  });
  it("restores declared extension types from header strings", () => {
    const e = fromHttpMessage({
      headers: { ...headers, "ce-severitynumber": "9", "ce-deprecated": "true", "ce-other": "9" },
      body: undefined,
    }) as CloudEvent;
    expect(e.severitynumber).toBe(9);
    expect(e.deprecated).toBe(true);
    expect(e.other).toBe("9");
  });
  it("rejects a declared Integer extension that is not one", () => {
    expectTypedError(
      () =>
        fromHttpMessage({ headers: { ...headers, "ce-severitynumber": "nine" }, body: undefined }),
      ["InvalidEvent"],
    );
  });
  it("rejects a declared Timestamp or URI-reference extension that is not one, as the other bindings do", () => {
    for (const bad of [{ "ce-recordedtime": "not-a-time" }, { "ce-dataref": "a b" }]) {
      expectTypedError(
        () => fromHttpMessage({ headers: { ...headers, ...bad }, body: undefined }),
        ["InvalidEvent"],
      );
    }
    const e = fromHttpMessage({
      headers: { ...headers, "ce-recordedtime": "2024-01-02T03:04:05Z", "ce-dataref": "/a/b" },
      body: undefined,
    }) as CloudEvent;
    expect(e.recordedtime).toBe("2024-01-02T03:04:05Z");
    expect(e.dataref).toBe("/a/b");
  });
  it("refuses __proto__ and constructor as attribute names without touching prototypes", () => {
    expectTypedError(() =>
      fromHttpMessage({ headers: { ...headers, "ce-__proto__": "x" }, body: undefined }),
    );
    const e = fromHttpMessage({
      headers: { ...headers, "ce-constructor": "x" },
      body: undefined,
    }) as CloudEvent;
    expect(e.constructor).toBe("x");
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
  it("detects structured mode from the content type with parameters and any case, and 415s an unregistered format", () => {
    expectTypedError(
      () =>
        fromHttpMessage({
          headers: { "content-type": "Application/CloudEvents+JSON; charset=UTF-8" },
          body: "{}",
        }),
      ["UnsupportedContentType"],
    );
  });
  it("says, for a format not registered, what options.formats holds and where the format goes", () => {
    const message = { headers: { "content-type": "application/cloudevents+json" }, body: "{}" };
    for (const [formats, holds] of [
      [undefined, "options.formats is empty"],
      [[avro], "reads application/cloudevents+avro"],
    ] as const) {
      try {
        fromHttpMessage(message, formats ? { formats } : {});
        expect.unreachable();
      } catch (err) {
        expect(err).toMatchObject({ code: "UnsupportedContentType", protocolCode: 415 });
        expect((err as Error).message).toContain(holds);
        expect((err as Error).message).toContain("formats: [json]");
      }
    }
  });
  it("says a message with neither ce-specversion nor a CloudEvents content type is not a CloudEvent", () => {
    expectTypedError(
      () => fromHttpMessage({ headers: { "content-type": "application/json" }, body: "{}" }),
      ["UnsupportedContentType"],
    );
  });
  it("refuses a body over maxBodyBytes", () => {
    expectTypedError(
      () => fromHttpMessage({ headers, body: new Uint8Array(11) }, { maxBodyBytes: 10 }),
      ["PayloadTooLarge"],
    );
  });
  it("writes Content-Type application/json for JSON data without a datacontenttype", () => {
    const { headers: h } = toHttpMessage(new CloudEvent({ ...base, data: { a: 1 } }));
    expect(h["content-type"]).toBe("application/json");
  });
});
