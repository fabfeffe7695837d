import { CloudEvent, isPosthornError } from "@posthorn/core";
import { json, jsonFormat } from "@posthorn/format-json";
import { refusedOption } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";

const enc = (text: string) => new TextEncoder().encode(text);
const base = '"specversion":"1.0","id":"1","source":"/s","type":"t"';

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (err) {
    expect(isPosthornError(err), `untyped error ${String(err)}`).toBe(true);
    return (err as { code: string }).code;
  }
  return undefined;
}

describe("JSON format decoding of hostile input", () => {
  it.each([
    ["invalid JSON", "{", "MalformedInput"],
    ["a JSON array as a single event", "[]", "MalformedInput"],
    ["a JSON string", '"x"', "MalformedInput"],
    ["null", "null", "MalformedInput"],
    ["a number id", `{${base.replace('"id":"1"', '"id":1')}}`, "InvalidEvent"],
    ["a boolean specversion", `{${base.replace('"1.0"', "true")}}`, "InvalidEvent"],
    ["an integer out of range", `{${base},"n":1e300}`, "InvalidEvent"],
    ["a float extension", `{${base},"n":0.1}`, "InvalidEvent"],
    ["an array extension", `{${base},"n":[1]}`, "InvalidEvent"],
    ["an object extension", `{${base},"n":{}}`, "InvalidEvent"],
    ["a __proto__ member", `{${base},"__proto__":{"polluted":true}}`, "InvalidEvent"],
    [
      "a constructor member holding an object",
      `{${base},"constructor":{"prototype":{"polluted":true}}}`,
      "InvalidEvent",
    ],
    ["an upper-case duplicate of an attribute", `{${base},"ID":"2"}`, "InvalidEvent"],
    ["data and data_base64 together", `{${base},"data":"x","data_base64":"eA=="}`, "InvalidEvent"],
    ["data_base64 that is not base64", `{${base},"data_base64":"%%%"}`, "InvalidEvent"],
    [
      "non-string data under a text type",
      `{${base},"datacontenttype":"text/plain","data":{"a":1}}`,
      "InvalidEvent",
    ],
    ["specversion 0.3", `{${base.replace('"1.0"', '"0.3"')}}`, "InvalidEvent"],
  ])("rejects %s", (_name, text, code) => {
    expect(codeOf(() => json.decode(enc(text)))).toBe(code);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("rejects invalid UTF-8", () => {
    const bytes = new Uint8Array([...enc(`{${base},"x":"`), 0xc0, 0xaf, ...enc('"}')]);
    expect(codeOf(() => json.decode(bytes))).toBe("MalformedInput");
  });

  it("rejects nesting deeper than the limit without recursion", () => {
    const deep = `{${base},"datacontenttype":"application/json","data":${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
    expect(codeOf(() => json.decode(enc(deep)))).toBe("MalformedInput");
    const shallow = `{${base},"datacontenttype":"application/json","data":${"[".repeat(50)}${"]".repeat(50)}}`;
    expect(json.decode(enc(shallow)).data).toBeDefined();
    expect(codeOf(() => jsonFormat({ maxDepth: 10 }).decode(enc(shallow)))).toBe("MalformedInput");
  });

  it("does not count brackets inside strings as nesting", () => {
    const text = `{${base},"datacontenttype":"application/json","data":"${"[".repeat(500)}\\"${"{".repeat(500)}"}`;
    expect(json.decode(enc(text)).data).toBe(`${"[".repeat(500)}"${"{".repeat(500)}`);
  });

  it("keeps __proto__ inside JSON data as plain data, polluting nothing", () => {
    const e = json.decode(
      enc(`{${base},"datacontenttype":"application/json","data":{"__proto__":{"polluted":1}}}`),
    );
    expect(Object.keys(e.data as object)).toEqual(["__proto__"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("rejects a batch that is not an array, and one element that is invalid", () => {
    expect(codeOf(() => json.decodeBatch?.(enc(`{${base}}`)))).toBe("MalformedInput");
    expect(codeOf(() => json.decodeBatch?.(enc(`[{${base}},{"id":"x"}]`)))).toBe("InvalidEvent");
  });
});

describe("JSON format encoding", () => {
  it("writes Boolean and Integer as JSON types, binary as data_base64, text as a string", () => {
    const e = new CloudEvent({
      specversion: "1.0",
      id: "1",
      source: "/s",
      type: "t",
      n: 5,
      b: false,
      bin: new Uint8Array([1]),
      data: new Uint8Array([0, 1]),
    });
    expect(JSON.parse(new TextDecoder().decode(json.encode(e)))).toEqual({
      specversion: "1.0",
      id: "1",
      source: "/s",
      type: "t",
      n: 5,
      b: false,
      bin: "AQ==",
      data_base64: "AAE=",
    });
  });
  it("keeps a JSON string under a JSON content type as a string, not parsed again", () => {
    const e = json.decode(
      enc(`{${base},"datacontenttype":"application/json","data":"{\\"a\\":1}"}`),
    );
    expect(e.data).toBe('{"a":1}');
  });
  it("writes text data under a non-JSON type as a JSON string", () => {
    const e = new CloudEvent({
      specversion: "1.0",
      id: "1",
      source: "/s",
      type: "t",
      datacontenttype: "application/xml",
      data: "<a/>",
    });
    expect(JSON.parse(new TextDecoder().decode(json.encode(e))).data).toBe("<a/>");
  });
  it("accepts a plain CloudEventV1 object and validates it", () => {
    expect(
      json.encode({ specversion: "1.0", id: "1", source: "/s", type: "t" }).length,
    ).toBeGreaterThan(0);
    expect(codeOf(() => json.encode({ specversion: "1.0", id: "", source: "/s", type: "t" }))).toBe(
      "InvalidEvent",
    );
  });
});

describe("numbers past the range of a double", () => {
  it("refuses data or an extension JSON.parse would read as Infinity: the event could not be encoded again", () => {
    for (const member of [
      '"data":{"n":1e400}',
      '"data":[-1e999]',
      '"data":1e309',
      `"data":1${"0".repeat(400)}`,
    ]) {
      const text = `{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/json",${member}}`;
      expect(() => json.decode(enc(text)), member.slice(0, 30)).toThrowError(
        expect.objectContaining({ code: "MalformedInput" }),
      );
    }
    const batch = '[{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"n":1e400}}]';
    expect(() => json.decodeBatch(enc(batch))).toThrowError(
      expect.objectContaining({ code: "MalformedInput" }),
    );
  });
});

describe("jsonFormat({ maxDepth })", () => {
  it("refuses NaN, negatives and fractions with NotSupported, when the format is made", () => {
    // NaN compared false and turned the nesting limit off.
    for (const [maxDepth, shown] of [
      [Number.NaN, "NaN"],
      [-1, "-1"],
      [2.5, "2.5"],
    ] as const) {
      expect(() => jsonFormat({ maxDepth })).toThrow(refusedOption("maxDepth", shown));
    }
    expect(() => jsonFormat({ maxDepth: Infinity })).not.toThrow();
  });
});
