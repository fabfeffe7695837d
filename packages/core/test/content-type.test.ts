import {
  binaryContentType,
  type EventFormat,
  findFormat,
  isCloudEventsContentType,
  isJsonContentType,
  isPosthornError,
  isTextContentType,
  parseContentType,
  sameMediaType,
} from "@posthorn/core";
import { describe, expect, it } from "vitest";

describe("parseContentType", () => {
  it("lower-cases type and parameter names, unquotes values, finds the suffix", () => {
    const ct = parseContentType('Application/Vnd.Example+JSON; Charset="UTF-8"; q=1');
    expect(ct?.mediaType).toBe("application/vnd.example+json");
    expect(ct?.suffix).toBe("json");
    expect(ct?.parameters).toEqual({ charset: "UTF-8", q: "1" });
  });
  it("handles quoted parameters with escapes and semicolons", () => {
    expect(parseContentType('text/plain; a="x;\\"y"')?.parameters.a).toBe('x;"y');
  });
  it.each(["", "json", "/json", "application/", "a b/c", "text/plain; =x", 'text/plain; a="open'])(
    "rejects %j",
    (v) => {
      expect(parseContentType(v)).toBeUndefined();
    },
  );
  it.each([
    "application/json; a=b\r\nX-Evil: 1",
    "application/json\r\n",
    "\napplication/json",
    "text/plain; charset=utf\u00008",
    'text/plain; a="x\u0001y"',
    "text/plain; a=caf\u00e9",
    "text/plain; a=b c",
    // U+212A KELVIN SIGN lower-cases to "k": the token check comes first.
    "application/\u212A",
    "text/plain; \u212Aey=v",
  ])("refuses control characters, non-ASCII and spaces where RFC 9110 has none: %j", (v) => {
    expect(parseContentType(v)).toBeUndefined();
  });
  it("keeps what real producers send: spaces and tabs around parts, unquoted URIs, obs-text quoted", () => {
    expect(parseContentType(" application/json ;\tcharset = utf-8 ")?.parameters).toEqual({
      charset: "utf-8",
    });
    expect(parseContentType("application/ld+json; profile=http://x.example/a")?.parameters).toEqual(
      {
        profile: "http://x.example/a",
      },
    );
    expect(parseContentType('text/plain; title="caf\u00e9"')?.parameters.title).toBe("caf\u00e9");
  });
  it("does not let a parameter named __proto__ reach a prototype", () => {
    const ct = parseContentType("text/plain; __proto__=x");
    expect(Object.getOwnPropertyDescriptor(ct?.parameters, "__proto__")?.value).toBe("x");
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});

describe("content type classes", () => {
  it("knows JSON and text", () => {
    expect(isJsonContentType("application/json")).toBe(true);
    expect(isJsonContentType("application/cloudevents+json")).toBe(true);
    expect(isJsonContentType("text/plain")).toBe(false);
    expect(isTextContentType("text/csv")).toBe(true);
    expect(isTextContentType("application/xml")).toBe(true);
    expect(isTextContentType("application/atom+xml")).toBe(true);
    expect(isTextContentType("application/octet-stream")).toBe(false);
    expect(isTextContentType("application/x-thing; charset=utf-8")).toBe(true);
  });
  it("takes a charset for text only where it names a character encoding of the data", () => {
    // RFC 2046 4.5.1: octet-stream is arbitrary binary data; charset=binary is file(1)'s "no text".
    for (const type of [
      "application/octet-stream; charset=binary",
      "application/octet-stream; charset=utf-8",
      "application/x-thing; charset=binary",
      "application/x-thing; charset=BINARY",
      "image/png; charset=utf-8",
      "audio/ogg; charset=iso-8859-1",
      "video/mp4; charset=utf-8",
      "font/woff2; charset=utf-8",
    ]) {
      expect(isTextContentType(type), type).toBe(false);
    }
    for (const type of [
      "application/x-thing; charset=iso-8859-1",
      "text/plain; charset=binary",
      "image/svg+xml",
      "image/svg+xml; charset=utf-8",
      "application/xml; charset=binary",
    ]) {
      expect(isTextContentType(type), type).toBe(true);
    }
  });
  it("recognises CloudEvents structured and batch types", () => {
    expect(isCloudEventsContentType("application/cloudevents+json; charset=utf-8")).toBe(true);
    expect(isCloudEventsContentType("application/cloudevents-batch+protobuf")).toBe(true);
    expect(isCloudEventsContentType("application/json")).toBe(false);
  });
  it("findFormat matches single and batch types ignoring case and parameters", () => {
    const fmt = {
      name: "x",
      contentType: "application/cloudevents+x",
      batchContentType: "application/cloudevents-batch+x",
    } as EventFormat;
    expect(findFormat([fmt], "Application/CloudEvents+X; charset=utf-8")).toEqual({
      format: fmt,
      batch: false,
    });
    expect(findFormat([fmt], "application/cloudevents-batch+x")).toEqual({
      format: fmt,
      batch: true,
    });
    expect(findFormat([fmt], "application/cloudevents+y")).toBeUndefined();
  });
});

describe("sameMediaType", () => {
  it("compares the media type, ignoring case and parameters", () => {
    expect(sameMediaType("Application/JSON; charset=utf-8", "application/json")).toBe(true);
    expect(sameMediaType("application/json", "text/plain")).toBe(false);
    expect(sameMediaType(undefined, "application/json")).toBe(false);
  });
  it("never calls values that are not media types the same, not even two equal ones", () => {
    expect(sameMediaType("not a type", "not a type")).toBe(false);
    expect(sameMediaType("garbage", "other garbage")).toBe(false);
    expect(sameMediaType("garbage", "application/json")).toBe(false);
    expect(sameMediaType("application/json", "garbage")).toBe(false);
  });
});

describe("binaryContentType", () => {
  it("refuses a CloudEvents media type, which receivers read as structured or batch mode", () => {
    for (const ct of [
      "application/cloudevents+json",
      "Application/CloudEvents+JSON; charset=utf-8",
      " application/cloudevents-batch+json",
      "application/cloudevents+avro",
      "application/cloudevents",
    ]) {
      let thrown: unknown;
      try {
        binaryContentType({ a: 1 }, ct);
      } catch (err) {
        thrown = err;
      }
      expect(isPosthornError(thrown), ct).toBe(true);
      expect(thrown).toMatchObject({ code: "NotSupported", attribute: "datacontenttype" });
    }
  });
  it("gives any other content type as effectiveContentType does", () => {
    expect(binaryContentType({ a: 1 }, "application/json")).toBe("application/json");
    expect(binaryContentType("x", "text/plain; charset=utf-8")).toBe("text/plain; charset=utf-8");
    expect(binaryContentType({ a: 1 }, undefined)).toBe("application/json");
    expect(binaryContentType(new Uint8Array(1), undefined)).toBeUndefined();
    expect(binaryContentType(undefined, undefined)).toBeUndefined();
    // Only the media type counts: a parameter may mention CloudEvents.
    expect(binaryContentType("x", 'text/plain; note="application/cloudevents"')).toBe(
      'text/plain; note="application/cloudevents"',
    );
    expect(binaryContentType("x", "application/cloudevent")).toBe("application/cloudevent");
  });
});
